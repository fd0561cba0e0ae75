import { ConfigError } from '../core/errors.js';
import type { StreamConfig } from '../config/schema.js';
import { MssqlSink } from './mssql/mssql-sink.js';
import { PostgresSink } from './postgres/postgres-sink.js';
import { SqliteSink } from './sqlite/sqlite-sink.js';
import { SupabaseSink } from './supabase/supabase-sink.js';
import type { Sink } from './sink.js';

/** The target a stream's `sink.type` names. */
export function createSink(config: StreamConfig, path: string): Sink {
  const { sink } = config;
  // Ties of change time go to the forward stream's source, so both streams of a pair agree unless told otherwise.
  const preferIncoming = (config.prefer ?? (config.direction === 'reverse' ? 'sink' : 'source')) === 'source';
  switch (sink.type) {
    case 'postgres':
      return new PostgresSink(sink.url, { timeoutMs: config.liveness.timeoutMs, preferIncoming });
    case 'supabase':
      if (!sink.key) throw new ConfigError(`${path}.sink.key: the supabase sink needs the project's service role key`);
      return new SupabaseSink({ url: sink.url, key: sink.key });
    case 'sqlite':
      return new SqliteSink(sink.url, { preferIncoming });
    case 'mssql':
      return new MssqlSink({ url: sink.url, identityInsert: new Set(config.tables.filter((t) => t.identityInsert).map((t) => t.target)) });
    default:
      throw new ConfigError(`${path}.sink.type: "${sink.type}" is not available in this version of cdc-sync`);
  }
}
