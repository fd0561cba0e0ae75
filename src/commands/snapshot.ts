import { Registry } from 'prom-client';
import { loadConfigFile } from '../config/load.js';
import { ConfigError } from '../core/errors.js';
import { checkWhere } from '../cdc/copy-filter.js';
import { createLogger } from '../log.js';
import { createMetrics } from '../metrics/metrics.js';
import type { ControlStatus } from '../server/control.js';
import { buildStreams } from '../streams/build.js';
import { ask, runningProcess, type ProcessOptions } from './process-api.js';

export interface SnapshotOptions extends ProcessOptions {
  stream: string;
  table?: string[];
  /** Only the rows of the one table this condition holds for (copy-filter.ts). */
  where?: string;
  /** Through a running process: wait until the copy is done, printing its progress. */
  wait?: boolean;
  /** Where progress lines go (stderr). */
  progress?: NodeJS.WritableStream & { isTTY?: boolean };
  pollMs?: number;
}

/**
 * `cdc-sync snapshot --stream S [--table T] [--wait]`: copies a stream's
 * tables again. With a process running, through its control API: the
 * stream copies while it goes on streaming. Without one, the stored
 * checkpoint is rewritten so that the next run copies first.
 */
export async function snapshotCommand(options: SnapshotOptions): Promise<string> {
  const config = loadConfigFile(options.config);
  if (!config.streams.some((s) => s.name === options.stream)) {
    throw new ConfigError(`--stream: no stream named "${options.stream}" (have: ${config.streams.map((s) => s.name).join(', ')})`);
  }
  const tables = options.table ?? [];
  checkWhere(tables, options.where);
  const what = `${tables.length ? tables.join(', ') : 'all tables'}${options.where === undefined ? '' : ` (rows where ${options.where})`}`;
  const url = await runningProcess(config, options);
  if (url) {
    const token = options.token ?? config.http.token;
    await ask(url, '/api/sync/snapshot', token, { stream: options.stream, ...(tables.length ? { tables } : {}), ...(options.where === undefined ? {} : { where: options.where }) });
    if (!options.wait) return `stream ${options.stream}: copying ${what} again in the running process at ${url}\n`;
    const status = await waitForCopy(url, token, options.stream, tables, options);
    const rows = Object.entries(status.snapshot).filter(([t]) => tables.length === 0 || tables.includes(t));
    return `stream ${options.stream}: ${what} copied again (${rows.map(([t, p]) => `${t} ${p.rows} rows`).join(', ') || 'no rows'})\n`;
  }
  const stream = buildStreams(config, createMetrics(new Registry()), createLogger('warn')).find((s) => s.name === options.stream)!;
  const changed = await stream.rewriteCheckpoint((position, source) => {
    if (!source.requestSnapshot) throw new ConfigError(`stream ${options.stream}: its source type cannot take a snapshot`);
    return source.requestSnapshot(position, tables, options.where);
  });
  return changed
    ? `stream ${options.stream}: ${what} will be copied again at the next start (no process is running)\n`
    : `stream ${options.stream} has no checkpoint yet: its first run copies every table anyway\n`;
}

/** Polls the status until the stream has none of `tables` (any, when empty) left to copy; prints a progress line. */
async function waitForCopy(url: string, token: string | undefined, stream: string, tables: string[], options: SnapshotOptions): Promise<ControlStatus> {
  const out = options.progress ?? process.stderr;
  const tty = Boolean(out.isTTY);
  let lastLine = '';
  for (;;) {
    const { streams } = await ask<{ streams: ControlStatus[] }>(url, '/api/sync/status', token);
    const status = streams.find((s) => s.name === stream);
    if (!status) throw new ConfigError(`--stream: the running process has no stream named "${stream}"`);
    const left = status.copying.filter((t) => tables.length === 0 || tables.includes(t));
    const line = progressLine(status, left);
    if (line !== lastLine) out.write(tty ? `\r${line}\u001b[K` : `${line}\n`);
    lastLine = line;
    if (left.length === 0) {
      if (tty) out.write('\n');
      return status;
    }
    await new Promise((r) => setTimeout(r, options.pollMs ?? 1000));
  }
}

function progressLine(status: ControlStatus, left: string[]): string {
  if (left.length === 0) return `${status.name}: copy done`;
  const table = left[0]!;
  const progress = status.snapshot[table];
  const share = progress ? ` (${Math.floor(progress.ratio * 100)}%)` : '';
  return `${status.name}: copying ${table}: ${progress?.rows ?? 0} rows${share}${left.length > 1 ? `, ${left.length - 1} more table(s) to go` : ''} | state ${status.state}`;
}
