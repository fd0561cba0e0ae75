import { ConfigError } from '../../core/errors.js';
import type { TableConfig } from '../../core/mapping.js';
import type { MssqlClient, Query } from '../../db/mssql/client.js';
import { queueTableName, quote, splitTable } from '../../db/mssql/identifiers.js';
import { triggerName } from '../../db/mssql/queue-setup.js';
import type { StreamContext } from '../../streams/context.js';
import type { RetriedRead } from '../read-with-retry.js';
import type { TableInfoRow } from './queue-queries.js';
import { describeTable, type QueuedTable } from './queue-rows.js';

/** What the queue check reads of the queue table. */
export interface QueueTableInfo {
  object_id: number | null;
  locked_by: number | null;
  locked_until: number | null;
  next_attempt_at: number | null;
  table_name_type?: string | null;
  created_at_default?: string | null;
}

/** The queue table must exist, with the lease columns. */
export async function checkQueueTable(client: () => MssqlClient, query: RetriedRead, queueTable: string, check: Query): Promise<QueueTableInfo> {
  const queue = queueTableName(queueTable);
  const [found] = await query(() =>
    client().query<QueueTableInfo>(check, {
      queue: { type: 'nvarchar', value: queue },
    }),
  );
  const init = 'apply the output of `cdc-sync init-sql` (sql/cdc/sync-queue.sql)';
  if (!found?.object_id) throw new ConfigError(`source.queueTable: ${queueTable} does not exist in the source database; ${init}`);
  if (!found.locked_by || !found.locked_until || !found.next_attempt_at) {
    throw new ConfigError(`source.queueTable: ${queueTable} lacks the lease columns LockedBy, LockedUntil, NextAttemptAt; ${init}`);
  }
  return found;
}

/** A configured table as its columns are; a table without the queue trigger is only warned about. */
export async function describeQueuedTable(
  client: () => MssqlClient,
  query: RetriedRead,
  tableInfo: Query,
  table: TableConfig,
  path: string,
  context: StreamContext,
): Promise<QueuedTable> {
  const [schema, name] = splitTable(table.source);
  const rows = await query(() =>
    client().query<TableInfoRow>(tableInfo, {
      table: { type: 'nvarchar', value: `${quote(schema)}.${quote(name)}` },
      trigger: { type: 'nvarchar', value: triggerName(table.source) },
    }),
  );
  const described = describeTable(table, rows, path);
  if (!rows[0]!.has_trigger) {
    context.log.warn({ table: table.source, trigger: triggerName(table.source) }, 'table has no cdc-sync queue trigger; see `cdc-sync init-sql`');
  }
  return described;
}
