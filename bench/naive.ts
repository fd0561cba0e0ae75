import pg from 'pg';

export interface NaiveOptions {
  sourceUrl: string;
  sinkUrl: string;
  /** Stop after this many changes... */
  maxChanges: number;
  /** ...or after this long, whichever comes first. */
  maxSeconds: number;
}

export interface NaiveResult {
  changes: number;
  seconds: number;
  changesPerSecond: number;
}

const PAGE = 1000;

const UPSERT = `
INSERT INTO public.items (id, name, price, qty, updated_at, payload)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (id) DO UPDATE
   SET name = EXCLUDED.name, price = EXCLUDED.price, qty = EXCLUDED.qty,
       updated_at = EXCLUDED.updated_at, payload = EXCLUDED.payload`;
const DELETE = `DELETE FROM public.items WHERE id = $1`;

/** A row image of `items` as either change log holds it. */
export interface ItemRow {
  id: number;
  name: string;
  price: number | null;
  qty: number | null;
  updated_at: string;
  payload: string | null;
}

/**
 * What the older sync scripts do: walk the change rows in order and write
 * each one with its own statement and round trip (autocommit upsert per
 * insert/update, one DELETE per delete). Generous to the baseline: the
 * change rows are read in pages of 1,000 (not one by one), and rows are not
 * marked `Synced` afterwards, which would be a second round trip per change.
 */
export async function naiveLoop(options: NaiveOptions): Promise<NaiveResult> {
  const source = new pg.Client({ connectionString: options.sourceUrl });
  const sink = new pg.Client({ connectionString: options.sinkUrl });
  await source.connect();
  await sink.connect();
  try {
    const started = performance.now();
    const deadline = started + options.maxSeconds * 1000;
    let after = '0';
    let changes = 0;
    while (changes < options.maxChanges && performance.now() < deadline) {
      const { rows } = await source.query<{ id: string; op: string; row_data: string | null; old_data: string | null }>(
        `SELECT c.id::text AS id, c.op, c.row_data, c.old_data FROM cdc_sync.changes c WHERE c.id > $1 ORDER BY c.id LIMIT $2`,
        [after, Math.min(PAGE, options.maxChanges - changes)],
      );
      if (rows.length === 0) break;
      for (const change of rows) {
        if (change.op === 'D') {
          const old = JSON.parse(change.old_data!) as ItemRow;
          await sink.query(DELETE, [old.id]);
        } else {
          const row = JSON.parse(change.row_data!) as ItemRow;
          await sink.query(UPSERT, [row.id, row.name, row.price, row.qty, row.updated_at, row.payload]);
        }
        changes += 1;
        after = change.id;
        if (performance.now() >= deadline) break;
      }
    }
    const seconds = (performance.now() - started) / 1000;
    return { changes, seconds, changesPerSecond: changes / seconds };
  } finally {
    await Promise.allSettled([source.end(), sink.end()]);
  }
}
