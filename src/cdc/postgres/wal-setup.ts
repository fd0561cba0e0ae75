import { quoteIdent, quoteTable, qualify } from '../../db/postgres/identifiers.js';

export const DEFAULT_NAME = (stream: string) => `cdc_sync_${stream.replace(/[^A-Za-z0-9_]/g, '_').toLowerCase()}`.slice(0, 63);

export const MARKER_TABLE_SQL = `CREATE SCHEMA IF NOT EXISTS cdc_sync;
CREATE TABLE IF NOT EXISTS cdc_sync.origin_marker (id int PRIMARY KEY, stream text, written_at timestamptz);`;

/** `cdc-sync init-sql` for a postgres-wal source: the publication (with the marker table) and replica identity guidance. */
export function walSetupSql(tables: string[], publication: string, slot: string): string {
  const list = [...tables.map((t) => quoteTable(qualify(t))), 'cdc_sync.origin_marker'].join(', ');
  return `-- postgres-wal: needs wal_level = logical (Supabase: on) and a role with REPLICATION (or the owner).
-- cdc-sync creates the publication and the slot itself when they are missing; this script does it up front.
${MARKER_TABLE_SQL}
-- cdc-sync's PostgreSQL sink writes this row in each of its transactions; the WAL source drops those (no echo).
CREATE PUBLICATION ${quoteIdent(publication)} FOR TABLE ${list};
-- Replica identity: the default (primary key) sends the key of deleted rows and unchanged TOAST columns
-- are left untouched in the target. For full before-images (conflict checks, tables without a primary key):
${tables.map((t) => `--   ALTER TABLE ${quoteTable(qualify(t))} REPLICA IDENTITY FULL;`).join('\n')}
-- The slot ${quoteIdent(slot)} keeps WAL until cdc-sync acknowledges it: alert on cdc_sync_source_retained_bytes,
-- and drop an abandoned slot with \`cdc-sync drop-slot --stream NAME\`.
`;
}

/**
 * A captured table: its columns, and those pgoutput publishes (generated
 * columns are not replicated in PostgreSQL 15) with their type OIDs, which
 * the initial copy reads the way the stream decodes them.
 */
export const TABLE_INFO_SQL = `
  SELECT c.oid IS NOT NULL AS exists,
         coalesce((SELECT array_agg(attname::text ORDER BY attnum) FROM pg_attribute WHERE attrelid = c.oid AND attnum > 0 AND NOT attisdropped), '{}') AS columns,
         coalesce((SELECT array_agg(attname::text ORDER BY attnum) FROM pg_attribute
                    WHERE attrelid = c.oid AND attnum > 0 AND NOT attisdropped AND attgenerated = ''), '{}') AS published,
         coalesce((SELECT array_agg(atttypid::int ORDER BY attnum) FROM pg_attribute
                    WHERE attrelid = c.oid AND attnum > 0 AND NOT attisdropped AND attgenerated = ''), '{}') AS types,
         coalesce((SELECT array_agg(a.attname::text ORDER BY a.attnum)
                     FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
                    WHERE i.indrelid = c.oid AND i.indisprimary), '{}') AS primary_key
    FROM (SELECT to_regclass($1) AS oid) c`;

export const PUBLICATION_SQL = `
  SELECT p.puballtables AS all_tables,
         coalesce((SELECT array_agg(schemaname || '.' || tablename) FROM pg_publication_tables t WHERE t.pubname = p.pubname), '{}') AS tables
    FROM pg_publication p WHERE p.pubname = $1`;

export const SLOT_SQL = `SELECT plugin, database, active, confirmed_flush_lsn::text AS confirmed FROM pg_replication_slots WHERE slot_name = $1`;

export const RETAINED_SQL = `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::float8 AS bytes FROM pg_replication_slots WHERE slot_name = $1`;

/** From the catalog, not to_regclass: a login without USAGE on schema cdc_sync (a read-only one) may ask too. */
export const MARKER_EXISTS_SQL = `SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                                  WHERE n.nspname = 'cdc_sync' AND c.relname = 'origin_marker') AS exists`;

/**
 * One page of a table's initial copy, in key order (keyset pagination):
 * `$1` the key of the last row copied as json (typed by the table's own row
 * type), `$2` the page size. Each row comes as `found` (true) and its
 * columns `c0`, `c1`, … as the text of their output functions (format's %s
 * calls them; columns, not one text[], which the driver would have to
 * parse again), the very text pgoutput sends
 * for a change, so a copied row and a streamed change of the same key carry
 * equal values: `2` and `'2'` for a bigint would be two keys to the batch,
 * and a streamed delete would not meet the copied insert it must undo.
 */
export function copyPageSql(table: string, key: string[], columns: string[], first: boolean, where?: string): string {
  const t = quoteTable(qualify(table));
  const keys = key.map(quoteIdent);
  const values = columns.map((c) => `CASE WHEN t.${quoteIdent(c)} IS NULL THEN NULL ELSE format('%s', t.${quoteIdent(c)}) END`);
  const after = first ? 'WHERE $1::json IS NULL' : `WHERE (${keys.map((k) => `t.${k}`).join(', ')}) > (SELECT ${keys.join(', ')} FROM json_populate_record(NULL::${t}, $1::json))`;
  const only = where === undefined ? '' : ` AND (${where})`;
  return `SELECT true AS found, ${values.map((v, i) => `${v} AS c${i}`).join(', ')} FROM ${t} AS t ${after}${only} ORDER BY ${keys.map((k) => `t.${k}`).join(', ')} LIMIT $2`;
}

/**
 * A copy chunk (copyPageSql, $1 and $2), the statement's snapshot (which
 * transactions the chunk sees) and its watermark in one statement:
 * a transactional logical message (prefix `cdc-sync`, content $3) written
 * after the statement's snapshot was taken, so every transaction the chunk
 * sees committed before the message's LSN (see WalCopier). Transactional,
 * and committed with synchronous_commit on for this transaction whatever
 * the server's setting, so the commit flushes it and the walsender sends it
 * at once (a walsender sends only flushed WAL; the WAL writer would take up
 * to wal_writer_delay). It needs no table write, only a primary.
 */
export function walCopyChunkSql(table: string, key: string[], columns: string[], first: boolean, where?: string): string {
  return `SELECT m.marker::text AS marker, m.snapshot, c.*
  FROM (SELECT pg_current_snapshot()::text AS snapshot, set_config('synchronous_commit', 'on', true) AS flush,
               pg_logical_emit_message(true, 'cdc-sync', $3::text) AS marker) AS m
  LEFT JOIN LATERAL (${copyPageSql(table, key, columns, first, where)}) AS c ON true`;
}

/** The planner's row estimate of a table (no scan; -1 or 0 before the first ANALYZE), for the copy's progress gauge. */
export const ROW_ESTIMATE_SQL = `SELECT reltuples::float8 AS n FROM pg_class WHERE oid = to_regclass($1)`;

export const SERVER_VERSION_SQL = `SELECT current_setting('server_version_num')::int AS version`;

/** Starts streaming from the slot at `start` (pgoutput, protocol 1). */
export function startReplicationSql(slot: string, start: string, publicationName: string, sendMessages: boolean): string {
  const publication = quoteIdent(publicationName).replace(/'/g, "''");
  // messages: the copy's watermarks (WalCopier) arrive as soon as they are committed (PostgreSQL 15 skips empty transactions).
  const messages = sendMessages ? `, messages 'true'` : '';
  return `START_REPLICATION SLOT ${slot} LOGICAL ${start} (proto_version '1', publication_names '${publication}'${messages})`;
}
