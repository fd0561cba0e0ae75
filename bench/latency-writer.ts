/**
 * The latency benchmark's writers and arithmetic: one row per transaction
 * at a steady rate (PostgreSQL or SQLite), and percentiles of per-row
 * latencies (bench/latency.ts).
 */
import Database from 'better-sqlite3';
import pg from 'pg';

export interface Pacing {
  rows: number;
  /** First write's due time until the last write returned. */
  seconds: number;
  /** Worst lateness of a write against its due time, and how many were more than 10 ms late. */
  maxLateMs: number;
  lateWrites: number;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Calls `write(id)` for ids 1…`total`, id n due `(n - 1) / rate` seconds
 * after the start. Each wait runs to the next write's due time on the
 * monotonic clock, so neither timer granularity nor a slow write makes the
 * rate drift: a late write goes at once, and the following ones catch up.
 */
export async function paced(rate: number, total: number, write: (id: number) => Promise<void> | void): Promise<Pacing> {
  const start = performance.now();
  let maxLateMs = 0;
  let lateWrites = 0;
  for (let id = 1; id <= total; id += 1) {
    const due = start + ((id - 1) * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
    const late = performance.now() - due;
    maxLateMs = Math.max(maxLateMs, late);
    if (late > 10) lateWrites += 1;
    await write(id);
  }
  return { rows: total, seconds: (performance.now() - start) / 1000, maxLateMs, lateWrites };
}

export const PG_ITEMS_SQL = `CREATE TABLE public.items (id bigint PRIMARY KEY, name text, qty int, updated_at timestamptz)`;
export const SQLITE_ITEMS_SQL = `CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, qty INTEGER, updated_at TEXT)`;

/**
 * Inserts rows into PostgreSQL's public.items on a connection of its own,
 * each an autocommit transaction: the source commit time is the row's
 * pg_xact_commit_timestamp(xmin). `sessionOptions` are the writer's session
 * settings (libpq `options`).
 */
export async function writePostgres(url: string, rate: number, total: number, sessionOptions = ''): Promise<Pacing> {
  const client = new pg.Client({ connectionString: url, options: `-c TimeZone=UTC ${sessionOptions}`.trim() });
  await client.connect();
  try {
    return await paced(rate, total, async (id) => {
      // A named statement: parsed and planned once, as an application's prepared insert.
      await client.query({ name: 'latency_insert', text: 'INSERT INTO public.items (id, name, qty, updated_at) VALUES ($1, $2, $3, now())', values: [id, `item ${id}`, id % 1000] });
    });
  } finally {
    await client.end();
  }
}

/**
 * Inserts rows into a SQLite file's items table, each an autocommit
 * transaction. SQLite keeps no commit time, so `updated_at` carries the
 * writer's clock (milliseconds) taken just before the insert: the source
 * time of the row.
 */
export async function writeSqlite(path: string, rate: number, total: number): Promise<Pacing> {
  const db = new Database(path);
  try {
    db.pragma('busy_timeout = 5000');
    // WAL mode's usual companion: no fsync at each commit (the file is in WAL mode, see bench/latency.ts), as applications writing 1,000 rows/s set it.
    db.pragma('synchronous = NORMAL');
    const insert = db.prepare('INSERT INTO items (id, name, qty, updated_at) VALUES (?, ?, ?, ?)');
    return await paced(rate, total, (id) => {
      insert.run(id, `item ${id}`, id % 1000, new Date().toISOString());
    });
  } finally {
    db.close();
  }
}

export interface Percentiles {
  rows: number;
  p50: number;
  p99: number;
  max: number;
}

/** Nearest-rank percentiles (a value some row actually had) of `values`. */
export function percentiles(values: number[]): Percentiles {
  if (values.length === 0) throw new Error('no latencies to summarise');
  const sorted = Float64Array.from(values).sort();
  const rank = (q: number) => sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)]!;
  return { rows: sorted.length, p50: rank(0.5), p99: rank(0.99), max: sorted[sorted.length - 1]! };
}
