import type { LogicalType } from '../../core/values.js';
import { rowImageSql } from '../../db/sqlite/changelog-setup.js';
import { quoteIdent } from '../../db/sqlite/connection.js';

/**
 * The sink's SQL. Every statement takes its rows as one JSON parameter, an
 * array of arrays in `columns` order, expanded with json_each: one statement
 * writes a table's share of a batch, and positions (`->> 0`) instead of names
 * keep column names out of JSON paths. Binary values travel as hex and are
 * turned back into blobs with unhex(); the columns' affinity converts the rest.
 */

export const SCHEMA_SQL = `
CREATE TABLE IF NOT EXISTS cdc_sync_checkpoints (
  stream     TEXT PRIMARY KEY,
  position   TEXT NOT NULL,
  updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE TABLE IF NOT EXISTS cdc_sync_dead_letters (
  id         INTEGER PRIMARY KEY AUTOINCREMENT,
  stream     TEXT NOT NULL,
  table_name TEXT NOT NULL,
  key        TEXT,
  payload    TEXT NOT NULL,
  error      TEXT NOT NULL,
  reason     TEXT NOT NULL,
  position   TEXT NOT NULL,
  failed_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
  retried_at TEXT
);
CREATE INDEX IF NOT EXISTS cdc_sync_dead_letters_open ON cdc_sync_dead_letters (stream, table_name) WHERE retried_at IS NULL;
-- Each conflict the sink resolved, with both rows and the winner (as SymmetricDS keeps them).
CREATE TABLE IF NOT EXISTS cdc_sync_conflicts (
  id            INTEGER PRIMARY KEY AUTOINCREMENT,
  stream        TEXT NOT NULL,
  table_name    TEXT NOT NULL,
  key           TEXT,
  rule          TEXT NOT NULL,
  incoming_op   TEXT NOT NULL,
  incoming      TEXT,
  incoming_time TEXT,
  stored        TEXT,
  stored_time   TEXT,
  winner        TEXT NOT NULL,
  winning       TEXT,
  resolved_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
-- See changelog-setup.ts: a row here marks the sink's own transaction, so capture triggers skip its writes.
CREATE TABLE IF NOT EXISTS cdc_sync_origin (origin TEXT);
`;

export interface Shape {
  table: string;
  /** Columns of the rows, in parameter order. */
  columns: { name: string; type: LogicalType }[];
  key: string[];
  newerWinsBy?: string | undefined;
  /** Column ownership: the only columns an existing row may have changed (null: all). */
  updatable?: string[] | null | undefined;
}

function valueSql(index: number, type: LogicalType): string {
  const v = `j.value ->> ${index}`;
  return type === 'binary' ? `unhex(${v})` : v;
}

/**
 * `a` is newer than (or as new as, with `orEqual`) `b`: timestamps by instant,
 * anything else by value. julianday() reads SQLite's own `2024-01-02 03:04:05`,
 * which the sink writes, and the ISO text with 'T' and a zone that rows written
 * earlier or by applications hold, so all of them compare right with each other.
 */
function newerSql(a: string, b: string, orEqual: boolean): string {
  const op = orEqual ? '>=' : '>';
  return `coalesce(julianday(${a}) ${op} julianday(${b}), ${a} ${op} ${b})`;
}

/**
 * Whether stored `a` and incoming `b` differ. Timestamps compare by instant
 * to the millisecond when both read as one and neither has more fractional
 * digits: `2021-01-01 00:00:00.000`, as an application wrote it, is the
 * `2021-01-01 00:00:00` the sink writes for it (a copy must not rewrite every
 * such row); any other value, by its stored value.
 */
function differsSql(a: string, b: string, type: LogicalType): string {
  if (type !== 'timestamp' && type !== 'timestamptz') return `${a} IS NOT ${b}`;
  const fine = (x: string) => `${x} NOT GLOB '*.[0-9][0-9][0-9][0-9]*'`;
  return `(CASE WHEN julianday(${a}) IS NOT NULL AND julianday(${b}) IS NOT NULL AND ${fine(a)} AND ${fine(b)}
    THEN strftime('%Y-%m-%d %H:%M:%f', ${a}) IS NOT strftime('%Y-%m-%d %H:%M:%f', ${b}) ELSE ${a} IS NOT ${b} END)`;
}

export function upsertSql(shape: Shape): string {
  const t = quoteIdent(shape.table);
  const cols = shape.columns.map((c) => quoteIdent(c.name)).join(', ');
  const values = shape.columns.map((c, i) => valueSql(i, c.type)).join(', ');
  // "WHERE true": without it SQLite would read ON CONFLICT as a join constraint.
  const head = `INSERT INTO ${t} (${cols}) SELECT ${values} FROM json_each(?) AS j WHERE true`;
  const conflict = shape.key.map(quoteIdent).join(', ');
  const updatable = shape.columns
    .map((c) => c.name)
    .filter((c) => !shape.key.includes(c) && (!shape.updatable || shape.updatable.includes(c)));
  if (updatable.length === 0) return `${head} ON CONFLICT (${conflict}) DO NOTHING`;
  const set = updatable.map((c) => `${quoteIdent(c)} = excluded.${quoteIdent(c)}`).join(', ');
  // Skip rows that would not change: no write, no trigger, no echo.
  const typeOf = new Map(shape.columns.map((c) => [c.name, c.type]));
  const changed = updatable.map((c) => differsSql(`${t}.${quoteIdent(c)}`, `excluded.${quoteIdent(c)}`, typeOf.get(c)!)).join(' OR ');
  const by = shape.newerWinsBy ? quoteIdent(shape.newerWinsBy) : undefined;
  const newer = by ? ` AND (${t}.${by} IS NULL OR ${newerSql(`excluded.${by}`, `${t}.${by}`, true)})` : '';
  return `${head} ON CONFLICT (${conflict}) DO UPDATE SET ${set} WHERE (${changed})${newer}`;
}

/** The incoming rows as a subquery `s` with columns c0, c1, … */
function incomingSql(shape: Shape): string {
  return `(SELECT ${shape.columns.map((c, i) => `${valueSql(i, c.type)} AS c${i}`).join(', ')} FROM json_each(?) AS j)`;
}

/**
 * newer-wins: keys (as stored) of incoming rows that lose because the stored
 * row is newer and different. Run just before the upsert, in its transaction.
 */
export function conflictSql(shape: Shape & { newerWinsBy: string }): string {
  const t = quoteIdent(shape.table);
  const index = new Map(shape.columns.map((c, i) => [c.name, i]));
  const s = (c: string) => `s.c${index.get(c)}`;
  const match = shape.key.map((k) => `t.${quoteIdent(k)} = ${s(k)}`).join(' AND ');
  const compared = shape.columns.map((c) => c.name).filter((c) => !shape.key.includes(c));
  const typeOf = new Map(shape.columns.map((c) => [c.name, c.type]));
  const differs = compared.length ? ` AND (${compared.map((c) => differsSql(`t.${quoteIdent(c)}`, s(c), typeOf.get(c)!)).join(' OR ')})` : '';
  const by = quoteIdent(shape.newerWinsBy);
  return `SELECT ${shape.key.map((k) => `t.${quoteIdent(k)} AS ${quoteIdent(k)}`).join(', ')}
  FROM ${incomingSql(shape)} AS s JOIN ${t} AS t ON ${match}
 WHERE ${newerSql(`t.${by}`, s(shape.newerWinsBy), false)}${differs}`;
}

/** Rows whose key is one of the parameter's key arrays (positions in `key` order). */
function keyMatchSql(key: string[], alias = ''): string {
  const cols = key.map((k) => `${alias}${quoteIdent(k)}`);
  const left = cols.length === 1 ? cols[0]! : `(${cols.join(', ')})`;
  return `${left} IN (SELECT ${key.map((_, i) => `j.value ->> ${i}`).join(', ')} FROM json_each(?) AS j)`;
}

/** A TRUNCATE the source applied: every row goes, in the batch's transaction. */
export function emptyTableSql(table: string): string {
  return `DELETE FROM ${quoteIdent(table)}`;
}

export function deleteSql(table: string, key: string[]): string {
  return `DELETE FROM ${quoteIdent(table)} WHERE ${keyMatchSql(key)}`;
}

/**
 * Ping-back after a lost conflict in a two-way set-up: the stored, newer row
 * goes into this database's change log, so the stream running the other way
 * carries the winner back to the side whose older edit lost (see the
 * PostgreSQL sink). Only for tables the capture triggers watch here.
 */
export function pingBackSql(table: string, key: string[], imageColumns: string[]): string {
  return `INSERT INTO cdc_sync_changes (table_name, op, row_data, origin)
SELECT ?, 'U', ${rowImageSql('t', imageColumns)}, 'cdc-sync ping-back' FROM ${quoteIdent(table)} AS t WHERE ${keyMatchSql(key, 't.')}`;
}

/** A delete that won a conflict here, back into the change log (see `lostToDeletes`). */
export const PING_BACK_DELETE_SQL = `INSERT INTO cdc_sync_changes (table_name, op, old_data, origin, captured_at)
VALUES (@table, 'D', @key, 'cdc-sync ping-back', @at)`;

/**
 * newer-wins by change time (see the PostgreSQL sink's localChangesSql):
 * per incoming key (its index in @keys, an array of key arrays) the newest
 * change this database's own change log holds for it, by its after or its
 * before image, and the stored row as the triggers image it. The sink's
 * BEGIN IMMEDIATE keeps every other writer out meanwhile. Key column names
 * go into JSON paths quoted; a name with a double quote cannot be matched.
 * Both CTEs are MATERIALIZED: inlined, SQLite scanned the batch's keys once
 * per recent local change (948 ms for 1,000 keys against 6,000 changes);
 * materialized it indexes them (7 ms).
 */
export function localChangesSql(table: string, key: string[], imageColumns: string[]): string {
  const picked = (image: string) => key.map((k, i) => `json_extract(${image}, '$."${k.replace(/'/g, "''")}"') AS k${i}`).join(', ');
  const ks = key.map((_, i) => `k${i}`).join(', ');
  const from = (image: string) =>
    `SELECT ${picked(image)}, captured_at AS t FROM cdc_sync_changes
      WHERE table_name = @table AND captured_at >= @since AND ${image} IS NOT NULL AND origin IS NOT 'cdc-sync ping-back'`;
  return `WITH s AS MATERIALIZED (SELECT CAST(j.key AS INTEGER) AS idx, ${key.map((_, i) => `j.value ->> ${i} AS k${i}`).join(', ')} FROM json_each(@keys) AS j),
l AS MATERIALIZED (SELECT ${ks}, max(t) AS local_time FROM (${from('row_data')} UNION ALL ${from('old_data')}) GROUP BY ${ks})
SELECT s.idx AS idx, l.local_time AS local_time,
       (SELECT ${rowImageSql('t', imageColumns)} FROM ${quoteIdent(table)} AS t WHERE ${key.map((k, i) => `t.${quoteIdent(k)} = s.k${i}`).join(' AND ')}) AS stored
  FROM s JOIN l ON ${key.map((_, i) => `l.k${i} = s.k${i}`).join(' AND ')}`;
}

export const INSERT_CONFLICTS_SQL = `
INSERT INTO cdc_sync_conflicts (stream, table_name, key, rule, incoming_op, incoming, incoming_time, stored, stored_time, winner, winning)
SELECT value ->> 'stream', value ->> 'table', value -> 'key', value ->> 'rule', value ->> 'op', value -> 'incoming', value ->> 'incoming_time',
       value -> 'stored', value ->> 'stored_time', value ->> 'winner', value -> 'winning'
  FROM json_each(?)`;

/** See the PostgreSQL sink: open dead letters of keys this batch changed again are closed as superseded. */
export const SUPERSEDE_DEAD_LETTERS_SQL = `
UPDATE cdc_sync_dead_letters SET retried_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), error = error || ' [superseded by a later change of the key]'
 WHERE stream = ? AND retried_at IS NULL
   AND EXISTS (SELECT 1 FROM json_each(?) AS k WHERE k.value ->> 'table' = table_name AND json(k.value -> 'key') = json(key))`;

export const OPEN_DEAD_LETTERS_SQL = `SELECT count(*) AS n FROM cdc_sync_dead_letters WHERE stream = ? AND retried_at IS NULL`;

export const INSERT_DEAD_LETTERS_SQL = `
INSERT INTO cdc_sync_dead_letters (stream, table_name, key, payload, error, reason, position)
SELECT value ->> 'stream', value ->> 'table', value -> 'key', value ->> 'payload', value ->> 'error', value ->> 'reason', value ->> 'position'
  FROM json_each(?)`;

export const SAVE_CHECKPOINT_SQL = `
INSERT INTO cdc_sync_checkpoints (stream, position) VALUES (?, ?)
ON CONFLICT (stream) DO UPDATE SET position = excluded.position, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')`;

export const READ_CHECKPOINT_SQL = `SELECT position FROM cdc_sync_checkpoints WHERE stream = ?`;

export const SET_ORIGIN_SQL = [`DELETE FROM cdc_sync_origin`, `INSERT INTO cdc_sync_origin (origin) VALUES (?)`] as const;
export const CLEAR_ORIGIN_SQL = `DELETE FROM cdc_sync_origin`;
