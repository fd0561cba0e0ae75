// A Supabase Realtime stand-in for tests: the Phoenix WebSocket endpoint
// /realtime/v1/websocket that @supabase/realtime-js (and supabase.channel()) talk to, serving
// postgres_changes from the real database through a wal2json logical replication slot.
// Protocol shapes: see protocol.ts, session.ts, dispatch.ts, wal-sql.ts (each cites its source).
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import { type ActiveSubscription, changeDataJson, postgresChangesPayload, route } from './dispatch.js';
import { Poller, type WalChange } from './poller.js';
import { forwardTo } from './http-forward.js';
import { negotiateVsn } from './protocol.js';
import { ensurePublication } from './publication.js';
import { type ChannelRecord, Session, type SessionHost } from './session.js';
import { type SubscriptionParams, parseSubscriptionParams } from './subscriptions.js';

export const WEBSOCKET_PATH = '/realtime/v1/websocket';

export interface RealtimeServerOptions {
  /** The database whose changes are served (a createTestDatabase() url). */
  databaseUrl: string;
  /** Publication that selects the tables (Realtime's default: supabase_realtime). */
  publication?: string;
  /** Create the publication, empty, if it does not exist (as a new Supabase project has it). Default true. */
  createPublication?: boolean;
  /** Serve on this already listening server instead of a new one (its other upgrades are left alone). */
  server?: http.Server;
  /** On a new server: pass plain HTTP requests on to this base URL (e.g. the PostgREST stand-in's url). */
  forwardHttpTo?: string;
  /** Only this apikey may connect (others get 403). Default: any non-empty apikey. */
  apiKey?: string;
  /** Replication slot name (slot names are cluster-wide). Default: a random one. */
  slotName?: string;
  /** poll_interval_ms (Realtime default 100; idle polls wait 5×). */
  pollIntervalMs?: number;
  /** poll_max_changes (default 100). */
  maxChanges?: number;
  /** poll_max_record_bytes (default 1 MiB): larger changes carry only values ≤ 64 bytes and error 413. */
  maxRecordBytes?: number;
  /** Delay between the join reply and "Subscribed to PostgreSQL" (default 0). */
  systemMessageDelayMs?: number;
  /**
   * "Allow public access" off: a join without config.private is refused with
   * the reason "This project only allows private channels" (supabase/realtime
   * lib/realtime_web/channels/realtime_channel.ex, PrivateOnly; its
   * test/integration/rt_channel_test.exs checks that phx_reply).
   */
  privateOnly?: boolean;
}

export interface RateLimit {
  eventsPerSecond: number;
  /**
   * 'drop' (default): changes beyond the rate are drained and skipped for everyone, like the
   * poller's db events rate limit (supabase/realtime lib/extensions/postgres_cdc_rls/
   * replication_poller.ex, handle_list_changes_result). 'shutdown': a channel that receives more
   * than the rate gets the system error "Too many messages per second" and phx_close
   * (lib/realtime_web/channels/realtime_channel.ex, handle_info(:update_rate_counter)).
   */
  mode?: 'drop' | 'shutdown';
}

export interface RealtimeServerStats {
  connections: number;
  openConnections: number;
  rejectedConnections: number;
  droppedConnections: number;
  joins: number;
  leaves: number;
  heartbeats: number;
  systemMessages: number;
  /** Changes read from the slot (tables of the publication). */
  changesDecoded: number;
  /** Changes that had subscribers but were thrown away by dropNextEvents/pause/rateLimit. */
  changesDropped: number;
  /** postgres_changes frames written (one per channel per change). */
  messagesSent: number;
  framesSent: number;
  activeSubscriptions: number;
  pollerError: string | null;
}

export interface RealtimeServer {
  /** Base URL for createClient(url, key) / new RealtimeClient(`${url}/realtime/v1`, …). */
  url: string;
  /** ws://…/realtime/v1/websocket */
  websocketUrl: string;
  slotName: string;
  publication: string;
  close(): Promise<void>;
  /** Closes every socket abruptly (no close frame); returns how many. Clients reconnect by themselves. */
  dropConnections(): number;
  /** The next n changes that have subscribers are lost. */
  dropNextEvents(n: number): void;
  /** Until resume(), every change is lost. */
  pause(): void;
  resume(): void;
  /** Delay of "Subscribed to PostgreSQL" for joins from now on; changes before it are lost. */
  delaySystemMessage(ms: number): void;
  rateLimit(limit: RateLimit | null): void;
  /**
   * The server ends every channel, as its shutdown paths do: a system message
   * with status error, then phx_close (RealtimeChannel shutdown_response;
   * Phoenix socket_close). realtime-js does not rejoin a channel the server closed.
   */
  closeChannels(message: string): number;
  /** Decodes and delivers everything committed so far. */
  flush(): Promise<void>;
  stats(): RealtimeServerStats;
}

export async function startRealtimeServer(options: RealtimeServerOptions): Promise<RealtimeServer> {
  const publication = options.publication ?? 'supabase_realtime';
  if (options.createPublication !== false) await ensurePublication(options.databaseUrl, publication);

  const stats: RealtimeServerStats = {
    connections: 0, openConnections: 0, rejectedConnections: 0, droppedConnections: 0, joins: 0, leaves: 0,
    heartbeats: 0, systemMessages: 0, changesDecoded: 0, changesDropped: 0, messagesSent: 0, framesSent: 0,
    activeSubscriptions: 0, pollerError: null,
  };
  const sessions = new Set<Session>();
  const registry = new Set<ActiveSubscription>();
  let delayMs = options.systemMessageDelayMs ?? 0;
  let dropNext = 0;
  let paused = false;
  let limit: RateLimit | null = null;
  const dropWindow = { start: 0, count: 0 };

  const overLimit = (window: { start: number; count: number }, perSecond: number): boolean => {
    const now = Date.now();
    if (now - window.start >= 1000) Object.assign(window, { start: now, count: 0 });
    window.count++;
    return window.count > perSecond;
  };

  /** dropNextEvents / pause / rateLimit('drop'): the change had subscribers but is thrown away. */
  const lost = (): boolean => {
    if (paused) return true;
    if (dropNext > 0) {
      dropNext--;
      return true;
    }
    return limit !== null && limit.mode !== 'shutdown' && overLimit(dropWindow, limit.eventsPerSecond);
  };

  const deliver = (change: WalChange, targets: Map<ChannelRecord, number[]>): void => {
    const data = changeDataJson(change);
    for (const [channel, ids] of targets) {
      if (channel.closed) continue;
      stats.messagesSent++;
      channel.session.broadcast(channel, 'postgres_changes', postgresChangesPayload(data, ids));
      if (limit?.mode === 'shutdown' && overLimit(channel.window, limit.eventsPerSecond)) {
        channel.session.system(channel, 'system', 'error', 'Too many messages per second');
        channel.session.close(channel);
      }
    }
  };

  const poller = new Poller({
    databaseUrl: options.databaseUrl,
    publication,
    slotName: options.slotName,
    pollIntervalMs: options.pollIntervalMs ?? 100,
    maxChanges: options.maxChanges ?? 100,
    maxRecordBytes: options.maxRecordBytes ?? 1024 * 1024,
    async onBatch(changes) {
      stats.changesDecoded += changes.length;
      let delivered = 0;
      for (const { change, targets } of await route(changes, registry, (c) => poller.check(c))) {
        if (targets.size === 0) continue; // nobody subscribed: gone, as in Realtime
        if (lost()) {
          stats.changesDropped++;
          continue;
        }
        // apply_rls shapes a change once per claims role of its subscribers.
        for (const role of new Set([...targets.keys()].map((c) => c.role))) {
          const shaped = await poller.shape(change, role);
          if (shaped) deliver(shaped, new Map([...targets].filter(([c]) => c.role === role)));
        }
        delivered++;
      }
      return delivered;
    },
    onError(error) {
      stats.pollerError = error.message;
    },
  });

  const activate = async (channel: ChannelRecord): Promise<void> => {
    const { session } = channel;
    const parsed: { id: number; params: SubscriptionParams }[] = [];
    for (const binding of channel.bindings) {
      const result = parseSubscriptionParams(binding.params);
      // {:malformed_subscription_params, reason}: reported once, never retried.
      if (!result.ok) return session.system(channel, 'postgres_changes', 'error', result.error);
      parsed.push({ id: binding.id, params: result.value });
    }
    await poller.exclusive(async () => {
      // Whatever was committed before the subscription exists goes to the old subscribers only.
      await poller.settle();
      await poller.pollOnce();
      const subs: ActiveSubscription[] = [];
      for (const { id, params } of parsed) {
        const resolved = await poller.resolve(params);
        if ('error' in resolved) return session.system(channel, 'postgres_changes', 'error', resolved.error);
        subs.push({ channel, bindingId: id, action: params.action, entities: new Set(resolved.entities), filters: params.filters });
      }
      if (channel.closed) return;
      for (const sub of subs) registry.add(sub);
      stats.activeSubscriptions = registry.size;
      session.system(channel, 'postgres_changes', 'ok', 'Subscribed to PostgreSQL');
    }).catch((err: Error) => session.system(channel, 'postgres_changes', 'error', err.message));
  };

  const host: SessionHost = {
    privateOnly: options.privateOnly ?? false,
    countJoin: () => void stats.joins++,
    countLeave: () => void stats.leaves++,
    countHeartbeat: () => void stats.heartbeats++,
    countSystemMessage: () => void stats.systemMessages++,
    countFrame: () => void stats.framesSent++,
    scheduleActivation(channel) {
      channel.activation = setTimeout(() => {
        channel.activation = undefined;
        void activate(channel);
      }, delayMs);
    },
    deactivate(channel) {
      for (const sub of registry) if (sub.channel === channel) registry.delete(sub);
      stats.activeSubscriptions = registry.size;
    },
  };

  const wss = new WebSocketServer({ noServer: true });
  const owned = !options.server;
  const server =
    options.server ?? http.createServer(options.forwardHttpTo ? forwardTo(options.forwardHttpTo) : (_req, res) => res.writeHead(404).end());
  const refuse = (socket: Duplex, status: string) => {
    stats.rejectedConnections++;
    socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
  };
  const onUpgrade = (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname !== WEBSOCKET_PATH) {
      if (owned) refuse(socket, '404 Not Found');
      return; // someone else's upgrade
    }
    // RealtimeWeb.UserSocket.connect/3 needs an apikey (query or header); Phoenix answers 403
    // when connect fails or the vsn has no serializer.
    const apiKey = url.searchParams.get('apikey') ?? (req.headers.apikey as string | undefined) ?? '';
    const vsn = negotiateVsn(url.searchParams.get('vsn'));
    if (!apiKey || (options.apiKey !== undefined && apiKey !== options.apiKey) || !vsn) return refuse(socket, '403 Forbidden');
    wss.handleUpgrade(req, socket, head, (ws) => {
      stats.connections++;
      const session = new Session(ws, vsn, apiKey, host);
      sessions.add(session);
      stats.openConnections = sessions.size;
      ws.on('close', () => {
        sessions.delete(session);
        stats.openConnections = sessions.size;
      });
    });
  };
  server.on('upgrade', onUpgrade);
  if (owned) await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address() as AddressInfo | null;
  if (!address || typeof address === 'string') throw new Error('startRealtimeServer: options.server must be listening on a TCP port');
  const host4 = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const base = `http://${host4 === '0.0.0.0' || host4 === '[::]' ? '127.0.0.1' : host4}:${address.port}`;

  try {
    await poller.start();
  } catch (err) {
    server.off('upgrade', onUpgrade);
    if (owned) server.close();
    await poller.stop();
    throw err;
  }

  let closed = false;
  return {
    url: base,
    websocketUrl: `${base.replace(/^http/, 'ws')}${WEBSOCKET_PATH}`,
    slotName: poller.slotName,
    publication,
    async close() {
      if (closed) return;
      closed = true;
      server.off('upgrade', onUpgrade);
      for (const session of sessions) session.terminate();
      wss.close();
      await poller.stop();
      if (owned) await new Promise<void>((resolve) => server.close(() => resolve()));
    },
    closeChannels(message) {
      let count = 0;
      for (const session of sessions) {
        for (const channel of [...session.channels.values()]) {
          session.system(channel, 'system', 'error', message);
          session.close(channel);
          count += 1;
        }
      }
      return count;
    },
    dropConnections() {
      const count = sessions.size;
      for (const session of [...sessions]) session.terminate();
      stats.droppedConnections += count;
      return count;
    },
    dropNextEvents: (n) => void (dropNext += n),
    pause: () => void (paused = true),
    resume: () => void (paused = false),
    delaySystemMessage: (ms) => void (delayMs = ms),
    rateLimit: (l) => void (limit = l),
    async flush() {
      await poller.exclusive(async () => {
        await poller.settle();
        while ((await poller.pollOnce()).raw > 0);
      });
    },
    stats: () => ({ ...stats }),
  };
}
