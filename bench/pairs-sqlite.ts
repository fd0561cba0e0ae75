/**
 * The SQLite side of bench/pairs.ts: the `items` table in a SQLite file, its
 * burst, the two naive loops, and a digest of a table that reads the same for
 * a SQLite file and a PostgreSQL database holding equal rows.
 */
import { createHash } from 'node:crypto';
import Database from 'better-sqlite3';
import pg from 'pg';
import { applySqliteChangelogSetup } from '../src/db/sqlite/changelog-setup.js';
import { openSqlite, type SqliteDatabase } from '../src/db/sqlite/connection.js';
import { instantMicros } from '../src/core/timestamps.js';
import { backlogRounds, withClient, type BacklogMix } from './backlog.js';
import type { ItemRow, NaiveResult } from './naive.js';

/**
 * ITEMS_TABLE_SQL (bench/backlog.ts) in SQLite: REAL for numeric(12,2) (the
 * triggers' JSON carries a number, which PostgreSQL rounds to the column's
 * scale), DATETIME for timestamptz (the sqlite sink then writes SQLite's own
 * date-time text in UTC, as for an application's timestamp column).
 */
const ITEMS_SQL = `CREATE TABLE items (
  id         INTEGER PRIMARY KEY,
  name       TEXT NOT NULL,
  price      REAL,
  qty        INTEGER,
  updated_at DATETIME NOT NULL,
  payload    TEXT
)`;

/** A new SQLite file with an empty `items` table, plus the capture triggers when it is a source. */
export function createSqliteItems(path: string, capture: boolean): void {
  const db = new Database(path);
  try {
    // WAL as cdc-sync sets it anyway: the burst's writer and the stream's reader do not block each other.
    db.pragma('journal_mode = WAL');
    db.exec(ITEMS_SQL);
    if (capture) applySqliteChangelogSetup(db, ['items']);
  } finally {
    db.close();
  }
}

const md5 = (text: string) => createHash('md5').update(text).digest('hex');
const ROUND = 10_000;
const EPOCH_2024 = Date.UTC(2024, 0, 1);

/**
 * makeBacklog (bench/backlog.ts) on the SQLite file: per round of 10,000
 * changes 80 % inserts of new ids, then 15 % updates and 5 % deletes of rows
 * that round inserted (same ids, same values), each of the three its own
 * transaction of 8,000 / 1,500 / 500 rows. SQLite has no generate_series or
 * md5, so rows are written one prepared statement at a time inside the
 * transaction: in-process calls, cheap, and each is one captured change.
 */
export function makeSqliteBacklog(path: string, total: number, onProgress?: (done: number) => void): BacklogMix {
  const mix: BacklogMix = { inserts: 0, updates: 0, deletes: 0 };
  const db = new Database(path);
  try {
    db.pragma('busy_timeout = 2000');
    const insert = db.prepare<[number, string, number, number, string, string]>(
      'INSERT INTO items (id, name, price, qty, updated_at, payload) VALUES (?, ?, ?, ?, ?, ?)',
    );
    const update = db.prepare<[number]>(
      `UPDATE items SET qty = qty + 1, price = price + 1, name = name || ' (changed)', updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?`,
    );
    const remove = db.prepare<[number]>('DELETE FROM items WHERE id = ?');
    // Every statement must touch exactly one row, or the change count would not be the burst's size.
    const one = (changes: number, what: string) => {
      if (changes !== 1) throw new Error(`${what} touched ${changes} rows`);
    };
    let done = 0;
    for (const { base, inserts, updates, deletes, updateStride, deleteStride } of backlogRounds(total, ROUND, mix)) {
      db.transaction(() => {
        for (let id = base + 1; id <= base + inserts; id += 1) {
          const price = (id % 100_000) / 100;
          const at = new Date(EPOCH_2024 + id * 1000).toISOString();
          one(insert.run(id, `item ${id}`, price, id % 1000, at, md5(String(id)) + md5(String(id * 7))).changes, `insert ${id}`);
        }
      })();
      db.transaction(() => {
        for (let g = 0; g < updates; g += 1) one(update.run(base + 2 + g * updateStride).changes, `update ${base + 2 + g * updateStride}`);
      })();
      db.transaction(() => {
        for (let g = 0; g < deletes; g += 1) one(remove.run(base + 4 + g * deleteStride).changes, `delete ${base + 4 + g * deleteStride}`);
      })();
      done += inserts + updates + deletes;
      onProgress?.(done);
    }
    const { n } = db.prepare('SELECT count(*) AS n FROM cdc_sync_changes').get() as { n: number };
    if (n !== total) throw new Error(`SQLite backlog has ${n} changes, expected ${total}`);
  } finally {
    db.close();
  }
  return mix;
}

export interface Digest {
  rows: number;
  md5: string;
}

/**
 * One row as the digest sees it, the same text for equal rows on either
 * side: ids and quantities as integer text, prices to 2 decimals (SQLite
 * REAL holds 124.45000000000002 after `price + 1`; PostgreSQL's
 * numeric(12,2) the rounded 124.45), timestamps as microseconds since 1970
 * (SQLite keeps text, `2024-01-01T00:00:01.000Z` or, as the sink writes it,
 * `2024-01-01 00:00:01`; PostgreSQL is read as ISO text in UTC).
 */
function rowText(r: Record<string, unknown>): string {
  const int = (v: unknown) => (v === null || v === undefined ? null : String(Number(v)));
  const decimal = (v: unknown) => (v === null || v === undefined ? null : Number(v).toFixed(2));
  const instant = (v: unknown) => (typeof v === 'string' ? (instantMicros(v)?.toString() ?? `text:${v}`) : v === null ? null : `other:${String(v)}`);
  return JSON.stringify([int(r.id), r.name ?? null, decimal(r.price), int(r.qty), instant(r.updated_at), r.payload ?? null]);
}

/** Row count and md5 of every row's normalized text in id order, of a SQLite file's `items`. */
export function sqliteDigest(path: string): Digest {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    const hash = createHash('md5');
    let rows = 0;
    for (const r of db.prepare('SELECT id, name, price, qty, updated_at, payload FROM items ORDER BY id').iterate()) {
      hash.update(`${rowText(r as Record<string, unknown>)}\n`);
      rows += 1;
    }
    return { rows, md5: hash.digest('hex') };
  } finally {
    db.close();
  }
}

/** The same digest of a PostgreSQL database's `public.items`, read in keyset pages. */
export async function postgresDigest(url: string): Promise<Digest> {
  return withClient(url, async (client) => {
    const hash = createHash('md5');
    let rows = 0;
    for (let after = '0'; ; ) {
      const { rows: page } = await client.query<Record<string, unknown> & { id: string }>(
        // t.id, not id: ORDER BY id would sort by the output column, the text.
        `SELECT t.id::text AS id, t.name, t.price::text AS price, t.qty,
                to_char(t.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS updated_at, t.payload
           FROM public.items t WHERE t.id > $1::bigint ORDER BY t.id LIMIT 20000`,
        [after],
      );
      if (page.length === 0) break;
      for (const r of page) hash.update(`${rowText(r)}\n`);
      rows += page.length;
      after = page[page.length - 1]!.id;
    }
    return { rows, md5: hash.digest('hex') };
  });
}

export interface NaiveOptions {
  /** The SQLite file (the change log's for SQLite → PostgreSQL, the naive target's for PostgreSQL → SQLite). */
  sqlitePath: string;
  /** The PostgreSQL database (the naive target's, or the change log's). */
  postgresUrl: string;
  maxChanges: number;
  maxSeconds: number;
}


interface ChangeRow {
  id: number | string;
  op: string;
  row_data: string | null;
  old_data: string | null;
}

const PAGE = 1000;

/** bench/naive.ts's loop: change rows in pages of 1,000, each change written on its own; `next` reads a page after a change id. */
async function loop(options: NaiveOptions, next: (after: string, limit: number) => Promise<ChangeRow[]>, write: (change: ChangeRow) => Promise<void> | void): Promise<NaiveResult> {
  const started = performance.now();
  const deadline = started + options.maxSeconds * 1000;
  let after = '0';
  let changes = 0;
  while (changes < options.maxChanges && performance.now() < deadline) {
    const rows = await next(after, Math.min(PAGE, options.maxChanges - changes));
    if (rows.length === 0) break;
    for (const change of rows) {
      await write(change);
      changes += 1;
      after = String(change.id);
      if (performance.now() >= deadline) break;
    }
  }
  const seconds = (performance.now() - started) / 1000;
  return { changes, seconds, changesPerSecond: changes / seconds };
}

const image = (change: ChangeRow) => JSON.parse((change.op === 'D' ? change.old_data : change.row_data)!) as ItemRow;

const PG_UPSERT = `INSERT INTO public.items (id, name, price, qty, updated_at, payload) VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, price = EXCLUDED.price, qty = EXCLUDED.qty, updated_at = EXCLUDED.updated_at, payload = EXCLUDED.payload`;

/** SQLite → PostgreSQL: `cdc_sync_changes` of the file, one autocommit upsert or delete per change with node `pg`. */
export async function naiveSqliteToPostgres(options: NaiveOptions): Promise<NaiveResult> {
  const source = new Database(options.sqlitePath, { readonly: true, fileMustExist: true });
  const sink = new pg.Client({ connectionString: options.postgresUrl });
  await sink.connect();
  try {
    const page = source.prepare<[number, number]>('SELECT id, op, row_data, old_data FROM cdc_sync_changes WHERE id > ? ORDER BY id LIMIT ?');
    return await loop(
      options,
      async (after, limit) => page.all(Number(after), limit) as ChangeRow[],
      async (change) => {
        const row = image(change);
        if (change.op === 'D') await sink.query('DELETE FROM public.items WHERE id = $1', [row.id]);
        else await sink.query(PG_UPSERT, [row.id, row.name, row.price, row.qty, row.updated_at, row.payload]);
      },
    );
  } finally {
    source.close();
    await sink.end();
  }
}

const SQLITE_UPSERT = `INSERT INTO items (id, name, price, qty, updated_at, payload) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET name = excluded.name, price = excluded.price, qty = excluded.qty, updated_at = excluded.updated_at, payload = excluded.payload`;

/**
 * PostgreSQL → SQLite: `cdc_sync.changes` in pages, one autocommit
 * better-sqlite3 statement per change into the file, opened with the sqlite
 * sink's own openSqlite() so that it has the sink's pragmas (`pragmas` says
 * which, as read back from the connection).
 */
export async function naivePostgresToSqlite(options: NaiveOptions): Promise<NaiveResult & { pragmas: string }> {
  const source = new pg.Client({ connectionString: options.postgresUrl });
  await source.connect();
  const sink = openSqlite(`sqlite:${options.sqlitePath}`, 'naive target', { mustExist: true });
  try {
    const pragmas = describePragmas(sink);
    const upsert = sink.prepare<[number, string, number | null, number | null, string, string | null]>(SQLITE_UPSERT);
    const remove = sink.prepare<[number]>('DELETE FROM items WHERE id = ?');
    const result = await loop(
      options,
      async (after, limit) =>
        (
          await source.query<ChangeRow>('SELECT c.id::text AS id, c.op, c.row_data, c.old_data FROM cdc_sync.changes c WHERE c.id > $1 ORDER BY c.id LIMIT $2', [after, limit])
        ).rows,
      (change) => {
        const row = image(change);
        if (change.op === 'D') remove.run(row.id);
        else upsert.run(row.id, row.name, row.price, row.qty, row.updated_at, row.payload);
      },
    );
    return { ...result, pragmas };
  } finally {
    sink.close();
    await source.end();
  }
}

const SYNCHRONOUS = ['OFF', 'NORMAL', 'FULL', 'EXTRA'];

/** The pragmas that decide what a commit costs, as the connection has them. */
export function describePragmas(db: SqliteDatabase): string {
  const get = (name: string) => db.pragma(name, { simple: true }) as string | number;
  const sync = Number(get('synchronous'));
  return `journal_mode=${get('journal_mode')}, synchronous=${SYNCHRONOUS[sync] ?? sync}, foreign_keys=${get('foreign_keys') === 1 ? 'ON' : 'OFF'}, busy_timeout=${get('busy_timeout')}`;
}

/** The SQLite library better-sqlite3 bundles (the one cdc-sync runs with). */
export function sqliteVersion(): string {
  const db = new Database(':memory:');
  try {
    return (db.prepare('SELECT sqlite_version() AS v').get() as { v: string }).v;
  } finally {
    db.close();
  }
}
