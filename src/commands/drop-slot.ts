import pg from 'pg';
import { loadConfigFile } from '../config/load.js';
import { ConfigError } from '../core/errors.js';
import { DEFAULT_NAME } from '../cdc/postgres/wal-setup.js';
import { connectError } from '../db/postgres/connection.js';

/** `cdc-sync drop-slot --stream S`: drops the stream's replication slot (the server then frees the WAL it kept); refuses while it is in use. */
export async function dropSlotCommand(options: { config: string; stream: string }): Promise<string> {
  const config = loadConfigFile(options.config);
  const stream = config.streams.find((s) => s.name === options.stream);
  if (!stream) throw new ConfigError(`--stream: no stream named "${options.stream}" in ${options.config}`);
  if (stream.source.type !== 'postgres-wal') throw new ConfigError(`--stream: stream "${stream.name}" has a ${stream.source.type} source, which uses no replication slot`);
  const slot = stream.source.slot ?? DEFAULT_NAME(stream.name);
  const client = new pg.Client({ connectionString: stream.source.url, application_name: 'cdc-sync', connectionTimeoutMillis: stream.liveness.timeoutMs });
  // pg emits 'error' when the connection dies; the query in progress fails with it and the command reports that.
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (error) {
    throw connectError(error, `streams[${config.streams.indexOf(stream)}].source.url`);
  }
  try {
    const { rows } = await client.query<{ active: boolean; active_pid: number | null }>(
      'SELECT active, active_pid FROM pg_replication_slots WHERE slot_name = $1',
      [slot],
    );
    if (rows.length === 0) return `slot ${slot} does not exist; nothing to drop\n`;
    if (rows[0]!.active) throw new Error(`slot ${slot} is in use (pid ${rows[0]!.active_pid}); stop the stream first`);
    await client.query('SELECT pg_drop_replication_slot($1)', [slot]);
    return `dropped replication slot ${slot}; a new one starts from the current WAL position (changes until then are not replayed)\n`;
  } finally {
    await client.end();
  }
}
