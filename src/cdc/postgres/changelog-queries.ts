import { quoteIdent, quoteLiteral } from '../../db/postgres/identifiers.js';

/**
 * The change-log reader's SQL (PostgreSQL 13+ and PGlite: pg_current_snapshot,
 * pg_visible_in_snapshot on xid8). $done may be NULL: then nothing is done yet.
 */

/** The server run: its start time, in µs (see ChangeLogPosition.server). */
const SERVER_RUN = `floor(extract(epoch FROM pg_postmaster_start_time()) * 1000000)::bigint::text AS server`;

export const SERVER_RUN_SQL = `SELECT ${SERVER_RUN}`;

/**
 * The first transaction id the server hands out after its last checkpoint
 * (`epoch:xid`); after a crash that checkpoint is the one at the end of
 * recovery, so ids from here on may be handed out a second time.
 */
export const CHECKPOINT_NEXT_XID_SQL = `SELECT next_xid FROM pg_control_checkpoint()`;

/**
 * Changes of the range (done, upto]: transactions committed at `upto` but not
 * at `done`. Of every table: the reader counts and reports changes of tables
 * it does not capture instead of passing over them unseen. No condition here
 * can use an index: each statement adds the one index condition it is meant
 * to run on, so its plan does not depend on statistics (a burst is read
 * before autovacuum has analyzed it).
 */
const inRange = (upto: string) => `
      ($1::text IS NULL OR NOT pg_visible_in_snapshot(c.xid, $1::pg_snapshot))
  AND pg_visible_in_snapshot(c.xid, ${upto})`;
const IN_RANGE = inRange('$2::pg_snapshot');

/**
 * Lowest and highest id of the range, found once per range through the xid
 * index (ids between the oldest transaction still running at `done` and the
 * first not yet started at `upto`), so that pages can walk the id index
 * between them. `+ 0`: a bare min(c.id) lets PostgreSQL walk the primary key
 * from the log's start instead, past every retained change of earlier
 * ranges (200,000 rows read for an answer of 18, without statistics, and
 * again at every poll of an idle stream).
 */
const boundsOf = (upto: string) => `
SELECT min(c.id + 0)::text AS low, max(c.id + 0)::text AS high
  FROM cdc_sync.changes c
 WHERE ($1::text IS NULL OR c.xid >= pg_snapshot_xmin($1::pg_snapshot))
   AND c.xid < pg_snapshot_xmax(${upto})
   AND ${inRange(upto)}`;
export const RANGE_BOUNDS_SQL = boundsOf('$2::pg_snapshot');

/**
 * The next range after $1 in one statement, as an idle stream polls for it
 * once a second: the current snapshot, the server run, and the range's
 * bounds as RANGE_BOUNDS_SQL finds them (both snapshots are the statement's own).
 */
export const NEXT_RANGE_SQL = `
WITH s AS (SELECT pg_current_snapshot() AS snapshot, ${SERVER_RUN})
SELECT s.snapshot::text AS snapshot, s.server, b.low, b.high
  FROM s CROSS JOIN LATERAL (${boundsOf('s.snapshot')}) b`;

/**
 * The changes of the range with ids in ($4, $5], on the primary key. Row
 * images only of the tables in $3: a change of another table is counted,
 * not read. The reader keeps the id window as wide as a page: with a LIMIT
 * over the whole rest of the range instead, PostgreSQL without statistics
 * scanned and sorted all of it for every page (110 ms a page at the start of
 * a 200,000-change burst, against 1 ms).
 */
export const READ_PAGE_SQL = `
SELECT c.id::text AS id, c.table_name, c.op,
       CASE WHEN c.table_name = ANY($3::text[]) THEN c.row_data END AS row_data,
       CASE WHEN c.table_name = ANY($3::text[]) THEN c.old_data END AS old_data,
       c.origin, c.captured_at, c.xid::text AS xid
  FROM cdc_sync.changes c
 WHERE c.id > $4::bigint AND c.id <= $5::bigint AND ${IN_RANGE}
 ORDER BY c.id`;

/**
 * The last change id, past $4, of the transactions in $3 (xid8 text), so a
 * page that ends inside a transaction can be read on to its end: a source
 * transaction is applied whole (children inserted before their parents
 * commit with them). One lookup of the xid index per transaction: with
 * `xid = ANY($3)` PostgreSQL without statistics took the hundred
 * transactions of a 1,000-change page for half the log and scanned all of
 * it, every page (a 10-row-transaction burst drained at 31,000 changes/s
 * instead of 77,000). `c.id + 0` everywhere: PostgreSQL walks the primary
 * key backwards from the end of the log for a bare `max(c.id)`, and ANDs a
 * bitmap of every later id to each lookup for a bare `c.id >` (300 ms for
 * a page's hundred transactions).
 */
export const TRANSACTIONS_END_SQL = `
SELECT max(t.high)::text AS high
  FROM unnest($3::xid8[]) AS x(xid)
  CROSS JOIN LATERAL (
    SELECT max(c.id + 0) AS high
      FROM cdc_sync.changes c
     WHERE c.xid = x.xid AND c.id + 0 > $4::bigint AND ${IN_RANGE}) t`;

/** Where this reader's checkpoint stands: transactions below the xmin of its `done` snapshot are all applied. */
export const SAVE_READER_SQL = `
INSERT INTO cdc_sync.readers (stream, oldest_xid) VALUES ($1, pg_snapshot_xmin($2::pg_snapshot))
ON CONFLICT (stream) DO UPDATE SET oldest_xid = EXCLUDED.oldest_xid, updated_at = now()`;

/** Changes every reader has applied, older than the retention ($1 hours); then the rows left. */
export const PRUNE_SQL = `
DELETE FROM cdc_sync.changes
 WHERE xid < (SELECT min(oldest_xid) FROM cdc_sync.readers)
   AND captured_at < now() - $1::float8 * interval '1 hour'`;

export const COUNT_CHANGES_SQL = `SELECT count(*)::float8 AS n FROM cdc_sync.changes`;

/** Approximate backlog: ids are a sequence, so gaps from rollbacks make it an upper bound. */
export const PENDING_SQL = `SELECT coalesce(max(id), 0)::text AS high FROM cdc_sync.changes`;

export const TABLE_INFO_SQL = `
SELECT to_regclass($1) IS NOT NULL AS exists,
       to_regclass('cdc_sync.changes') IS NOT NULL AS changelog,
       EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = to_regclass($1) AND tgname = 'cdc_sync_capture') AS captured,
       coalesce((SELECT array_agg(attname::text ORDER BY attnum) FROM pg_attribute
                  WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped), '{}') AS columns,
       coalesce((SELECT array_agg(a.attname::text ORDER BY k.ord)
                   FROM pg_index i
                   CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
                   JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                  WHERE i.indrelid = to_regclass($1) AND i.indisprimary), '{}') AS primary_key,
       coalesce((SELECT array_agg(a.attname::text) FROM pg_attribute a JOIN pg_type ty ON ty.oid = a.atttypid
                  WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
                    AND (a.atttypid IN ('json'::regtype, 'jsonb'::regtype) OR ty.typbasetype IN ('json'::regtype, 'jsonb'::regtype))), '{}') AS json_columns`;

export interface ChangeRow {
  id: string;
  table_name: string;
  op: string;
  row_data: string | null;
  old_data: string | null;
  origin: string | null;
  captured_at: Date;
  xid: string;
}

/**
 * A chunk of a table's existing rows and, in the same statement and so the
 * same snapshot, `pg_current_snapshot()`: the reader applies the change log
 * up to exactly that snapshot before the chunk (see TableCopy). Rows come as
 * `row_to_json`, the capture trigger's own form. The first chunk has no key
 * to start after; the next ones start after $1, the last row's key columns
 * as a JSON object, typed by the table's own row type so the row comparison
 * orders exactly as ORDER BY and can seek the primary key.
 */
export function copyChunkSql(table: string, key: string[], after: boolean, where?: string): string {
  const columns = key.map((k) => `t.${quoteIdent(k)}`).join(', ');
  const last = key.map((k) => `(json_populate_record(NULL::${table}, $1::json)).${quoteIdent(k)}`).join(', ');
  const keyImage = `json_build_object(${key.map((k) => `${quoteLiteral(k)}, t.${quoteIdent(k)}`).join(', ')})::text`;
  return `
WITH s AS (SELECT pg_current_snapshot()::text AS snapshot, ${SERVER_RUN})
SELECT s.snapshot, s.server, c.row_data, c.copy_key
  FROM s LEFT JOIN LATERAL (
    SELECT row_to_json(t)::text AS row_data, ${keyImage} AS copy_key
      FROM ${table} t${whereClause([...(after ? [`ROW(${columns}) > ROW(${last})`] : []), ...(where === undefined ? [] : [`(${where})`])])}
     ORDER BY ${columns}
     LIMIT $${after ? 2 : 1}) c ON true`;
}

export const countRowsSql = (table: string, where?: string) => `SELECT count(*)::float8 AS n FROM ${table} t${whereClause(where === undefined ? [] : [`(${where})`])}`;

const whereClause = (conditions: string[]) => (conditions.length === 0 ? '' : `\n     WHERE ${conditions.join(' AND ')}`);

export interface CopyRow {
  snapshot: string;
  server: string;
  row_data: string | null;
  copy_key: string | null;
}
