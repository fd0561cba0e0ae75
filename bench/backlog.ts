import pg from 'pg';
import { changelogSetupSql } from '../src/cdc/postgres/changelog-setup.js';

export const ITEMS_TABLE_SQL = `
CREATE TABLE public.items (
  id         bigint PRIMARY KEY,
  name       text NOT NULL,
  price      numeric(12,2),
  qty        int,
  updated_at timestamptz NOT NULL DEFAULT now(),
  payload    text
)`;

/** Source: the table plus the change-log set-up exactly as `cdc-sync init-sql` prints it. */
export async function prepareSource(url: string): Promise<void> {
  await withClient(url, async (client) => {
    await client.query(ITEMS_TABLE_SQL);
    await client.query(changelogSetupSql(['public.items']));
  });
}

/** Target: the same table, no triggers. */
export async function prepareTarget(url: string): Promise<void> {
  await withClient(url, (client) => client.query(ITEMS_TABLE_SQL).then(() => undefined));
}

export interface BacklogMix {
  inserts: number;
  updates: number;
  deletes: number;
}

/**
 * What a backlog writes to public.items: `insert` makes new rows with ids
 * $1..$2, `updateSet` is the SET list of an update that changes a value of
 * each row it touches (`t` the row); each round is three set-based statements
 * (insert, update, delete) of `round` changes in all, each its own transaction.
 */
export interface BacklogShape {
  insert: string;
  updateSet: string;
  round: number;
}

/** The benchmark table of ITEMS_TABLE_SQL, rounds of 10,000 changes. */
const ITEMS_SHAPE: BacklogShape = {
  insert: `INSERT INTO public.items (id, name, price, qty, updated_at, payload)
         SELECT i, 'item ' || i, (i % 100000) / 100.0, (i % 1000)::int,
                timestamptz '2024-01-01 00:00:00+00' + i * interval '1 second',
                md5(i::text) || md5((i * 7)::text)
           FROM generate_series($1::bigint, $2::bigint) AS i`,
  updateSet: `qty = t.qty + 1, price = t.price + 1, name = t.name || ' (changed)', updated_at = now()`,
  round: 10_000,
};

/** One round of a backlog: new ids base+1 … base+inserts, then updates and deletes of rows of those, each every `stride` rows. */
export interface BacklogRound {
  base: number;
  inserts: number;
  updates: number;
  deletes: number;
  updateStride: number;
  deleteStride: number;
}

/**
 * The rounds of a backlog of `total` changes, `round` changes each: 80 %
 * inserts of new ids, 15 % updates and 5 % deletes of rows the round
 * inserted; `mix` counts them as they are handed out.
 */
export function* backlogRounds(total: number, round: number, mix: BacklogMix, firstId = 1): Generator<BacklogRound> {
  let nextId = firstId;
  for (let done = 0; done < total; ) {
    const size = Math.min(round, total - done);
    const updates = Math.floor(size * 0.15);
    const deletes = Math.floor(size * 0.05);
    const inserts = size - updates - deletes;
    yield { base: nextId - 1, inserts, updates, deletes, updateStride: updates > 0 ? Math.floor(inserts / updates) : 0, deleteStride: deletes > 0 ? Math.floor(inserts / deletes) : 0 };
    mix.inserts += inserts;
    mix.updates += updates;
    mix.deletes += deletes;
    nextId += inserts;
    done += size;
  }
}

/**
 * Writes `total` changes to src.items with set-based statements, so that the
 * capture trigger fills cdc_sync.changes: per round of 10,000 changes 80 %
 * inserts of new ids, 15 % updates and 5 % deletes of rows that round
 * inserted. Every update changes a value and every delete hits an existing
 * row, so each statement row is exactly one captured change.
 */
export interface BacklogOptions {
  /** The table has the capture trigger: check that it logged exactly `total` changes (default true). */
  changeLog?: boolean;
  shape?: BacklogShape;
  /** Rows per transaction: each statement is cut into statements of this many rows (default: one statement each). */
  transactionRows?: number;
  /** The first new id (default 1): two backlogs of one table, or of two databases synced both ways, apart. */
  firstId?: number;
}

export async function makeBacklog(url: string, total: number, onProgress?: (done: number) => void, options: BacklogOptions = {}): Promise<BacklogMix> {
  const { changeLog = true, shape = ITEMS_SHAPE, transactionRows = Number.POSITIVE_INFINITY, firstId = 1 } = options;
  const mix: BacklogMix = { inserts: 0, updates: 0, deletes: 0 };
  await withClient(url, async (client) => {
    let done = 0;
    for (const { base, inserts, updates, deletes, updateStride, deleteStride } of backlogRounds(total, shape.round, mix, firstId)) {
      for (const [from, to] of pieces(1, inserts, transactionRows)) await client.query(shape.insert, [base + from, base + to]);
      for (const [from, to] of pieces(0, updates - 1, transactionRows)) {
        await client.query(
          `UPDATE public.items AS t
              SET ${shape.updateSet}
             FROM generate_series($2::int, $3::int) AS g
            WHERE t.id = $1::bigint + 2 + g * $4::int`,
          [base, from, to, updateStride],
        );
      }
      for (const [from, to] of pieces(0, deletes - 1, transactionRows)) {
        await client.query(
          `DELETE FROM public.items AS t
            USING generate_series($2::int, $3::int) AS g
            WHERE t.id = $1::bigint + 4 + g * $4::int`,
          [base, from, to, deleteStride],
        );
      }
      done += inserts + updates + deletes;
      onProgress?.(done);
    }
    if (changeLog) {
      const [row] = (await client.query<{ n: string }>('SELECT count(*)::text AS n FROM cdc_sync.changes')).rows;
      if (Number(row!.n) !== total) throw new Error(`backlog has ${row!.n} changes, expected ${total}`);
    }
    // No ANALYZE: a burst is read a moment after it was written, before autovacuum has looked at it.
  });
  return mix;
}

/** [from, to] cut into ranges of at most `size`. */
function pieces(from: number, to: number, size: number): [number, number][] {
  const out: [number, number][] = [];
  for (let a = from; a <= to; a += size) out.push([a, Math.min(to, a + size - 1)]);
  return out;
}

/** Row count and a hash of the whole table, in id order. */
export async function tableDigest(url: string): Promise<{ rows: number; md5: string }> {
  return withClient(url, async (client) => {
    const { rows } = await client.query<{ n: string; md5: string | null }>(
      `SELECT count(*)::text AS n, md5(string_agg(t::text, ',' ORDER BY id)) AS md5 FROM public.items t`,
    );
    return { rows: Number(rows[0]!.n), md5: rows[0]!.md5 ?? '' };
  });
}

export async function withClient<T>(url: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url, options: '-c TimeZone=UTC' });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}
