import type { Query } from '../../db/mssql/client.js';
import { queueTableName, quote } from '../../db/mssql/identifiers.js';
import { recordId } from '../../db/mssql/queue-setup.js';
import type { QualifiedName } from '../../core/names.js';
import { target, typedRows } from './queries.js';

/**
 * T-SQL of newer-wins by change time in SQL Server, for tables whose own
 * changes the SyncQueue trigger records (a two-way set-up through
 * `mssql-queue`): the queue is this database's change log. Its rows are
 * written by the application's own transactions (the trigger), so, unlike
 * the asynchronous CDC capture job, a committed local edit is always there.
 */

type Column = { name: string; type: string };

/** The queue's clock and names, as the sink reads them once per table. */
export interface QueueClock {
  queueTable: string;
  /** CreatedAt defaults to server local time (the older scripts' GETDATE()). */
  localTime: boolean;
  /** TableName is varchar in some older queues: parameters typed alike keep its index usable. */
  names: 'nvarchar' | 'varchar';
}

/** Whether cdc-sync's trigger queues the table's changes, and how the queue keeps its times. */
export const QUEUE_CAPTURE: Query = {
  name: 'sink.queue-capture',
  sql: `SELECT (SELECT COUNT(*) FROM sys.triggers WHERE parent_id = OBJECT_ID(@table, N'U') AND name = @trigger AND is_disabled = 0) AS has_trigger,
       OBJECT_ID(@queue, N'U') AS queue_id,
       (SELECT TYPE_NAME(c.system_type_id) FROM sys.columns AS c WHERE c.object_id = OBJECT_ID(@queue, N'U') AND c.name = N'TableName') AS table_name_type,
       (SELECT dc.definition FROM sys.columns AS c JOIN sys.default_constraints AS dc ON dc.object_id = c.default_object_id
         WHERE c.object_id = OBJECT_ID(@queue, N'U') AND c.name = N'CreatedAt') AS created_at_default`,
};

/** Each element of @keys (a JSON array) as `idx` (its position) and the key columns in their target types. */
function indexedKeys(key: Column[], parameter = '@keys', path = 'a.value'): string {
  return `(SELECT CAST(a.[key] AS int) AS idx, s.* FROM OPENJSON(${parameter}) AS a CROSS APPLY ${typedRows(key, path)} AS s)`;
}

/**
 * Step 1: lock the stored rows of the batch's keys, and (HOLDLOCK: the
 * serializable range) the places where missing ones would go, so a local
 * edit of one of them either committed before — its queue row is seen by
 * step 2 — or waits until the batch commits.
 */
export function lockKeysSql(table: QualifiedName, key: Column[]): Query {
  const t = target(table);
  return {
    name: 'sink.lock-keys',
    meta: { table: `${table.schema ?? 'dbo'}.${table.name}` },
    sql: `SELECT COUNT(*) AS locked FROM ${t} AS t WITH (UPDLOCK, HOLDLOCK)
  JOIN ${indexedKeys(key)} AS s ON ${key.map((k) => `t.${quote(k.name)} = s.${quote(k.name)}`).join(' AND ')}`,
  };
}

/**
 * Step 2: per incoming key (by its index in @keys) the newest change the
 * queue holds for it — the trigger queues a key change as DELETE of the old
 * key and INSERT of the new one, so it counts for both — and the stored row.
 * Only changes queued at or after @since (the batch's oldest change time)
 * can be newer, which bounds the read; cdc-sync's own writes are not queued
 * (SESSION_CONTEXT), its ping-backs carry the time of a local delete.
 */
export function localChangesSql(table: QualifiedName, key: Column[], clock: QueueClock): Query {
  const t = target(table);
  const q = queueTableName(clock.queueTable);
  const offset = 'DATEPART(TZOFFSET, SYSDATETIMEOFFSET())';
  const createdAt = clock.localTime ? `DATEADD(minute, -${offset}, q.CreatedAt)` : 'q.CreatedAt';
  const since = clock.localTime ? `DATEADD(minute, ${offset}, @since)` : '@since';
  return {
    name: 'sink.local-changes',
    meta: { table: `${table.schema ?? 'dbo'}.${table.name}`, queue: clock.queueTable },
    sql: `SELECT s.idx, l.local_time,
       (SELECT t.* FROM ${t} AS t WHERE ${key.map((k) => `t.${quote(k.name)} = s.${quote(k.name)}`).join(' AND ')}
           FOR JSON PATH, WITHOUT_ARRAY_WRAPPER, INCLUDE_NULL_VALUES) AS stored
  FROM ${indexedKeys(key)} AS s
 CROSS APPLY (SELECT MAX(${createdAt}) AS local_time FROM ${q} AS q
               WHERE q.TableName = @table AND q.RecordID = ${recordId('s', key.map((k) => k.name))} AND q.CreatedAt >= ${since}) AS l
 WHERE l.local_time IS NOT NULL`,
  };
}

/**
 * A local delete that won: queued again as a DELETE stamped with that
 * delete's time (see `lostToDeletes`), so the other side removes a row its
 * own copy of the delete may have missed. @rows: [{ key: {…}, at }].
 */
export function pingBackSql(table: QualifiedName, key: Column[], clock: QueueClock): Query {
  const q = queueTableName(clock.queueTable);
  const at = `CONVERT(datetime2, JSON_VALUE(a.value, N'$.at'), 127)`;
  const createdAt = clock.localTime ? `DATEADD(minute, DATEPART(TZOFFSET, SYSDATETIMEOFFSET()), ${at})` : at;
  return {
    name: 'sink.ping-back',
    meta: { table: `${table.schema ?? 'dbo'}.${table.name}`, queue: clock.queueTable },
    sql: `INSERT INTO ${q} (TableName, RecordID, Operation, JsonData, CreatedAt)
SELECT @table, ${recordId('s', key.map((k) => k.name))}, N'DELETE', (SELECT s.* FOR JSON PATH, WITHOUT_ARRAY_WRAPPER, INCLUDE_NULL_VALUES), ${createdAt}
  FROM OPENJSON(@rows) AS a CROSS APPLY ${typedRows(key, `JSON_QUERY(a.value, N'$.key')`)} AS s`,
  };
}

/** Each resolved conflict, with both rows and the winner (cdc_sync.conflicts, as in PostgreSQL). */
export const INSERT_CONFLICTS: Query = {
  name: 'sink.log-conflicts',
  sql: `INSERT INTO cdc_sync.conflicts (stream, table_name, [key], [rule], incoming_op, incoming, incoming_time, stored, stored_time, winner, winning)
SELECT stream, [table], [key], [rule], op, incoming, incoming_time, stored, stored_time, winner, winning
  FROM OPENJSON(@rows) WITH (stream nvarchar(128), [table] nvarchar(256), [key] nvarchar(max) AS JSON, [rule] nvarchar(20), op nvarchar(10),
                             incoming nvarchar(max) AS JSON, incoming_time datetimeoffset, stored nvarchar(max) AS JSON,
                             stored_time datetimeoffset, winner nvarchar(10), winning nvarchar(max) AS JSON)`,
};
