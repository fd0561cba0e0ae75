import type { Query } from '../../db/mssql/client.js';
import { quote } from '../../db/mssql/identifiers.js';

/**
 * T-SQL of the `mssql-cdc` source. Every statement reads SQL Server's own CDC
 * objects: cdc.change_tables, cdc.captured_columns, cdc.lsn_time_mapping and
 * the cdc.fn_cdc_get_all_changes_<instance> functions.
 * https://learn.microsoft.com/sql/relational-databases/system-tables/change-data-capture-tables-transact-sql
 */

/**
 * The database and the server: is CDC on, can OPENJSON run (compatibility
 * level 130) and which version (CREATE OR ALTER needs 2016 SP1, 13.0.4001).
 */
export const DATABASE_STATE: Query = {
  name: 'cdc.database-state',
  sql: `SELECT CAST(d.is_cdc_enabled AS bit) AS cdc_enabled, d.compatibility_level,
       CAST(SERVERPROPERTY('ProductVersion') AS nvarchar(32)) AS product_version
  FROM sys.databases d WHERE d.name = DB_NAME()`,
};

/**
 * The capture and cleanup jobs. msdb is closed to a login without rights
 * there (229), and Azure SQL Database has no SQL Server Agent (208): the
 * check is skipped then, and said so once.
 */
export const AGENT_JOBS: Query = {
  name: 'cdc.agent-jobs',
  sql: `SELECT (SELECT COUNT(*) FROM msdb.dbo.cdc_jobs j WHERE j.database_id = DB_ID() AND j.job_type = N'capture') AS capture_jobs,
       (SELECT MAX(j.retention) FROM msdb.dbo.cdc_jobs j WHERE j.database_id = DB_ID() AND j.job_type = N'cleanup') AS retention_minutes`,
};

/** Capture instances of one source table, oldest first (two exist after an ALTER TABLE). */
export const CAPTURE_INSTANCES: Query = {
  name: 'cdc.capture-instances',
  sql: `SELECT ct.capture_instance, ct.object_id, OBJECT_NAME(ct.object_id) AS change_table, ct.start_lsn, ct.create_date
  FROM cdc.change_tables ct
  JOIN sys.tables t ON t.object_id = ct.source_object_id
  JOIN sys.schemas s ON s.schema_id = t.schema_id
 WHERE s.name = @schema AND t.name = @table
 ORDER BY ct.create_date, ct.start_lsn`,
};

export const TABLE_EXISTS: Query = {
  name: 'cdc.table-exists',
  sql: `SELECT t.object_id,
       (SELECT c.name FROM sys.index_columns ic
          JOIN sys.indexes i ON i.object_id = ic.object_id AND i.index_id = ic.index_id AND i.is_primary_key = 1
          JOIN sys.columns c ON c.object_id = ic.object_id AND c.column_id = ic.column_id
         WHERE ic.object_id = t.object_id ORDER BY ic.key_ordinal FOR JSON PATH) AS primary_key
  FROM sys.tables t JOIN sys.schemas s ON s.schema_id = t.schema_id
 WHERE s.name = @schema AND t.name = @table`,
};

/**
 * Captured columns, without computed ones: CDC records those as NULL even
 * when persisted ("This behavior is intended, and not a bug",
 * https://learn.microsoft.com/sql/relational-databases/track-changes/about-change-data-capture-sql-server),
 * so streaming them would overwrite the target's values with NULL.
 */
export const CAPTURED_COLUMNS: Query = {
  name: 'cdc.captured-columns',
  sql: `SELECT column_name, column_type FROM cdc.captured_columns WHERE object_id = @object_id AND is_computed = 0 ORDER BY column_ordinal`,
};

/** The highest LSN the capture job has published: reads never go past it. */
export const MAX_LSN: Query = { name: 'cdc.max-lsn', sql: `SELECT sys.fn_cdc_get_max_lsn() AS lsn` };

export const MIN_LSN: Query = { name: 'cdc.min-lsn', sql: `SELECT sys.fn_cdc_get_min_lsn(@instance) AS lsn` };

/**
 * tran_end_time as UTC: cdc.lsn_time_mapping keeps server local time (as
 * Debezium reads it, DBZ-3479) and the driver reads every datetime as UTC.
 * The server's current offset is used, so times from before a daylight
 * saving change are off by that hour.
 */
const COMMIT_TIME_UTC = 'DATEADD(minute, -DATEPART(TZOFFSET, SYSDATETIMEOFFSET()), tran_end_time)';

/** Commit times of the transactions in a range, for each change's commit time. */
export const COMMIT_TIMES: Query = {
  name: 'cdc.commit-times',
  sql: `SELECT start_lsn, ${COMMIT_TIME_UTC} AS tran_end_time FROM cdc.lsn_time_mapping WHERE start_lsn >= @from_lsn AND start_lsn <= @to_lsn`,
};

/**
 * The end of the next read: the commit LSN of the @transactions-th
 * transaction after @after_lsn, so a read holds whole transactions and its
 * cost does not grow with the backlog (PowerSync bounds its reads the same
 * way). tran_id 0x00 rows are the capture job's idle entries, not
 * transactions (Debezium skips them as well). NULL: read up to @max_lsn.
 */
export const READ_WINDOW: Query = {
  name: 'cdc.read-window',
  sql: `SELECT MAX(w.start_lsn) AS lsn
  FROM (SELECT TOP (@transactions) start_lsn FROM cdc.lsn_time_mapping
         WHERE start_lsn > @after_lsn AND start_lsn <= @max_lsn AND tran_id <> 0x00
         ORDER BY start_lsn) AS w`,
};

/**
 * Transactions published after the checkpoint (the backlog), and the
 * checkpoint's commit time, found by a seek on the clustered start_lsn
 * (TOP 1 … DESC), not by scanning the mapping back to the retention.
 */
export const PENDING_TRANSACTIONS: Query = {
  name: 'cdc.pending-transactions',
  sql: `SELECT (SELECT COUNT(*) FROM cdc.lsn_time_mapping WHERE start_lsn > @after_lsn AND start_lsn <= sys.fn_cdc_get_max_lsn() AND tran_id <> 0x00) AS pending,
       (SELECT TOP 1 ${COMMIT_TIME_UTC} FROM cdc.lsn_time_mapping WHERE start_lsn <= @after_lsn ORDER BY start_lsn DESC) AS checkpoint_time`,
};

/** Types the driver would lose digits of: read as text and let the target parse them. */
const AS_TEXT = new Set(['decimal', 'numeric', 'money', 'smallmoney', 'datetime2', 'datetimeoffset', 'time']);

export function columnList(columns: { column_name: string; column_type: string }[]): string {
  return columns
    .map(({ column_name: name, column_type: type }) => {
      const q = quote(name);
      const t = type.toLowerCase();
      if (!AS_TEXT.has(t)) return q;
      // Style 126: ISO 8601 with all fraction digits. money: style 2 keeps its four decimals, the default (0) rounds to two
      // (https://learn.microsoft.com/sql/t-sql/functions/cast-and-convert-transact-sql, "money and smallmoney styles").
      const style = ['datetime2', 'datetimeoffset', 'time'].includes(t) ? ', 126' : t === 'money' || t === 'smallmoney' ? ', 2' : '';
      return `CONVERT(varchar(64), ${q}${style}) AS ${q}`;
    })
    .join(', ');
}

/**
 * Every change of one capture instance committed in (@after_lsn, @to_lsn],
 * read from its change table cdc.<instance>_CT as Debezium's default
 * (`direct`) mode does, because only the change table has __$command_id:
 * "__$seqval … Don't use for ordering. Instead, use the __$command_id column"
 * (https://learn.microsoft.com/sql/relational-databases/system-tables/cdc-capture-instance-ct-transact-sql).
 * A range outside the instance's validity is simply empty here, where
 * cdc.fn_cdc_get_all_changes_ fails with 313. The metadata keeps CDC's
 * reserved __$ names: an alias could equal a captured column's name, and
 * the driver returns two columns of one name as an array.
 */
export function readChanges(changeTable: string, columns: string): Query {
  return {
    name: 'cdc.read-changes',
    meta: { changeTable },
    sql: `SELECT __$start_lsn, __$command_id, __$seqval, __$operation${columns ? `, ${columns}` : ''}
  FROM cdc.${quote(changeTable)}
 WHERE __$start_lsn > @after_lsn AND __$start_lsn <= @to_lsn
 ORDER BY __$start_lsn, __$command_id, __$seqval, __$operation`,
  };
}

/**
 * For a row `t` of a copy page: 1 when a change table holds a change of its
 * key after @copy_lsn, the LSN the table's changes are streamed from once
 * its copy is done. Read in the page's own statement.
 */
export function changedSinceCopySql(changeTables: string[], key: string[]): string {
  const match = key.map((k) => `c.${quote(k)} = t.${quote(k)}`).join(' AND ');
  const exists = changeTables.map((ct) => `EXISTS (SELECT 1 FROM cdc.${quote(ct)} AS c WHERE c.__$start_lsn > @copy_lsn AND ${match})`);
  return `CASE WHEN ${exists.join(' OR ')} THEN 1 ELSE 0 END`;
}

