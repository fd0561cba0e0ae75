import type { Params, Query } from '../../db/mssql/client.js';
import { queueTableName } from '../../db/mssql/identifiers.js';
import { recordId } from '../../db/mssql/queue-setup.js';

/**
 * T-SQL of the `mssql-queue` source: the SyncQueue table the triggers of
 * queue-setup.ts (and of the older scripts) fill. Names of the queue and of
 * the configured tables are written into the text once (quoted); everything
 * else is a bound parameter.
 *
 * Lists of queue ids travel as `<i>1</i><i>2</i>` and are read with
 * xml.nodes(): OPENJSON would need database compatibility level 130, which a
 * database upgraded from an older SQL Server often does not have (FOR JSON
 * and JSON_VALUE work at every level).
 */
export interface QueueStatements {
  check: Query;
  tableInfo: Query;
  claim: Query;
  release: Query;
  renew: Query;
  markSynced: Query;
  markFailed: Query;
  pending: Query;
  purge: Query;
}

/** The row a claim hands back, as the mssql driver returns it. */
export interface QueueRow {
  QueueID: number;
  TableName: string;
  RecordID: string | null;
  Operation: string;
  JsonData: string | null;
  /** Attempts including this claim. */
  Attempts: number;
  LastError: string | null;
  CreatedAt: Date;
}

export interface TableInfoRow {
  column_name: string;
  column_type: string;
  /** Position in the primary key, null when not part of it. */
  key_ordinal: number | null;
  /** 1 when the table has a trigger named `trg_sync_<table>`. */
  has_trigger: number;
}

/** `@t0, @t1, …`: the TableName values this reader owns (see tableNameParams). */
function nameList(count: number): string {
  return Array.from({ length: count }, (_, i) => `@t${i}`).join(', ');
}

/**
 * TableName values typed as the column is: an nvarchar parameter compared
 * with an older queue's varchar column converts the column, not the value
 * (nvarchar ranks higher, https://learn.microsoft.com/sql/t-sql/data-types/data-type-precedence-transact-sql),
 * and the index on it is scanned instead of sought.
 */
export function tableNameParams(names: string[], type: 'nvarchar' | 'varchar' = 'nvarchar', prefix = 't'): Params {
  return Object.fromEntries(names.map((n, i) => [`${prefix}${i}`, { type, value: n }]));
}

/** How an existing queue table stores what the statements compare and read. */
export interface QueueShape {
  /** TableName's type: varchar in some older queues. */
  names: 'nvarchar' | 'varchar';
  /** CreatedAt defaults to server local time (GETDATE(), as the older scripts' queue): read it as UTC. */
  localTime: boolean;
}

export function idList(ids: number[]): string {
  return ids.map((id) => `<i>${id}</i>`).join('');
}

const ID_TABLE = `DECLARE @list TABLE (QueueID int PRIMARY KEY);
INSERT INTO @list (QueueID)
SELECT DISTINCT n.i.value('text()[1]', 'int') FROM (SELECT CAST(@ids AS xml) AS doc) AS s CROSS APPLY s.doc.nodes('/i') AS n(i);`;

export function queueStatements(queueTable: string, tableNames: number, shape: QueueShape = { names: 'nvarchar', localTime: false }): QueueStatements {
  const q = queueTableName(queueTable);
  const meta = { queue: queueTable };
  const names = nameList(tableNames);
  // CreatedAt in UTC whatever the queue's default; the server's current offset is used.
  const createdAt = shape.localTime ? 'DATEADD(minute, -DATEPART(TZOFFSET, SYSDATETIMEOFFSET()), CreatedAt)' : 'CreatedAt';
  const now = shape.localTime ? 'SYSDATETIME()' : 'SYSUTCDATETIME()';
  return {
    check: {
      name: 'queue.check',
      meta,
      sql: `SELECT OBJECT_ID(@queue, N'U') AS object_id,
       COL_LENGTH(@queue, N'LockedBy') AS locked_by,
       COL_LENGTH(@queue, N'LockedUntil') AS locked_until,
       COL_LENGTH(@queue, N'NextAttemptAt') AS next_attempt_at,
       (SELECT TYPE_NAME(c.system_type_id) FROM sys.columns AS c WHERE c.object_id = OBJECT_ID(@queue, N'U') AND c.name = N'TableName') AS table_name_type,
       (SELECT dc.definition FROM sys.columns AS c JOIN sys.default_constraints AS dc ON dc.object_id = c.default_object_id
         WHERE c.object_id = OBJECT_ID(@queue, N'U') AND c.name = N'CreatedAt') AS created_at_default`,
    },
    tableInfo: {
      name: 'queue.table-info',
      meta,
      sql: `SELECT c.name AS column_name, TYPE_NAME(c.system_type_id) AS column_type,
       (SELECT ic.key_ordinal FROM sys.index_columns AS ic
          JOIN sys.indexes AS ix ON ix.object_id = ic.object_id AND ix.index_id = ic.index_id AND ix.is_primary_key = 1
         WHERE ic.object_id = c.object_id AND ic.column_id = c.column_id) AS key_ordinal,
       (SELECT COUNT(*) FROM sys.triggers AS tr WHERE tr.parent_id = c.object_id AND tr.name = @trigger) AS has_trigger
  FROM sys.columns AS c
 WHERE c.object_id = OBJECT_ID(@table, N'U')
 ORDER BY c.column_id`,
    },
    // Two steps in one transaction rather than the usual single UPDATE of a
    // TOP CTE: the second step must know the whole claim set. A row is taken
    // only when no earlier Pending row of the same record stays behind (leased
    // by another reader, waiting for its next attempt, or skipped by READPAST
    // because another reader is claiming it right now): one record's changes
    // are never applied out of order, whatever the number of readers.
    claim: {
      name: 'queue.claim',
      meta,
      sql: `SET NOCOUNT ON;
SET XACT_ABORT ON;
DECLARE @now datetime2 = SYSUTCDATETIME();
DECLARE @claim TABLE (QueueID int PRIMARY KEY);
DECLARE @out TABLE (QueueID int PRIMARY KEY, TableName nvarchar(128), RecordID nvarchar(450), Operation nvarchar(10),
                    JsonData nvarchar(max), Attempts int, LastError nvarchar(max), CreatedAt datetime2);
BEGIN TRANSACTION;
INSERT INTO @claim (QueueID)
SELECT TOP (@limit) q.QueueID
  FROM ${q} AS q WITH (READPAST, UPDLOCK, ROWLOCK)
 WHERE q.Status = N'Pending'
   AND q.TableName IN (${names})
   AND (q.NextAttemptAt IS NULL OR q.NextAttemptAt <= @now)
   AND (q.LockedUntil IS NULL OR q.LockedUntil < @now)
 ORDER BY q.QueueID;
UPDATE q
   SET LockedBy = @owner, LockedUntil = DATEADD(second, @lease, @now),
       Attempts = ISNULL(q.Attempts, 0) + 1, LastAttempt = @now
OUTPUT inserted.QueueID, inserted.TableName, inserted.RecordID, inserted.Operation, inserted.JsonData,
       inserted.Attempts, inserted.LastError, inserted.CreatedAt INTO @out
  FROM ${q} AS q
  JOIN @claim AS c ON c.QueueID = q.QueueID
 WHERE NOT EXISTS (
       SELECT 1 FROM ${q} AS e
        WHERE e.TableName = q.TableName AND e.RecordID = q.RecordID
          AND e.QueueID < q.QueueID AND e.Status = N'Pending'
          AND NOT EXISTS (SELECT 1 FROM @claim AS o WHERE o.QueueID = e.QueueID));
COMMIT TRANSACTION;
SELECT QueueID, TableName, RecordID, Operation, JsonData, Attempts, LastError, ${createdAt} AS CreatedAt FROM @out ORDER BY QueueID;`,
    },
    // Rows this reader holds go back to the queue: at start (a previous life
    // of this process died holding them) and at stop; after a failure of the
    // stream with a later next-attempt time.
    release: {
      name: 'queue.release',
      meta,
      sql: `UPDATE ${q}
   SET LockedBy = NULL, LockedUntil = NULL,
       NextAttemptAt = CASE WHEN @delay_ms > 0 THEN DATEADD(millisecond, @delay_ms, SYSUTCDATETIME()) ELSE NextAttemptAt END
 WHERE LockedBy = @owner AND Status = N'Pending'`,
    },
    // While a batch is retried against an unreachable sink its rows stay ours.
    // Only the rows handed over: a row claimed by a read nobody waits for any
    // more (the stream failed meanwhile) must expire and be claimed again.
    renew: {
      name: 'queue.renew',
      meta,
      sql: `SET NOCOUNT ON;
${ID_TABLE}
UPDATE q SET LockedUntil = DATEADD(second, @lease, SYSUTCDATETIME())
  FROM ${q} AS q JOIN @list AS l ON l.QueueID = q.QueueID
 WHERE q.LockedBy = @owner AND q.Status = N'Pending';`,
    },
    markSynced: {
      name: 'queue.mark-synced',
      meta,
      sql: `SET NOCOUNT ON;
${ID_TABLE}
UPDATE q SET Status = N'Synced', LockedBy = NULL, LockedUntil = NULL, NextAttemptAt = NULL, LastError = NULL
  FROM ${q} AS q JOIN @list AS l ON l.QueueID = q.QueueID;`,
    },
    markFailed: {
      name: 'queue.mark-failed',
      meta,
      sql: `SET NOCOUNT ON;
${ID_TABLE}
UPDATE q SET Status = N'Failed', LastError = @error, LockedBy = NULL, LockedUntil = NULL, NextAttemptAt = NULL
  FROM ${q} AS q JOIN @list AS l ON l.QueueID = q.QueueID;`,
    },
    // A gauge, not a decision: a dirty count never waits behind a claim.
    pending: {
      name: 'queue.pending',
      meta,
      sql: `SELECT COUNT(*) AS pending FROM ${q} WITH (READUNCOMMITTED) WHERE Status = N'Pending' AND TableName IN (${names})`,
    },
    // Small batches: each DELETE is its own short transaction and lock footprint.
    purge: {
      name: 'queue.purge',
      meta,
      sql: `SET NOCOUNT ON;
DELETE TOP (@limit) FROM ${q} WHERE Status = N'Synced' AND CreatedAt < DATEADD(hour, -@hours, ${now});
SELECT @@ROWCOUNT AS deleted;`,
    },
  };
}

/**
 * For a row `t` of a copy page: 1 while its record has a Pending queue row
 * (any of `names`, the TableName values of its table). Read in the page's
 * own statement, with RecordID computed as the trigger writes it, and
 * sought on the queue's (TableName, RecordID) index.
 */
export function pendingRecordSql(queueTable: string, key: string[], names: number): string {
  const list = Array.from({ length: names }, (_, i) => `@n${i}`).join(', ');
  return `CASE WHEN EXISTS (SELECT 1 FROM ${queueTableName(queueTable)} AS q
   WHERE q.TableName IN (${list}) AND q.RecordID = ${recordId('t', key)} AND q.Status = N'Pending') THEN 1 ELSE 0 END`;
}

