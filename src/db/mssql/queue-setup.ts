import { ConfigError } from '../../core/errors.js';
import { validateIdentifier } from '../../core/names.js';
import { quote, splitTable } from './identifiers.js';

/**
 * T-SQL set-up of the SQL Server sources, printed by `cdc-sync init-sql`:
 * the SyncQueue table and one trigger per table for `mssql-queue`, and the
 * CDC enabling script for `mssql-cdc`. Every script is idempotent and uses
 * `GO` between batches (sqlcmd, SSMS, Azure Data Studio), because CREATE
 * TRIGGER must start a batch and columns added by ALTER TABLE are only
 * visible to later batches.
 */

/** The session key cdc-sync's own SQL Server writes set; the triggers skip those rows (no echo). */
export const ORIGIN_KEY = 'cdc_sync.origin';

export interface QueueTable {
  /** `schema.table` as configured (schema defaults to dbo). */
  source: string;
  /** Key columns; the trigger matches the deleted and inserted images on them. */
  key: string[];
}

/** N'…' literal. */
export function literal(text: string): string {
  return `N'${text.replace(/'/g, "''")}'`;
}

function names(table: string, what = 'table'): { schema: string; name: string; quoted: string } {
  const [schema, name] = splitTable(table);
  validateIdentifier(schema, 'schema');
  validateIdentifier(name, what);
  return { schema, name, quoted: `${quote(schema)}.${quote(name)}` };
}

export function syncQueueSql(queueTable = 'dbo.SyncQueue'): string {
  const { name, quoted } = names(queueTable, 'queue table');
  const id = literal(quoted);
  const constraint = (prefix: string, column = '') => quote(`${prefix}_${name}${column ? `_${column}` : ''}`);
  const addColumn = (column: string, definition: string) =>
    `IF COL_LENGTH(${id}, N'${column}') IS NULL ALTER TABLE ${quoted} ADD ${column} ${definition};`;
  return `-- cdc-sync: the ${queueTable} table of the mssql-queue source. Idempotent: safe to run again.
-- Compatible with the SyncQueue of the older sync scripts (same columns, statuses
-- Pending / Synced / Failed); adds the lease and retry columns cdc-sync needs.
SET ANSI_NULLS ON;
SET QUOTED_IDENTIFIER ON;
GO
IF OBJECT_ID(${id}, N'U') IS NULL
CREATE TABLE ${quoted} (
  QueueID       int IDENTITY(1,1) NOT NULL CONSTRAINT ${constraint('PK')} PRIMARY KEY CLUSTERED,
  TableName     nvarchar(100) NOT NULL,
  RecordID      nvarchar(450) NULL,           -- the key value, or a JSON array of the values of a composite key
  Operation     nvarchar(10) NOT NULL,        -- INSERT / UPDATE / DELETE
  JsonData      nvarchar(max) NULL,           -- the row image (FOR JSON PATH, WITHOUT_ARRAY_WRAPPER, INCLUDE_NULL_VALUES)
  Status        nvarchar(20) NOT NULL CONSTRAINT ${constraint('DF', 'Status')} DEFAULT (N'Pending'),
  Attempts      int NOT NULL CONSTRAINT ${constraint('DF', 'Attempts')} DEFAULT (0),
  LastError     nvarchar(max) NULL,
  CreatedAt     datetime2 NOT NULL CONSTRAINT ${constraint('DF', 'CreatedAt')} DEFAULT (SYSUTCDATETIME()),
  LastAttempt   datetime2 NULL,
  NextAttemptAt datetime2 NULL,               -- not claimed again before this time (after a failure)
  LockedBy      nvarchar(200) NULL,           -- the reader holding the row ...
  LockedUntil   datetime2 NULL                -- ... until then; a reader that died loses it then
);
GO
-- The older scripts' table gets what it lacks.
${addColumn('Attempts', `int NOT NULL CONSTRAINT ${constraint('DF', 'Attempts')} DEFAULT (0)`)}
${addColumn('LastError', 'nvarchar(max) NULL')}
${addColumn('CreatedAt', `datetime2 NOT NULL CONSTRAINT ${constraint('DF', 'CreatedAt')} DEFAULT (SYSUTCDATETIME())`)}
${addColumn('LastAttempt', 'datetime2 NULL')}
${addColumn('NextAttemptAt', 'datetime2 NULL')}
${addColumn('LockedBy', 'nvarchar(200) NULL')}
${addColumn('LockedUntil', 'datetime2 NULL')}
GO
-- RecordID holds JSON arrays for composite keys and is an index key: the older
-- table may declare it as int, short text or nvarchar(max). (This fails while
-- another index uses RecordID, or a value is longer than 450: fix those first.)
IF EXISTS (SELECT 1 FROM sys.columns WHERE object_id = OBJECT_ID(${id}) AND name = N'RecordID'
              AND (system_type_id <> TYPE_ID(N'nvarchar') OR max_length = -1 OR max_length < 900))
  ALTER TABLE ${quoted} ALTER COLUMN RecordID nvarchar(450) NULL;
GO
-- Claiming: Pending rows in QueueID order. Not a filtered index (WHERE Status =
-- N'Pending'): a filtered index makes every INSERT fail in sessions with
-- non-default SET options (ANSI_WARNINGS, ARITHABORT...), and the inserts come
-- from the application's own transactions through the triggers.
IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE object_id = OBJECT_ID(${id}) AND name = ${literal(`IX_${name}_Claim`)})
  CREATE INDEX ${quote(`IX_${name}_Claim`)} ON ${quoted} (Status, QueueID)
    INCLUDE (TableName, RecordID, NextAttemptAt, LockedUntil, LockedBy, Attempts, CreatedAt);
-- Per-record order: is an earlier change of this record still pending?
IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE object_id = OBJECT_ID(${id}) AND name = ${literal(`IX_${name}_Record`)})
  CREATE INDEX ${quote(`IX_${name}_Record`)} ON ${quoted} (TableName, RecordID, QueueID) INCLUDE (Status);
GO
`;
}

/** `trg_sync_<table>`, the name the older scripts' triggers have: this one replaces them. */
export function triggerName(table: string): string {
  const { name } = names(table);
  return validateIdentifier(`trg_sync_${name}`, 'trigger');
}

/** RecordID of one image: the key value, or a JSON array of the key values (each rendered as FOR JSON does). */
export function recordId(alias: string, key: string[]): string {
  if (key.length === 1) return `CONVERT(nvarchar(450), ${alias}.${quote(key[0]!)})`;
  // FOR JSON renders each value as in JsonData ({"v":…}); characters 6 to n-1 are the value.
  const values = key.map((k) => {
    const json = `(SELECT ${alias}.${quote(k)} AS [v] FOR JSON PATH, WITHOUT_ARRAY_WRAPPER, INCLUDE_NULL_VALUES)`;
    return `SUBSTRING(${json}, 6, LEN(${json}) - 6)`;
  });
  // LEFT: an over-long key must not make the application's own write fail.
  return `LEFT(N'[' + ${values.join(` + N',' + `)} + N']', 450)`;
}

export function queueTriggerSql(table: QueueTable, queueTable = 'dbo.SyncQueue', path = 'tables'): string {
  const { schema, name, quoted } = names(table.source);
  if (table.key.length === 0) throw new ConfigError(`${path}.key: name the key columns of ${table.source} (key: [...]); its SyncQueue trigger is written from them`);
  for (const k of table.key) validateIdentifier(k, 'key column');
  const tableName = `${schema}.${name}`;
  if (tableName.length > 100) throw new ConfigError(`${path}.source: ${tableName} is longer than SyncQueue.TableName (100 characters)`);
  const queue = names(queueTable, 'queue table').quoted;
  const trigger = `${quote(schema)}.${quote(triggerName(table.source))}`;
  const match = table.key.map((k) => `d.${quote(k)} = i.${quote(k)}`).join(' AND ');
  const json = (alias: string) => `(SELECT ${alias}.* FOR JSON PATH, WITHOUT_ARRAY_WRAPPER, INCLUDE_NULL_VALUES)`;
  return `-- ${tableName}: every insert, update and delete as a row of ${queueTable}
SET ANSI_NULLS ON;
SET QUOTED_IDENTIFIER ON;
GO
CREATE OR ALTER TRIGGER ${trigger} ON ${quoted}
AFTER INSERT, UPDATE, DELETE
AS
BEGIN
  SET NOCOUNT ON;
  -- Rows cdc-sync itself writes (its sessions set ${ORIGIN_KEY}) would come back as an echo.
  IF SESSION_CONTEXT(${literal(ORIGIN_KEY)}) IS NOT NULL RETURN;
  -- Rows that are gone: deletes, and the old key of an update that changed the key.
  INSERT INTO ${queue} (TableName, RecordID, Operation, JsonData)
  SELECT ${literal(tableName)}, ${recordId('d', table.key)}, N'DELETE', ${json('d')}
    FROM deleted AS d
   WHERE NOT EXISTS (SELECT 1 FROM inserted AS i WHERE ${match});
  INSERT INTO ${queue} (TableName, RecordID, Operation, JsonData)
  -- The image is read from the table, not from inserted: another AFTER trigger may have changed the row since.
  SELECT ${literal(tableName)}, ${recordId('i', table.key)},
         CASE WHEN EXISTS (SELECT 1 FROM deleted AS d WHERE ${match}) THEN N'UPDATE' ELSE N'INSERT' END,
         ${json('b')}
    FROM inserted AS i JOIN ${quoted} AS b ON ${table.key.map((k) => `b.${quote(k)} = i.${quote(k)}`).join(' AND ')};
END;
GO
-- Fire after the table's other AFTER triggers, so the image read above has their changes
-- (https://learn.microsoft.com/sql/relational-databases/system-stored-procedures/sp-settriggerorder-transact-sql).
${['INSERT', 'UPDATE', 'DELETE'].map((type) => `EXEC sys.sp_settriggerorder @triggername = ${literal(`${schema}.${triggerName(table.source)}`)}, @order = N'Last', @stmttype = N'${type}';`).join('\n')}
GO
`;
}

/** The SyncQueue table and one trigger per table. */
export function queueSetupSql(tables: QueueTable[], queueTable = 'dbo.SyncQueue'): string {
  return [syncQueueSql(queueTable), ...tables.map((t, i) => queueTriggerSql(t, queueTable, `tables[${i}]`))].join('\n');
}

/**
 * Change data capture for the database and each table (mssql-cdc). Needs
 * sysadmin for sys.sp_cdc_enable_db and db_owner for sys.sp_cdc_enable_table;
 * SQL Server Agent must run, or the capture job publishes nothing.
 * All-changes reads only, so no net-changes index is required.
 */
export function enableCdcSql(tables: string[]): string {
  const parts = [
    `-- cdc-sync: change data capture for the mssql-cdc source. Idempotent: safe to run again.
IF NOT EXISTS (SELECT 1 FROM sys.databases WHERE database_id = DB_ID() AND is_cdc_enabled = 1)
  EXEC sys.sp_cdc_enable_db;
GO
-- With CDC on, the application's own INSERT or UPDATE of a captured varchar(max), nvarchar(max),
-- varbinary(max) or xml value longer than 65,536 bytes fails (error 7139) unless this is -1
-- (https://learn.microsoft.com/sql/database-engine/configure-windows/configure-the-max-text-repl-size-server-configuration-option).
-- Server-wide; needs ALTER SETTINGS (sysadmin or serveradmin).
EXEC sys.sp_configure N'max text repl size', -1;
RECONFIGURE;
GO
`,
  ];
  for (const table of tables) {
    const { schema, name, quoted } = names(table);
    parts.push(`IF NOT EXISTS (SELECT 1 FROM sys.tables WHERE object_id = OBJECT_ID(${literal(quoted)}) AND is_tracked_by_cdc = 1)
  EXEC sys.sp_cdc_enable_table @source_schema = ${literal(schema)}, @source_name = ${literal(name)},
       @role_name = NULL, @supports_net_changes = 0;
GO
`);
  }
  // The reverse stream's SQL Server sink writes this row in each of its
  // transactions; captured, it lets this reader drop those transactions (no echo).
  parts.push(`IF SCHEMA_ID(N'cdc_sync') IS NULL EXEC(N'CREATE SCHEMA cdc_sync');
GO
IF OBJECT_ID(N'cdc_sync.origin_marker') IS NULL
  CREATE TABLE cdc_sync.origin_marker (id int NOT NULL PRIMARY KEY, stream nvarchar(128) NOT NULL, written_at datetime2 NOT NULL);
GO
IF NOT EXISTS (SELECT 1 FROM sys.tables WHERE object_id = OBJECT_ID(N'cdc_sync.origin_marker') AND is_tracked_by_cdc = 1)
  EXEC sys.sp_cdc_enable_table @source_schema = N'cdc_sync', @source_name = N'origin_marker',
       @role_name = NULL, @supports_net_changes = 0;
GO
`);
  return parts.join('');
}
