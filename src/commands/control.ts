import { Registry } from 'prom-client';
import { FileCheckpointStore } from '../checkpoints/file-checkpoint-store.js';
import { loadConfigFile } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { controller } from '../control/controller.js';
import { deadLetterStoreFor, type RetryResult } from '../control/retry-failed.js';
import { ConfigError, errorMessage } from '../core/errors.js';
import { createLogger } from '../log.js';
import { createMetrics } from '../metrics/metrics.js';
import type { ControlStatus } from '../server/control.js';
import { createPool } from '../db/postgres/connection.js';
import { buildStreams } from '../streams/build.js';
import type { Stream } from '../streams/stream.js';
import { snapshotCommand } from './snapshot.js';
import { CommandError, ask, runningProcess, type ProcessOptions } from './process-api.js';

function offlineStreams(config: Config): Stream[] {
  return buildStreams(config, createMetrics(new Registry()), createLogger('warn'));
}

/**
 * A running process whose control API can answer: its URL when one runs and
 * a token is given (--token or http.token); null otherwise, and the command
 * works against the databases (the API is off without a token).
 */
async function controllableProcess(config: Config, options: ProcessOptions): Promise<{ url: string | null; token: string | undefined }> {
  const url = await runningProcess(config, options);
  return { url, token: options.token ?? config.http.token };
}

/** Open dead letters of a stream, from its store; null when the store cannot be read (reported as '?'). */
async function openDeadLetters(config: Config, stream: string): Promise<number | null> {
  let store: ReturnType<typeof deadLetterStoreFor> | undefined;
  try {
    store = deadLetterStoreFor(config, stream);
    return (await store.open(stream)).length;
  } catch (error) {
    // No cdc_sync schema yet: the stream never wrote a dead letter.
    if ((error as { code?: string }).code === '42P01') return 0;
    return null;
  } finally {
    await store?.close().catch(() => {});
  }
}

/** `cdc-sync status`: from the running process, or each stream's stored checkpoint when none runs (or its API is off). */
export async function statusCommand(options: ProcessOptions & { json?: boolean }): Promise<string> {
  const config = loadConfigFile(options.config);
  const { url, token } = await controllableProcess(config, options);
  let rows: (Partial<ControlStatus> & { deadLetters?: number | null })[];
  let source: string;
  if (url && token) {
    rows = (await ask<{ streams: ControlStatus[] }>(url, '/api/sync/status', token)).streams;
    source = `running process at ${url}`;
  } else {
    rows = [];
    for (const stream of offlineStreams(config)) {
      let position: string | null = null;
      try {
        await stream.rewriteCheckpoint((current) => {
          position = current;
          return null; // read only
        });
        rows.push({ ...stream.status(), state: url ? 'running' : 'stopped', position });
      } catch (error) {
        rows.push({ ...stream.status(), state: url ? 'running' : 'stopped', position: null, lastError: errorMessage(error) });
      }
    }
    source = url ? `process running at ${url} without http.token (its API is off); checkpoints read from the stores` : 'no process running; checkpoints read from the stores';
  }
  // The store's count, not the process's: a restart does not make 500 open dead letters 0.
  for (const row of rows) row.deadLetters = row.name ? await openDeadLetters(config, row.name) : null;
  if (options.json) return `${JSON.stringify({ running: url !== null, streams: rows }, null, 2)}\n`;
  const columns = ['name', 'direction', 'source', 'sink', 'state', 'connected', 'lagSeconds', 'pending', 'applied', 'failed', 'deadLetters', 'position', 'lastError'] as const;
  const cells = rows.map((r) => columns.map((c) => (c === 'deadLetters' && r[c] === null ? '?' : r[c] === undefined || r[c] === null ? '-' : String(r[c]))));
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((row) => row[i]!.length)));
  const line = (values: readonly string[]) => values.map((v, i) => v.padEnd(widths[i]!)).join('  ').trimEnd();
  return `${source}\n${[line(columns), ...cells.map(line)].join('\n')}\n`;
}

/** `cdc-sync retry-failed`: through the running process, else directly against the databases. */
export async function retryFailedCommand(options: ProcessOptions & { stream?: string; table?: string }): Promise<string> {
  const config = loadConfigFile(options.config);
  if (options.stream && !config.streams.some((s) => s.name === options.stream)) {
    throw new ConfigError(`--stream: no stream named "${options.stream}" (have: ${config.streams.map((s) => s.name).join(', ')})`);
  }
  const filter = { stream: options.stream, table: options.table };
  const { url, token } = await controllableProcess(config, options);
  let result: { retried: number; stillFailing: number; skipped?: number };
  if (url && token) {
    result = await ask(url, '/api/sync/retry-failed', token, filter);
  } else {
    const streams: Record<string, RetryResult> = await controller(config, offlineStreams(config)).retryFailed(filter);
    const total = (k: keyof RetryResult) => Object.values(streams).reduce((n, r) => n + r[k], 0);
    result = { retried: total('retried'), stillFailing: total('stillFailing'), skipped: total('skipped') };
  }
  return `${JSON.stringify({ via: url && token ? url : 'direct', ...result })}\n`;
}

/**
 * `cdc-sync reset --stream S [--table T]`: a full resync. Sources that can
 * snapshot (mssql-cdc, mssql-queue) copy the tables again at the next start;
 * for the others the stream's checkpoint is deleted so it starts over.
 */
export async function resetCommand(options: ProcessOptions & { stream: string; table?: string[] }): Promise<string> {
  const config = loadConfigFile(options.config);
  const streamConfig = config.streams.find((s) => s.name === options.stream);
  if (!streamConfig) throw new ConfigError(`--stream: no stream named "${options.stream}" (have: ${config.streams.map((s) => s.name).join(', ')})`);
  const url = await runningProcess(config, options);
  if (url) throw new CommandError(`a cdc-sync process is running at ${url}: stop it first, it would overwrite the checkpoint`);
  if (streamConfig.source.type === 'mssql-cdc' || streamConfig.source.type === 'mssql-queue') {
    return snapshotCommand({ config: options.config, stream: options.stream, ...(options.table ? { table: options.table } : {}) });
  }
  if (options.table?.length) {
    throw new ConfigError(`--table: a ${streamConfig.source.type} source cannot resync single tables; reset the whole stream (leave out --table)`);
  }
  const stream = offlineStreams(config).find((s) => s.name === options.stream)!;
  const store = stream.checkpointStore;
  let removed: boolean;
  if (store instanceof FileCheckpointStore) {
    removed = await store.remove(options.stream);
  } else if (streamConfig.sink.type === 'postgres') {
    const pool = createPool(streamConfig.sink.url, { max: 1 });
    try {
      removed = ((await pool.query(`DELETE FROM cdc_sync.checkpoints WHERE stream = $1`, [options.stream])).rowCount ?? 0) > 0;
    } catch (error) {
      // No cdc_sync schema yet: the stream never ran, nothing to forget.
      if ((error as { code?: string }).code !== '42P01') throw error;
      removed = false;
    } finally {
      await pool.end();
    }
  } else {
    throw new CommandError(`reset: deleting a checkpoint kept by a "${streamConfig.sink.type}" sink is not available yet; delete the row of stream "${options.stream}" from cdc_sync.checkpoints by hand`);
  }
  const what =
    streamConfig.source.type === 'postgres-changelog'
      ? 'its next run reads the whole change table (cdc_sync.changes) again from the beginning'
      : 'its next run starts over from the beginning of its source';
  return removed ? `stream ${options.stream}: checkpoint deleted; ${what}\n` : `stream ${options.stream} has no checkpoint: ${what} anyway\n`;
}
