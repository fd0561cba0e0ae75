import { MssqlQueueSource, type MssqlQueueSourceOptions } from '../../src/cdc/mssql/queue-source.js';
import type { MssqlConnect } from '../../src/db/mssql/client.js';
import type { SourceChunk } from '../../src/core/change-event.js';
import type { TableConfig } from '../../src/core/mapping.js';
import { FakeQueue } from './fake-mssql/fake-queue.js';
import { FakeSqlServer } from './fake-mssql/fake-server.js';
import { testContext } from './stream-context.js';
import { pull } from './pull.js';

/** Shared set-up of the mssql-queue driver-boundary tests: a fake server, its SyncQueue, three tables. */
export const TABLES: TableConfig[] = [
  { source: 'dbo.tblPatients', target: 'public.patients' },
  { source: 'dbo.tblLines', target: 'public.order_lines' },
];

export function fakeDatabase(): { server: FakeSqlServer; queue: FakeQueue } {
  const server = new FakeSqlServer();
  const queue = new FakeQueue(server);
  queue.createTable(
    'dbo',
    'tblPatients',
    [
      { name: 'PersonID', type: 'int' },
      { name: 'Name', type: 'nvarchar' },
      { name: 'Balance', type: 'decimal' },
      { name: 'Born', type: 'datetime2' },
      { name: 'Photo', type: 'varbinary' },
      { name: 'Active', type: 'bit' },
    ],
    ['PersonID'],
  );
  queue.createTable('dbo', 'tblLines', [{ name: 'OrderID', type: 'int' }, { name: 'LineNo', type: 'int' }, { name: 'Qty', type: 'int' }], ['OrderID', 'LineNo']);
  queue.createTable('dbo', 'tblOther', [{ name: 'Id', type: 'int' }], ['Id']);
  return { server, queue };
}

export type Harness = ReturnType<typeof harness>;

/** Opens readers against one fake server and stops them all at the end of a test. */
export function harness() {
  const opened: { source: MssqlQueueSource; context: ReturnType<typeof testContext> }[] = [];
  return {
    /** `server`: the fake, or anything with a driver (`{ connect: connectMssql }` for a real SQL Server). */
    async open(server: { connect: MssqlConnect }, options: Partial<MssqlQueueSourceOptions> = {}) {
      const source = new MssqlQueueSource({
        url: 'fake-mssql://in-process',
        tables: TABLES,
        readLimit: 100,
        pollIntervalMs: 0,
        idleIntervalMs: 20,
        snapshot: 'never',
        queueTable: 'dbo.SyncQueue',
        maxAttempts: 10,
        leaseSeconds: 60,
        retentionHours: 72,
        retry: { attempts: 3, minDelayMs: 10, maxDelayMs: 50 },
        owner: 'reader-a',
        connect: server.connect,
        ...options,
      });
      const context = testContext();
      opened.push({ source, context });
      await source.open(context);
      return Object.assign(source, { ctx: context });
    },
    async stop() {
      for (const { source, context } of opened.splice(0)) {
        context.controller.abort();
        await source.close();
      }
    },
  };
}

/** One chunk and its commit, with these changes failed, as the stream does after the sink's commit. */
export async function pullAndCommit(source: MssqlQueueSource, failed: { sourceRef: string; error: string }[] = []): Promise<SourceChunk> {
  const [chunk] = await pull(source, null, 1);
  await source.committed(chunk!.position, failed.map((f) => ({ ...f, table: 'x' })));
  return chunk!;
}

export { pull };
