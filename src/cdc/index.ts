import { OwnWrites } from '../core/own-writes.js';
import { ConfigError } from '../core/errors.js';
import { natsSchema, type StreamConfig } from '../config/schema.js';
import { MssqlCdcSource } from './mssql/cdc-source.js';
import { MssqlQueueSource } from './mssql/queue-source.js';
import { ChangeLogSource } from './postgres/changelog-source.js';
import { WalSource } from './postgres/wal-source.js';
import { DEFAULT_NAME } from './postgres/wal-setup.js';
import { SqliteChangeLogSource } from './sqlite/changelog-source.js';
import { SupabaseRealtimeSource } from './supabase/realtime-source.js';
import { NatsSource } from './nats/nats-source.js';
import type { Source } from './source.js';

/**
 * postgres-wal's buffer unless configured: one read, at least 10,000
 * changes, so the server goes on sending while one batch is prepared and
 * another written (a buffer of one 500-change batch stalled the walsender
 * every batch). With the default 10,000-change reads, four reads held
 * 171 MB at the memory benchmark's peak, two 159 MB, one 144 MB, for the
 * same drain time (11.3–11.5 s).
 */
export function walBufferSize(configured: number | undefined, readLimit: number): number {
  return configured ?? Math.max(10_000, readLimit);
}

/**
 * postgres-wal's bound on undecoded bytes held: the socket pauses beyond it
 * whatever the count of changes. The count alone let wide rows pile up
 * (10,000 changes of 20 kB rows are 200 MB); at the realistic table's 400
 * bytes a change, 10,000 changes are 4 MB and the count stops first. Bounds
 * of 2–8 MiB drained the memory benchmark equally fast, 1 MiB 20 % slower.
 */
export const WAL_BUFFER_BYTES = 8 * 1024 * 1024;

/** The capture method a stream's `source.type` names. */
export function createSource(config: StreamConfig, path: string, ownWrites = new OwnWrites()): Source {
  const { source } = config;
  // What every polling source takes from the configuration.
  const polling = {
    url: source.url,
    tables: config.tables,
    readLimit: source.readLimit ?? config.batch.maxSize,
    pollIntervalMs: source.pollIntervalMs,
    idleIntervalMs: source.idleIntervalMs,
    retry: config.retry,
    timeoutMs: config.liveness.timeoutMs,
    retentionHours: source.retentionHours,
  };
  switch (source.type) {
    case 'postgres-changelog':
      return new ChangeLogSource({ ...polling, snapshot: source.snapshot, chunkSize: source.snapshotChunkSize });
    case 'postgres-wal':
      return new WalSource({
        url: source.url,
        tables: config.tables,
        slot: source.slot ?? DEFAULT_NAME(config.name),
        publication: source.publication ?? DEFAULT_NAME(config.name),
        truncate: source.truncate,
        snapshot: source.snapshot,
        chunkSize: source.snapshotChunkSize,
        readLimit: source.readLimit ?? config.batch.maxSize,
        bufferSize: walBufferSize(source.bufferSize, source.readLimit ?? config.batch.maxSize),
        bufferBytes: WAL_BUFFER_BYTES,
        statusIntervalMs: source.statusIntervalMs,
        retry: config.retry,
        timeoutMs: config.liveness.timeoutMs,
      });
    case 'sqlite-changelog':
      return new SqliteChangeLogSource({ ...polling, snapshot: source.snapshot, chunkSize: source.snapshotChunkSize });
    case 'mssql-cdc':
      return new MssqlCdcSource({
        ...polling,
        heartbeatMs: source.heartbeatMs,
        snapshot: source.snapshot,
      });
    case 'mssql-queue':
      return new MssqlQueueSource({
        ...polling,
        snapshot: source.snapshot,
        queueTable: source.queueTable,
        maxAttempts: source.maxAttempts,
        leaseSeconds: source.leaseSeconds,
        retentionHours: source.retentionHours,
      });
    case 'supabase-realtime':
      if (!source.key) throw new ConfigError(`${path}.source.key: supabase-realtime needs the service-role key (e.g. \${SUPABASE_SERVICE_ROLE_KEY})`);
      return new SupabaseRealtimeSource({
        url: source.url,
        key: source.key,
        tables: config.tables,
        maxSize: config.batch.maxSize,
        bufferSize: source.bufferSize ?? 10_000,
        catchUp: source.catchUp,
        snapshot: source.snapshot,
        tombstones: source.tombstones,
        private: source.private,
        retry: config.retry,
        ownWrites,
      });
    case 'nats': {
      const nats = natsSchema.parse(source.nats ?? {});
      if (nats.partition !== undefined && nats.partition >= nats.partitions) {
        throw new ConfigError(`${path}.source.nats.partition: ${nats.partition} is not one of the ${nats.partitions} partitions (0 … ${nats.partitions - 1}); set nats.partitions as the publishing stream does`);
      }
      return new NatsSource({
        url: source.url,
        ...nats,
        tables: config.tables,
        from: nats.from ?? config.name,
        consumer: nats.consumer ?? `cdc-sync_${config.name.replace(/\./g, '_')}`,
        readLimit: source.readLimit ?? config.batch.maxSize,
        idleIntervalMs: source.idleIntervalMs,
        retry: config.retry,
        timeoutMs: config.liveness.timeoutMs,
      });
    }
    default:
      throw new ConfigError(`${path}.source.type: "${source.type}" is not available in this version of cdc-sync`);
  }
}
