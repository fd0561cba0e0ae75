import type { Query } from './client.js';

/**
 * T-SQL of the `mssql-cdc` source. Every statement reads SQL Server's own CDC
 * objects: cdc.change_tables, cdc.captured_columns, cdc.lsn_time_mapping and
 * the cdc.fn_cdc_get_all_changes_<instance> functions.
 * https://learn.microsoft.com/sql/relational-databases/system-tables/change-data-capture-tables-transact-sql
 */

export const DATABASE_STATE: Query = {
  name: 'cdc.database-state',
  sql: `SELECT CAST(d.is_cdc_enabled AS bit) AS cdc_enabled,
       (SELECT COUNT(*) FROM msdb.dbo.cdc_jobs j WHERE j.database_id = DB_ID() AND j.job_type = N'capture') AS capture_jobs,
       (SELECT MAX(j.retention) FROM msdb.dbo.cdc_jobs j WHERE j.database_id = DB_ID() AND j.job_type = N'cleanup') AS retention_minutes
  FROM sys.databases d WHERE d.name = DB_NAME()`,
};

/** Capture instances of one source table, oldest first (two exist after an ALTER TABLE). */
export const CAPTURE_INSTANCES: Query = {
  name: 'cdc.capture-instances',
  sql: `SELECT ct.capture_instance, ct.object_id, ct.start_lsn, ct.create_date
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

export const CAPTURED_COLUMNS: Query = {
  name: 'cdc.captured-columns',
  sql: `SELECT column_name, column_type FROM cdc.captured_columns WHERE object_id = @object_id ORDER BY column_ordinal`,
};

/** The highest LSN the capture job has published: reads never go past it. */
export const MAX_LSN: Query = { name: 'cdc.max-lsn', sql: `SELECT sys.fn_cdc_get_max_lsn() AS lsn` };

export const MIN_LSN: Query = { name: 'cdc.min-lsn', sql: `SELECT sys.fn_cdc_get_min_lsn(@instance) AS lsn` };

/** Commit times of the transactions in a range, for each change's commit time. */
export const COMMIT_TIMES: Query = {
  name: 'cdc.commit-times',
  sql: `SELECT start_lsn, tran_end_time FROM cdc.lsn_time_mapping WHERE start_lsn >= @from_lsn AND start_lsn <= @to_lsn`,
};

/** Transactions published after the checkpoint (the backlog), and the checkpoint's commit time. */
export const PENDING_TRANSACTIONS: Query = {
  name: 'cdc.pending-transactions',
  sql: `SELECT (SELECT COUNT(*) FROM cdc.lsn_time_mapping WHERE start_lsn > @after_lsn AND start_lsn <= sys.fn_cdc_get_max_lsn()) AS pending,
       (SELECT MAX(tran_end_time) FROM cdc.lsn_time_mapping WHERE start_lsn <= @after_lsn) AS checkpoint_time`,
};

/** Types the driver would lose digits of: read as text and let the target parse them. */
const AS_TEXT = new Set(['decimal', 'numeric', 'money', 'smallmoney', 'datetime2', 'datetimeoffset', 'time']);

export function columnList(columns: { column_name: string; column_type: string }[]): string {
  return columns
    .map(({ column_name: name, column_type: type }) => {
      const q = quote(name);
      if (!AS_TEXT.has(type.toLowerCase())) return q;
      // Style 126: ISO 8601 with all fraction digits.
      const style = ['datetime2', 'datetimeoffset', 'time'].includes(type.toLowerCase()) ? ', 126' : '';
      return `CONVERT(varchar(64), ${q}${style}) AS ${q}`;
    })
    .join(', ');
}

/**
 * At most @limit changes of one capture instance after (@after_lsn, @after_seqval),
 * up to @to_lsn, in the order they happened. A seqval of 0xFF… means the
 * whole of @after_lsn is done. `all update old` returns both images of an
 * update (operation 3 before, 4 after).
 */
export function readChanges(instance: string, columns: string): Query {
  return {
    name: 'cdc.read-changes',
    meta: { instance },
    sql: `SELECT TOP (@limit) __$start_lsn AS start_lsn, __$seqval AS seqval, __$operation AS operation, ${columns}
  FROM cdc.${quote(`fn_cdc_get_all_changes_${instance}`)}(@from_lsn, @to_lsn, N'all update old')
 WHERE __$start_lsn > @after_lsn OR (__$start_lsn = @after_lsn AND __$seqval > @after_seqval)
 ORDER BY __$start_lsn, __$seqval, __$operation`,
  };
}

export function quote(name: string): string {
  return `[${name.replace(/]/g, ']]')}]`;
}
