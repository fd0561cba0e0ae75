import type { QualifiedName } from '../../core/names.js';
import { quoteIdent, quoteTable } from './identifiers.js';

/**
 * The sink's SQL. Every statement takes its rows as one jsonb parameter and
 * expands it with jsonb_populate_recordset against the target's own row type,
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
}

export function upsertSql(shape: UpsertShape): string {
  const table = quoteTable(shape.table);
  const cols = shape.columns.map(quoteIdent).join(', ');
  const head = `INSERT INTO ${table} AS t (${cols}) SELECT ${cols} FROM jsonb_populate_recordset(NULL::${table}, $1::jsonb)`;
  const conflict = shape.key.map(quoteIdent).join(', ');
  const updatable = shape.columns.filter((c) => !shape.key.includes(c) && (!shape.updatable || shape.updatable.includes(c)));
  if (updatable.length === 0) return `${head} ON CONFLICT (${conflict}) DO NOTHING`;
  const set = updatable.map((c) => `${quoteIdent(c)} = EXCLUDED.${quoteIdent(c)}`).join(', ');
  // Skip rows that would not change: no new row version, no trigger, no echo.
  const changed = `(${updatable.map((c) => `t.${quoteIdent(c)}`).join(', ')}) IS DISTINCT FROM (${updatable
    .map((c) => `EXCLUDED.${quoteIdent(c)}`)
    .join(', ')})`;
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
  const differs = compared.length
    ? ` AND (${compared.map((c) => `t.${quoteIdent(c)}`).join(', ')}) IS DISTINCT FROM (${compared.map((c) => `s.${quoteIdent(c)}`).join(', ')})`
    : '';
  return `SELECT ${shape.key.map((k) => `s.${quoteIdent(k)}`).join(', ')}
  FROM jsonb_populate_recordset(NULL::${table}, $1::jsonb) AS s JOIN ${table} AS t ON ${match}
 WHERE t.${by} > s.${by}${differs}`;
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
  FROM ${t} AS t JOIN jsonb_populate_recordset(NULL::${t}, $1::jsonb) AS s ON ${match}`;
}

/** Whether the change-log trigger captures the table (two-way set-ups). */
export const CAPTURED_SQL = `SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = $1::regclass AND tgname = 'cdc_sync_capture') AS captured`;

export function deleteSql(table: QualifiedName, key: string[]): string {
  const t = quoteTable(table);
  const match = key.map((k) => `t.${quoteIdent(k)} = d.${quoteIdent(k)}`).join(' AND ');
  return `DELETE FROM ${t} AS t USING jsonb_populate_recordset(NULL::${t}, $1::jsonb) AS d WHERE ${match}`;
}

export const INSERT_DEAD_LETTERS_SQL = `
INSERT INTO cdc_sync.dead_letters (stream, table_name, key, payload, error, reason, position)
SELECT stream, "table", key, payload, error, reason, position
  FROM jsonb_to_recordset($1::jsonb)
    AS d(stream text, "table" text, key jsonb, payload text, error text, reason text, position text)`;

export const SAVE_CHECKPOINT_SQL = `
INSERT INTO cdc_sync.checkpoints (stream, position) VALUES ($1, $2)
ON CONFLICT (stream) DO UPDATE SET position = EXCLUDED.position, updated_at = now()`;

export const READ_CHECKPOINT_SQL = `SELECT position FROM cdc_sync.checkpoints WHERE stream = $1`;
