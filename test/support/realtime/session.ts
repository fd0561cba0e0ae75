// One WebSocket connection: the Phoenix socket transport (phoenixframework/phoenix
// lib/phoenix/socket.ex, handle_in/4) plus the parts of RealtimeWeb.RealtimeChannel
// (supabase/realtime lib/realtime_web/channels/realtime_channel.ex) that postgres_changes
// subscribers meet: join, leave, heartbeat, access_token, system messages.
import { roleOfToken } from '../supabase-keys.js';
import type { WebSocket } from 'ws';
import { type Address, type InboundMessage, type Vsn, decodeFrame, encodeBroadcast, encodePush, encodeReply } from './protocol.js';
import { bindingId } from './subscriptions.js';

export interface ChannelRecord {
  session: Session;
  topic: string;
  /** The channel name without the `realtime:` prefix, as in system messages. */
  name: string;
  joinRef: string | null;
  bindings: { id: number; params: Record<string, unknown> }[];
  activation: NodeJS.Timeout | undefined;
  closed: boolean;
  /** Messages in the current one-second window (rate limit with shutdown). */
  window: { start: number; count: number };
  /**
   * The claims role of the join's token, which Realtime stores with each
   * subscription (realtime.subscription.claims_role) and shapes changes by.
   * Tokens are not verified here: one the project did not issue (tests that
   * are not about roles pass any key) counts as service_role.
   */
  role: string;
}

export interface SessionHost {
  /** The project allows private channels only. */
  readonly privateOnly: boolean;
  countJoin(): void;
  countLeave(): void;
  countHeartbeat(): void;
  countSystemMessage(): void;
  countFrame(): void;
  /** After the join reply: subscribe the bindings, then push the system message. */
  scheduleActivation(channel: ChannelRecord): void;
  /** The channel is gone: drop its subscriptions. */
  deactivate(channel: ChannelRecord): void;
}

const j = JSON.stringify;

export class Session {
  readonly channels = new Map<string, ChannelRecord>();
  accessToken: string | null;

  constructor(
    readonly ws: WebSocket,
    readonly vsn: Vsn,
    apiKey: string,
    private readonly host: SessionHost,
  ) {
    this.accessToken = apiKey;
    ws.on('message', (data, isBinary) => {
      // Binary frames are user broadcasts (vsn 2.0.0 kind 3), which this stand-in does not serve.
      if (isBinary) return;
      const message = decodeFrame(vsn, data.toString());
      if (message) this.handle(message);
    });
    ws.on('close', () => this.teardown());
    ws.on('error', () => this.teardown());
  }

  send(text: string): void {
    if (this.ws.readyState !== this.ws.OPEN) return;
    this.host.countFrame();
    this.ws.send(text);
  }

  /** A channel push: carries the join_ref, no ref. */
  push(channel: ChannelRecord, event: string, payloadJson: string): void {
    this.send(encodePush(this.vsn, { joinRef: channel.joinRef, ref: null, topic: channel.topic }, event, payloadJson));
  }

  /** A fastlane broadcast (postgres_changes). */
  broadcast(channel: ChannelRecord, event: string, payloadJson: string): void {
    this.send(encodeBroadcast(this.vsn, channel.topic, event, payloadJson));
  }

  /** RealtimeChannel push_system_message/5: payload {channel, extension, message, status}. */
  system(channel: ChannelRecord, extension: string, status: 'ok' | 'error', message: string): void {
    if (channel.closed) return;
    this.host.countSystemMessage();
    this.push(channel, 'system', `{"channel":${j(channel.name)},"extension":${j(extension)},"message":${j(message)},"status":${j(status)}}`);
  }

  /** The server ends the channel (Phoenix socket_close/2): phx_close with ref = join_ref. */
  close(channel: ChannelRecord): void {
    this.send(encodePush(this.vsn, { joinRef: channel.joinRef, ref: channel.joinRef, topic: channel.topic }, 'phx_close', '{}'));
    this.remove(channel);
  }

  /** Network drop: no close frame, the client sees 1006 and reconnects on its own. */
  terminate(): void {
    this.ws.terminate();
    this.teardown();
  }

  private reply(addr: Address, status: 'ok' | 'error', responseJson: string): void {
    this.send(encodeReply(this.vsn, addr, status, responseJson));
  }

  private handle(msg: InboundMessage): void {
    const { topic, event, ref, joinRef } = msg;
    if (topic === 'phoenix' && event === 'heartbeat') {
      this.host.countHeartbeat();
      return this.reply({ joinRef: null, ref, topic }, 'ok', '{}');
    }
    const channel = this.channels.get(topic);
    if (event === 'phx_join') {
      if (channel) this.close(channel); // duplicate join: the old channel is closed first
      return this.join(msg);
    }
    if (!channel) {
      // No such channel (never joined, or already closed by the server).
      if (event === 'phx_leave') return this.reply({ joinRef, ref, topic }, 'ok', '{}');
      return this.reply({ joinRef: null, ref, topic }, 'error', '{"reason":"unmatched topic"}');
    }
    if (joinRef !== null && joinRef !== channel.joinRef) return; // stale message of an old join
    if (event === 'phx_leave') {
      // Phoenix.Channel.Server: reply ok, stop with {:shutdown, :left}, the socket sends phx_close.
      this.host.countLeave();
      this.reply({ joinRef: channel.joinRef, ref, topic }, 'ok', '{}');
      return this.close(channel);
    }
    if (event === 'access_token') {
      // handle_in("access_token", …): {:noreply, socket}. Realtime re-checks a new JWT and shuts
      // the channel down if it is invalid; tokens are not verified by this stand-in.
      const token = msg.payload.access_token;
      if (typeof token === 'string') this.accessToken = token;
      return;
    }
    if (event === 'presence') return this.reply({ joinRef: channel.joinRef, ref, topic }, 'ok', '{}');
    // broadcast and anything else: {:noreply, socket}
  }

  private join(msg: InboundMessage): void {
    const { topic, ref, joinRef, payload } = msg;
    const addr = { joinRef, ref, topic };
    if (!topic.startsWith('realtime:')) {
      // Phoenix: no channel route for the topic → "unmatched topic", without join_ref.
      return this.reply({ joinRef: null, ref, topic }, 'error', '{"reason":"unmatched topic"}');
    }
    const name = topic.slice('realtime:'.length);
    if (name === '') return this.reply(addr, 'error', `{"reason":${j('TopicNameRequired: You must provide a topic name')}}`);
    if (typeof payload.access_token === 'string') this.accessToken = payload.access_token;

    const config = payload.config as { postgres_changes?: unknown; private?: unknown } | undefined;
    if (this.host.privateOnly && config?.private !== true) return this.reply(addr, 'error', `{"reason":"This project only allows private channels"}`);
    const list = Array.isArray(config?.postgres_changes) ? config.postgres_changes : [];
    const bindings = list
      .filter((p): p is Record<string, unknown> => p !== null && typeof p === 'object' && !Array.isArray(p))
      .map((params) => ({ id: bindingId(params), params }));
    const channel: ChannelRecord = {
      session: this,
      topic,
      name,
      joinRef,
      bindings,
      activation: undefined,
      closed: false,
      window: { start: 0, count: 0 },
      role: roleOfToken(this.accessToken ?? '') ?? 'service_role',
    };
    this.channels.set(topic, channel);
    this.host.countJoin();
    // {:ok, %{postgres_changes: [params with :id]}, socket}: the atom key `id` sorts before
    // the binary keys of the client's params.
    const echoed = bindings.map(({ id, params }) => {
      const rest = Object.entries(params).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      return `{"id":${id}${rest.map(([k, v]) => `,${j(k)}:${j(v) ?? 'null'}`).join('')}}`;
    });
    this.reply(addr, 'ok', `{"postgres_changes":[${echoed.join(',')}]}`);
    if (bindings.length > 0) this.host.scheduleActivation(channel);
  }

  private remove(channel: ChannelRecord): void {
    if (channel.closed) return;
    channel.closed = true;
    clearTimeout(channel.activation);
    if (this.channels.get(channel.topic) === channel) this.channels.delete(channel.topic);
    this.host.deactivate(channel);
  }

  private teardown(): void {
    for (const channel of [...this.channels.values()]) this.remove(channel);
  }
}
