import { ConfigError } from '../core/errors.js';
import { parseQualifiedName } from '../core/names.js';
import { OwnWrites } from '../core/own-writes.js';
import { natsSchema, type StreamConfig } from '../config/schema.js';
import { MssqlSink } from './mssql/mssql-sink.js';
import { NatsSink } from './nats/nats-sink.js';
import { PostgresSink } from './postgres/postgres-sink.js';
import { SqliteSink } from './sqlite/sqlite-sink.js';
import { SupabaseSink } from './supabase/supabase-sink.js';
import type { Sink } from './sink.js';

/**
 * A JetStream acknowledgement comes in milliseconds; while a stream elects a
 * new leader (seconds) publishes go unanswered, and the batch is better sent
 * again soon (the same message ids) than waited on for the liveness timeout.
 */
const PUBLISH_TIMEOUT_MS = 5_000;

/** The target a stream's `sink.type` names; `all` the configuration's streams, for a target another stream reads. */
export function createSink(config: StreamConfig, path: string, all: StreamConfig[] = [config], ownWrites = new OwnWrites()): Sink {
  const { sink } = config;
  // Ties of change time go to the forward stream's source, so both streams of a pair agree unless told otherwise.
  const preferIncoming = (config.prefer ?? (config.direction === 'reverse' ? 'sink' : 'source')) === 'source';
  switch (sink.type) {
    case 'postgres':
      return new PostgresSink(sink.url, { timeoutMs: config.liveness.timeoutMs, preferIncoming });
    case 'supabase':
      if (!sink.key) throw new ConfigError(`${path}.sink.key: the supabase sink needs the project's service role key`);
      return new SupabaseSink({ url: sink.url, key: sink.key, preferIncoming, captured: capturedBySupabase(sink.url, all), ownWrites });
    case 'sqlite':
      return new SqliteSink(sink.url, { preferIncoming });
    case 'mssql':
      return new MssqlSink({
        url: sink.url,
        identityInsert: new Set(config.tables.filter((t) => t.identityInsert).map((t) => t.target)),
        queueTable: all.find((s) => s.source.type === 'mssql-queue' && s.source.url === sink.url)?.source.queueTable,
        preferIncoming,
      });
    case 'nats':
      return new NatsSink({ url: sink.url, ...natsSchema.parse(sink.nats ?? {}), connector: config.source.type, timeoutMs: Math.min(config.liveness.timeoutMs, PUBLISH_TIMEOUT_MS) });
    default:
      throw new ConfigError(`${path}.sink.type: "${sink.type}" is not available in this version of cdc-sync`);
  }
}

/**
 * Tables of a Supabase project that a supabase-realtime stream reads (two-way),
 * with their updated-at column: there a change's time is the row's version.
 */
function capturedBySupabase(url: string, all: StreamConfig[]): Map<string, string> {
  const captured = new Map<string, string>();
  for (const stream of all) {
    if (stream.source.type !== 'supabase-realtime' || stream.source.url !== url) continue;
    for (const table of stream.tables) {
      const name = parseQualifiedName(table.source);
      if (table.updatedAt) captured.set(`${name.schema ?? 'public'}.${name.name}`, table.updatedAt);
    }
  }
  return captured;
}
