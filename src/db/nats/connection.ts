import type { NatsConnection, NodeConnectionOptions } from '@nats-io/transport-node';
import type { JetStreamClient, JetStreamManager, StreamConfig } from '@nats-io/jetstream';
import { ConfigError } from '../../core/errors.js';
import { importModule } from '../../core/import-module.js';
import { classifyNatsError } from './errors.js';

/** The JetStream stream cdc-sync publishes to and reads from (`sink.nats` / `source.nats` of the configuration). */
export interface NatsStreamSettings {
  /** JetStream stream name. */
  stream: string;
  /** First subject token: changes go to `<prefix>.<cdc-sync stream>.<schema>.<table>`. */
  subjectPrefix: string;
  /** Replicas when cdc-sync creates the stream (3 in a three-node cluster). */
  replicas: number;
  /** JetStream drops a re-sent message id within this window. */
  duplicateWindowSeconds: number;
  /** Partitions the changes are published into by key (1: none). */
  partitions: number;
}

/**
 * `url:` lists the servers, comma-separated (`nats://h1:4222,nats://h2:4222`),
 * as the NATS clients take them; user and password (or a token as the user)
 * in the first URL apply to all. The client reconnects by itself for ever:
 * a publish or fetch while it is away fails and the stream retries.
 */
export function connectionOptions(url: string, name: string): NodeConnectionOptions {
  const servers = url.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (servers.length === 0) throw new ConfigError('url: no NATS server listed');
  const options: NodeConnectionOptions = { name, maxReconnectAttempts: -1, reconnectTimeWait: 500, waitOnFirstConnect: false };
  const withAuth = servers.find((s) => s.includes('@'));
  if (withAuth) {
    const parsed = new URL(withAuth.includes('://') ? withAuth : `nats://${withAuth}`);
    const user = decodeURIComponent(parsed.username);
    const pass = decodeURIComponent(parsed.password);
    if (pass) Object.assign(options, { user, pass });
    else if (user) options.token = user;
  }
  options.servers = servers.map((s) => {
    const parsed = new URL(s.includes('://') ? s : `nats://${s}`);
    return `${parsed.hostname}:${parsed.port || '4222'}`;
  });
  return options;
}

/** A connection with its JetStream client and manager (the NATS packages are loaded on first use, like every driver). */
export interface JetStreamConnection {
  connection: NatsConnection;
  client: JetStreamClient;
  manager: JetStreamManager;
  headers(): import('@nats-io/transport-node').MsgHdrs;
  createInbox(): string;
  /** The JetStream package (its constants). */
  api: typeof import('@nats-io/jetstream');
}

export async function connectJetStream(url: string, name: string): Promise<JetStreamConnection> {
  const [nats, js] = await Promise.all([
    importModule<typeof import('@nats-io/transport-node')>('@nats-io/transport-node'),
    importModule<typeof import('@nats-io/jetstream')>('@nats-io/jetstream'),
  ]);
  let connection: NatsConnection;
  try {
    connection = await nats.connect(connectionOptions(url, name));
  } catch (error) {
    throw classifyNatsError(error, { code: 'connect' });
  }
  try {
    return { connection, client: js.jetstream(connection), manager: await js.jetstreamManager(connection), headers: nats.headers, createInbox: () => nats.createInbox(), api: js };
  } catch (error) {
    await connection.close().catch(() => undefined);
    throw classifyNatsError(error, { code: 'jetstream' });
  }
}

/**
 * Creates the stream when it does not exist (file storage, limits retention:
 * messages stay for other consumers) and checks that an existing one takes
 * the prefix's subjects.
 */
export async function ensureStream(manager: JetStreamManager, settings: NatsStreamSettings): Promise<void> {
  const subject = `${settings.subjectPrefix}.>`;
  let existing: StreamConfig | undefined;
  try {
    existing = (await manager.streams.info(settings.stream)).config;
  } catch (error) {
    if ((error as { name?: string }).name !== 'StreamNotFoundError') throw classifyNatsError(error, { code: 'stream info' });
  }
  if (existing) {
    if (!existing.subjects?.some((s) => s === subject || s === '>' || (s.endsWith('.>') && subject.startsWith(s.slice(0, -1))))) {
      throw new ConfigError(`nats.stream: JetStream stream ${settings.stream} takes ${existing.subjects?.join(', ') || 'no subjects'}, not ${subject}`);
    }
    return;
  }
  try {
    await manager.streams.add({
      name: settings.stream,
      subjects: [subject],
      num_replicas: settings.replicas,
      duplicate_window: settings.duplicateWindowSeconds * 1_000_000_000,
    });
  } catch (error) {
    if ((error as { code?: unknown }).code === 10065) {
      throw new ConfigError(`nats.subjectPrefix: ${subject} overlaps the subjects of another JetStream stream; choose another prefix, or name that stream in nats.stream`);
    }
    throw classifyNatsError(error, { code: 'stream create' });
  }
}

