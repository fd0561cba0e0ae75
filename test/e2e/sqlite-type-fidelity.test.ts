import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { runCli, runCliToEnd, waitFor, writeConfig, CliProcesses } from '../support/cli.js';
import { createTestDatabase, type TestDatabase } from '../support/test-database.js';

/**
 * Values at the edges of what SQLite and PostgreSQL both hold reach the other
 * side exactly, each way: 64-bit integers at their limits and beyond 2^53,
 * doubles at their limits, -0 and denormals, text with tabs, newlines,
 * backslashes, `\N`, quotes, NUL-free control characters and characters
 * outside the BMP, long text, empty and full-range blobs, booleans, JSON
 * text (a PostgreSQL json column keeps it as written: spaces, duplicate keys,
 * trailing zeros, digits beyond a double).
 */
const SQLITE_SCHEMA = `CREATE TABLE kinds (id INTEGER PRIMARY KEY, i INTEGER, r REAL, t TEXT, b BLOB, flag BOOLEAN, j TEXT)`;
const PG_SCHEMA = `CREATE TABLE kinds (id bigint PRIMARY KEY, i bigint, r double precision, t text, b bytea, flag boolean, j json)`;

const LONG = 'long text ✓ '.repeat(20_000);
const EDGES: [bigint | null, number | null, string | null, Buffer | null, number | null, string | null][] = [
  [-9223372036854775808n, -1.7976931348623157e308, 'tab\there\nnew line\r\nback\\slash \\N quote \' "dq" \u0001\u001f', Buffer.alloc(0), 0, '{ "a" : 1.50, "big": 123456789012345678901234567890, "a": [] }'],
  [9223372036854775807n, 1.7976931348623157e308, 'emoji 😀 é 中 \u2028', Buffer.from(Array.from({ length: 256 }, (_, i) => i)), 1, '"1.0"'],
  [9007199254740993n, -0, '', Buffer.from('\\x00'), null, '-0.0'],
  [0n, 5e-324, 'NULL', null, 1, null],
  [null, 0.1, LONG, Buffer.from([0]), 0, '["tab\\there", {"": null}]'],
  [-1n, null, null, Buffer.from('plain'), null, '{}'],
];

const processes = new CliProcesses();
let pg: TestDatabase;
let sqlite: Database.Database;
let sqlitePath: string;

/** Both sides' rows in one form: integers as decimal text, doubles with the sign of zero, text as is, blobs as hex. */
type Canonical = { id: string; i: string | null; r: string | null; t: string | null; b: string | null; flag: boolean | null; j: string | null };
const double = (v: unknown) => (v === null ? null : Object.is(Number(v), -0) ? '-0' : String(Number(v)));
const hex = (v: unknown) => (v === null ? null : Buffer.from(v as Uint8Array).toString('hex'));

function sqliteRows(): Canonical[] {
  const rows = sqlite.prepare(`SELECT id, i, r, t, b, flag, j FROM kinds ORDER BY id`).safeIntegers(true).all() as Record<string, unknown>[];
  return rows.map((r) => ({ id: String(r.id), i: r.i === null ? null : String(r.i), r: double(r.r), t: r.t as string | null, b: hex(r.b), flag: r.flag === null ? null : r.flag !== 0n, j: r.j as string | null }));
}

async function pgRows(): Promise<Canonical[]> {
  // float8 as text keeps the sign of zero and every digit (extra_float_digits defaults to 1 since PostgreSQL 12).
  const rows = await pg.query<Record<string, unknown>>(`SELECT id::text, i::text, r::text, t, b, flag, j::text FROM kinds ORDER BY id`);
  return rows.map((r) => ({ id: r.id as string, i: r.i as string | null, r: double(r.r), t: r.t as string | null, b: hex(r.b), flag: r.flag as boolean | null, j: r.j as string | null }));
}

let lastDifference = '';
/**
 * `zeroSign`: false when SQLite is the target. A REAL column keeps no -0: "small floating point values with no
 * fractional component and stored in columns with REAL type affinity are written to disk as integers"
 * (https://www.sqlite.org/datatype3.html, 3.2), and read back as 0.0.
 */
async function equal(zeroSign: boolean): Promise<boolean> {
  const [left, right] = [sqliteRows(), (await pgRows()).map((r) => (zeroSign || r.r !== '-0' ? r : { ...r, r: '0' }))];
  const differences: string[] = [];
  for (const row of left) {
    const other = right.find((r) => r.id === row.id);
    if (!other) differences.push(`row ${row.id}: only in SQLite`);
    else for (const k of Object.keys(row) as (keyof Canonical)[]) if (row[k] !== other[k]) differences.push(`row ${row.id} ${k}: SQLite ${JSON.stringify(row[k])?.slice(0, 80)}, PostgreSQL ${JSON.stringify(other[k])?.slice(0, 80)}`);
  }
  if (left.length !== right.length) differences.push(`SQLite ${left.length} rows, PostgreSQL ${right.length}`);
  lastDifference = differences.join('\n');
  return differences.length === 0;
}

beforeAll(async () => {
  pg = await createTestDatabase('sqlite_types');
});

afterEach(async () => {
  await processes.killAll();
  sqlite?.close();
  await pg.query(`DROP TABLE IF EXISTS kinds; DROP SCHEMA IF EXISTS cdc_sync CASCADE`);
});

afterAll(async () => {
  await pg.drop();
});

async function prepare(direction: 'sqlite-to-postgres' | 'postgres-to-sqlite'): Promise<string> {
  sqlitePath = join(mkdtempSync(join(tmpdir(), 'cdc-sync-sqlite-types-')), 'local.db');
  sqlite = new Database(sqlitePath);
  sqlite.pragma('journal_mode = WAL');
  sqlite.exec(SQLITE_SCHEMA);
  await pg.query(PG_SCHEMA);
  const [source, sink] = direction === 'sqlite-to-postgres' ? [`{ type: sqlite-changelog, url: "sqlite:${sqlitePath}", idleIntervalMs: 50, snapshot: never }`, `{ type: postgres, url: "${pg.url}" }`] : [`{ type: postgres-changelog, url: "${pg.url}", idleIntervalMs: 50, snapshot: never }`, `{ type: sqlite, url: "sqlite:${sqlitePath}" }`];
  const config = writeConfig(`
streams:
  - name: ${direction}
    source: ${source}
    sink: ${sink}
    tables:
      - { source: kinds, target: kinds }
    batch: { maxWaitMs: 20 }
http: { port: 0, host: 127.0.0.1 }
`);
  const init = await runCliToEnd(['init-sql', '--config', config]);
  expect(init.code, init.stderr).toBe(0);
  if (direction === 'sqlite-to-postgres') sqlite.exec(init.stdout);
  else await pg.query(init.stdout);
  return config;
}

describe('edge values between SQLite and PostgreSQL', () => {
  it.each(['sqlite-to-postgres', 'postgres-to-sqlite'] as const)('%s: inserts, updates and deletes arrive exactly', async (direction) => {
    const config = await prepare(direction);
    const cli = processes.add(runCli(['run', '--config', config]));
    await waitFor(() => cli.logs.some((l) => l.msg === 'stream started'), 30_000, () => cli.stderr());
    const rows = EDGES.flatMap((values, i) => [i + 1, i + 11].map((id) => [id, ...values] as const));
    if (direction === 'sqlite-to-postgres') {
      const insert = sqlite.prepare(`INSERT INTO kinds (id, i, r, t, b, flag, j) VALUES (?, ?, ?, ?, ?, ?, ?)`);
      sqlite.transaction(() => rows.forEach((r) => insert.run(...r)))();
      // Updates: each second copy takes the values of the next edge row; then the last ones go.
      const update = sqlite.prepare(`UPDATE kinds SET i = ?, r = ?, t = ?, b = ?, flag = ?, j = ? WHERE id = ?`);
      sqlite.transaction(() => EDGES.forEach((_, i) => update.run(...EDGES[(i + 1) % EDGES.length]!, i + 11)))();
      sqlite.prepare(`DELETE FROM kinds WHERE id IN (6, 16)`).run();
    } else {
      const value = (v: unknown) => (typeof v === 'bigint' ? v.toString() : v === null ? null : typeof v === 'number' && Object.is(v, -0) ? '-0' : v);
      for (const r of rows) await pg.query(`INSERT INTO kinds (id, i, r, t, b, flag, j) VALUES ($1, $2, $3, $4, $5, $6::int::boolean, $7)`, r.map(value));
      for (const [i] of EDGES.entries()) await pg.query(`UPDATE kinds SET i = $1, r = $2, t = $3, b = $4, flag = $5::int::boolean, j = $6 WHERE id = $7`, [...EDGES[(i + 1) % EDGES.length]!, i + 11].map(value));
      await pg.query(`DELETE FROM kinds WHERE id IN (6, 16)`);
    }
    await waitFor(() => equal(direction === 'sqlite-to-postgres'), 30_000, () => `${lastDifference}\n${cli.stderr().slice(-3000)}`);
    expect(sqliteRows()).toHaveLength(10);
  });
});
