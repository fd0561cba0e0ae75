import { Registry } from 'prom-client';
import { loadConfigFile } from '../config/load.js';
import { ConfigError } from '../core/errors.js';
import { createLogger } from '../log.js';
import { createMetrics } from '../metrics/metrics.js';
import { buildStreams } from '../streams/build.js';

/**
 * `cdc-sync snapshot --stream S [--table T]`: rewrites the stream's checkpoint
 * so that its next run copies the tables again (keyset pages) and then
 * streams their changes from the copy on. The way out of a CDC cleanup gap.
 * Run it while the stream is stopped: a running stream would overwrite the
 * checkpoint with its own.
 */
export async function snapshotCommand(options: { config: string; stream: string; table?: string[] }): Promise<string> {
  const config = loadConfigFile(options.config);
  const log = createLogger('warn');
  const streams = buildStreams(config, createMetrics(new Registry()), log);
  const stream = streams.find((s) => s.name === options.stream);
  if (!stream) throw new ConfigError(`--stream: no stream named "${options.stream}" (have: ${streams.map((s) => s.name).join(', ')})`);
  const changed = await stream.rewriteCheckpoint((position, source) => {
    if (!source.requestSnapshot) throw new ConfigError(`stream ${options.stream}: its source type cannot take a snapshot`);
    return source.requestSnapshot(position, options.table ?? []);
  });
  return changed
    ? `stream ${options.stream}: ${options.table?.length ? options.table.join(', ') : 'all tables'} will be copied again at the next start\n`
    : `stream ${options.stream} has no checkpoint yet: its first run copies every table anyway\n`;
}
