import type { QualifiedName } from '../../core/names.js';
import { quoteIdent, quoteLiteral, quoteTable } from '../../db/postgres/identifiers.js';

/**
 * The sink's SQL. Every statement takes its rows as one json parameter and
 * expands it with json_populate_recordset against the target's own row type
 * (json, not jsonb: parsed once as it is read, without building a jsonb
 * value first, about a tenth less work per row),
 * so PostgreSQL converts each value with the column's input function (exact
 * numerics, bytea from \x-hex, timestamps with all digits) and one statement
 * writes a whole table's share of a batch.
 */

export const SCHEMA_SQL = `
CREATE SCHEMA IF NOT EXISTS cdc_sync;
CREATE TABLE IF NOT EXISTS cdc_sync.checkpoints (
  stream     text PRIMARY KEY,
  position   text NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS cdc_sync.dead_letters (
  id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  stream     text NOT NULL,
  table_name text NOT NULL,
  key        jsonb,
  payload    text NOT NULL,
  error      text NOT NULL,
  reason     text NOT NULL,
  position   text NOT NULL,
  failed_at  timestamptz NOT NULL DEFAULT now(),
  retried_at timestamptz
);
CREATE INDEX IF NOT EXISTS dead_letters_open ON cdc_sync.dead_letters (stream, table_name) WHERE retried_at IS NULL;
-- Each conflict the sink resolved, with both rows and the winner (as SymmetricDS keeps them).
CREATE TABLE IF NOT EXISTS cdc_sync.conflicts (
  id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  stream         text NOT NULL,
  table_name     text NOT NULL,
  key            jsonb,
  rule           text NOT NULL,          -- change-time | updated-at
  incoming_op    text NOT NULL,
  incoming       jsonb,                  -- the change's row; null for a delete
  incoming_time  timestamptz,            -- its commit/capture time at the source
  stored         jsonb,                  -- the target's row; null when absent
  stored_time    timestamptz,            -- the target's own newest change of the key
  winner         text NOT NULL CHECK (winner IN ('incoming', 'stored')),
  winning        jsonb,                  -- the row both sides keep; null: deleted
  resolved_at    timestamptz NOT NULL DEFAULT now()
);
`;

/** Serializes concurrent set-ups (two streams starting against one database). */
export const SETUP_LOCK_SQL = `SELECT pg_advisory_xact_lock(hashtext('cdc_sync.setup'))`;

export interface UpsertShape {
  table: QualifiedName;
  columns: string[];
  key: string[];
  /** newer-wins: only replace a row whose column is older (or null). */
  newerWinsBy?: string | undefined;
  /** Column ownership: the only columns an existing row may have changed (null: all). */
  updatable?: string[] | null | undefined;
  /** Columns compared by their text: types whose equality is wider than identity, or missing (TargetInfo.textCompared). */
  textCompared?: string[] | undefined;
  /** json and jsonb columns (`type` the one to read their text as): their values travel in `$1` as JSON strings of their text. */
  jsonColumns?: { name: string; type: string }[] | undefined;
}

/**
 * The rows of `$1` with the table's row type. A json or jsonb value travels
 * as a JSON string holding its text and is read back from it (`#>>`, then a
 * cast): nested as itself, json_populate_recordset would read a JSON `null`
 * as SQL NULL.
 */
function incomingRows(shape: UpsertShape): string {
  const table = quoteTable(shape.table);
  const source = `json_populate_recordset(NULL::${table}, $1::json)`;
  const json = shape.jsonColumns?.filter((j) => shape.columns.includes(j.name)) ?? [];
  if (json.length === 0) return `SELECT ${shape.columns.map(quoteIdent).join(', ')} FROM ${source}`;
  const list = shape.columns.map((c) => {
    const type = json.find((j) => j.name === c)?.type;
    return type ? `(${quoteIdent(c)} #>> '{}')::${type} AS ${quoteIdent(c)}` : quoteIdent(c);
  });
  return `SELECT ${list.join(', ')} FROM ${source}`;
}

/** `(a.x, a.y) IS DISTINCT FROM (b.x, b.y)`, the `textCompared` columns by their text. */
function differs(shape: UpsertShape, columns: string[], a: string, b: string): string {
  const side = (alias: string) =>
    columns.map((c) => `${alias}.${quoteIdent(c)}${shape.textCompared?.includes(c) ? '::text' : ''}`).join(', ');
  return `(${side(a)}) IS DISTINCT FROM (${side(b)})`;
}

export function upsertSql(shape: UpsertShape): string {
  const table = quoteTable(shape.table);
  const cols = shape.columns.map(quoteIdent).join(', ');
  const head = `INSERT INTO ${table} AS t (${cols}) ${incomingRows(shape)}`;
  const conflict = shape.key.map(quoteIdent).join(', ');
  const updatable = shape.columns.filter((c) => !shape.key.includes(c) && (!shape.updatable || shape.updatable.includes(c)));
  if (updatable.length === 0) return `${head} ON CONFLICT (${conflict}) DO NOTHING`;
  const set = updatable.map((c) => `${quoteIdent(c)} = EXCLUDED.${quoteIdent(c)}`).join(', ');
  // Skip rows that would not change: no new row version, no trigger, no echo.
  const changed = differs(shape, updatable, 't', 'EXCLUDED');
  const newer = shape.newerWinsBy
    ? ` AND (t.${quoteIdent(shape.newerWinsBy)} IS NULL OR EXCLUDED.${quoteIdent(shape.newerWinsBy)} >= t.${quoteIdent(shape.newerWinsBy)})`
    : '';
  return `${head} ON CONFLICT (${conflict}) DO UPDATE SET ${set} WHERE ${changed}${newer}`;
}

/**
 * newer-wins: the keys of incoming rows that lose because the stored row is
 * newer and different. Run in the batch's transaction just before the upsert,
 * so losers are counted and logged, never dropped silently.
 */
export function conflictSql(shape: UpsertShape & { newerWinsBy: string }): string {
  const table = quoteTable(shape.table);
  const by = quoteIdent(shape.newerWinsBy);
  const match = shape.key.map((k) => `t.${quoteIdent(k)} = s.${quoteIdent(k)}`).join(' AND ');
  const compared = shape.columns.filter((c) => !shape.key.includes(c));
  const different = compared.length ? ` AND ${differs(shape, compared, 't', 's')}` : '';
  return `SELECT ${shape.key.map((k) => `s.${quoteIdent(k)}`).join(', ')}, row_to_json(s)::text AS "cdc_sync incoming", row_to_json(t)::text AS "cdc_sync stored"
  FROM (${incomingRows(shape)}) AS s JOIN ${table} AS t ON ${match}
 WHERE t.${by} > s.${by}${different}`;
}

/**
 * Ping-back after a lost conflict in a two-way setup (as SymmetricDS does):
 * the stored, newer row is written into this database's change log, so the
 * stream running the other way carries the winner back to the side whose
 * older edit lost, and both sides end equal. Only for tables that the
 * change-log triggers capture here.
 */
export function pingBackSql(table: QualifiedName, key: string[]): string {
  const t = quoteTable(table);
  const match = key.map((k) => `t.${quoteIdent(k)} = s.${quoteIdent(k)}`).join(' AND ');
  return `INSERT INTO cdc_sync.changes (table_name, op, row_data, origin)
SELECT $2, 'U', row_to_json(t)::text, 'cdc-sync ping-back'
  FROM ${t} AS t JOIN json_populate_recordset(NULL::${t}, $1::json) AS s ON ${match}`;
}

/** Deletes that won a conflict here, back into the change log (see `pingBackDeletes`); $1: [{table, key, at}]. */
export const PING_BACK_DELETES_SQL = `INSERT INTO cdc_sync.changes (table_name, op, old_data, origin, captured_at)
SELECT d."table", 'D', d.key::text, 'cdc-sync ping-back', d.at FROM json_to_recordset($1::json) AS d("table" text, key json, at timestamptz)`;

/**
 * newer-wins by change time, step 1: lock the stored rows of the batch's
 * keys, so a local edit in flight either committed before (and its change
 * is seen by step 2, a new statement) or waits until this batch commits.
 */
export function lockRowsSql(table: QualifiedName, key: string[]): string {
  const t = quoteTable(table);
  const match = key.map((k) => `t.${quoteIdent(k)} = s.${quoteIdent(k)}`).join(' AND ');
  return `SELECT 1 FROM ${t} AS t JOIN json_populate_recordset(NULL::${t}, $1::json) AS s ON ${match} FOR UPDATE OF t`;
}

/**
 * newer-wins by change time, step 2: per incoming key (by its index in $1)
 * the newest change this database's own change log holds for it — by its
 * before or its after image, so a local key change counts for both keys —
 * and the stored row. Only changes captured at or after $3 (the batch's
 * oldest change time) can be newer, which bounds the scan. Ping-back rows
 * are cdc-sync's, not the application's edits.
 *
 * Both CTEs are MATERIALIZED: the planner estimates the recent end of the
 * change log at a row or two (statistics always lag an ascending time), and
 * with them inlined it rebuilt the batch's keys once per local change, a
 * nested loop that took 4.5 s for 1,000 keys against 5,000 recent changes
 * (26 ms materialized: a hash join), and held a two-way burst of 10,000
 * edits for 33 s instead of 1 (test/e2e/two-way.test.ts).
 */
export function localChangesSql(table: QualifiedName, key: string[]): string {
  const t = quoteTable(table);
  const keys = key.map((k) => `r.${quoteIdent(k)}`).join(', ');
  const on = (a: string, b: string) => key.map((k) => `${a}.${quoteIdent(k)} = ${b}.${quoteIdent(k)}`).join(' AND ');
  return `WITH s AS MATERIALIZED (
  SELECT i.n - 1 AS idx, r.* FROM json_array_elements($1::json) WITH ORDINALITY AS i(k, n)
  CROSS JOIN LATERAL json_populate_record(NULL::${t}, i.k) AS r
), l AS MATERIALIZED (
  SELECT ${keys}, max(c.captured_at) AS local_time
    FROM cdc_sync.changes c
    CROSS JOIN LATERAL (VALUES (c.row_data), (c.old_data)) AS img(d)
    CROSS JOIN LATERAL json_populate_record(NULL::${t}, img.d::json) AS r
   WHERE c.table_name = $2 AND c.captured_at >= $3::timestamptz AND img.d IS NOT NULL
     AND c.origin IS DISTINCT FROM 'cdc-sync ping-back'
   GROUP BY ${keys}
)
SELECT s.idx::int AS idx, l.local_time, (SELECT row_to_json(t)::text FROM ${t} AS t WHERE ${on('t', 's')}) AS stored
  FROM s JOIN l ON ${on('l', 's')}`;
}

export const INSERT_CONFLICTS_SQL = `
INSERT INTO cdc_sync.conflicts (stream, table_name, key, rule, incoming_op, incoming, incoming_time, stored, stored_time, winner, winning)
SELECT stream, "table", key, rule, op, incoming, incoming_time, stored, stored_time, winner, winning
  FROM jsonb_to_recordset($1::jsonb)
    AS d(stream text, "table" text, key jsonb, rule text, op text, incoming jsonb, incoming_time timestamptz,
         stored jsonb, stored_time timestamptz, winner text, winning jsonb)`;

/** Whether the change-log trigger captures the table (two-way set-ups). */
export const CAPTURED_SQL = `SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = $1::regclass AND tgname = 'cdc_sync_capture') AS captured`;

/**
 * New rows straight into the table with COPY: several times less server work
 * per row than INSERT … SELECT FROM json_populate_recordset … ON CONFLICT
 * (no json to parse, no speculative insertion, rows written in multi-row
 * WAL records). It fails when a row exists already; the sink then writes
 * those rows with `upsertSql`.
 */
export function copyInSql(table: QualifiedName, columns: string[]): string {
  return `COPY ${quoteTable(table)} (${columns.map(quoteIdent).join(', ')}) FROM STDIN`;
}

export function deleteSql(table: QualifiedName, key: string[]): string {
  const t = quoteTable(table);
  const match = key.map((k) => `t.${quoteIdent(k)} = d.${quoteIdent(k)}`).join(' AND ');
  return `DELETE FROM ${t} AS t USING json_populate_recordset(NULL::${t}, $1::json) AS d WHERE ${match}`;
}

/**
 * A TRUNCATE the source applied: DELETE rather than TRUNCATE, so it takes
 * no exclusive lock, runs inside the batch's transaction like every other
 * statement, and a change-log trigger on the table sees row deletes written
 * under cdc-sync's origin (not captured again).
 */
export function emptyTableSql(table: QualifiedName): string {
  return `DELETE FROM ${quoteTable(table)}`;
}

/**
 * Open dead letters of keys this batch changed again are superseded: the
 * newer change is applied, and retrying the old one would write an older
 * image over it. They are closed in the batch's transaction.
 */
export const SUPERSEDE_DEAD_LETTERS_SQL = `
UPDATE cdc_sync.dead_letters AS d SET retried_at = now(), error = d.error || ' [superseded by a later change of the key]'
  FROM jsonb_to_recordset($2::jsonb) AS k("table" text, key jsonb)
 WHERE d.stream = $1 AND d.retried_at IS NULL AND d.table_name = k."table" AND d.key = k.key`;

export const OPEN_DEAD_LETTERS_SQL = `SELECT count(*)::int AS n FROM cdc_sync.dead_letters WHERE stream = $1 AND retried_at IS NULL`;

export const INSERT_DEAD_LETTERS_SQL = `
INSERT INTO cdc_sync.dead_letters (stream, table_name, key, payload, error, reason, position)
SELECT stream, "table", key, payload, error, reason, position
  FROM jsonb_to_recordset($1::jsonb)
    AS d(stream text, "table" text, key jsonb, payload text, error text, reason text, position text)`;

/**
 * The statements that open a batch's transaction: who writes (the
 * change-log triggers skip rows written under this origin) and, when the
 * database has it, the origin marker row a postgres-wal source reading this
 * database drops whole transactions by. The stream name is a quoted
 * constant: the statements go as one simple query (one round trip), which
 * takes no parameters; no row value is ever part of it.
 */
export function beginSql(origin: string | null, marker: boolean): string[] {
  const statements = ['BEGIN'];
  if (origin !== null) {
    statements.push(`SELECT set_config('cdc_sync.origin', ${quoteLiteral(origin)}, true)`);
    if (marker) {
      statements.push(`INSERT INTO cdc_sync.origin_marker (id, stream, written_at) VALUES (1, ${quoteLiteral(origin)}, now())
ON CONFLICT (id) DO UPDATE SET stream = EXCLUDED.stream, written_at = EXCLUDED.written_at`);
    }
  }
  return statements;
}

/** Saves the checkpoint (when given) and commits. */
export function commitSql(checkpoint?: { stream: string; position: string }): string[] {
  if (!checkpoint) return ['COMMIT'];
  return [
    `INSERT INTO cdc_sync.checkpoints (stream, position) VALUES (${quoteLiteral(checkpoint.stream)}, ${quoteLiteral(checkpoint.position)})
ON CONFLICT (stream) DO UPDATE SET position = EXCLUDED.position, updated_at = now()`,
    'COMMIT',
  ];
}

export const READ_CHECKPOINT_SQL = `SELECT position FROM cdc_sync.checkpoints WHERE stream = $1`;

/** The database's own tables as schema.name, for a target the configuration left out (matchTarget). */
export const TABLE_NAMES_SQL = `SELECT n.nspname || '.' || c.relname AS name
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
   AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'cdc_sync') AND n.nspname NOT LIKE 'pg\\_%'`;
