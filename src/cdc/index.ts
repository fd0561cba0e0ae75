import { ConfigError } from '../core/errors.js';
import type { StreamConfig } from '../config/schema.js';
import { MssqlCdcSource } from './mssql/cdc-source.js';
import { ChangeLogSource } from './postgres/changelog-source.js';
import type { Source } from './source.js';

/** The capture method a stream's `source.type` names. */
export function createSource(config: StreamConfig, path: string): Source {
  const { source } = config;
  switch (source.type) {
    case 'postgres-changelog':
      return new ChangeLogSource({
        url: source.url,
        tables: config.tables,
        readLimit: source.readLimit ?? config.batch.maxSize,
        pollIntervalMs: source.pollIntervalMs,
        idleIntervalMs: source.idleIntervalMs,
        retry: config.retry,
      });
    case 'mssql-cdc':
      return new MssqlCdcSource({
        url: source.url,
        tables: config.tables,
        readLimit: source.readLimit ?? config.batch.maxSize,
        pollIntervalMs: source.pollIntervalMs,
        idleIntervalMs: source.idleIntervalMs,
        heartbeatMs: source.heartbeatMs,
        snapshot: source.snapshot,
        retry: config.retry,
      });
    default:
      throw new ConfigError(`${path}.source.type: "${source.type}" is not available in this version of cdc-sync`);
  }
}
