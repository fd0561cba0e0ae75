import { Observable } from 'rxjs';
import type { Consumer, JsMsg } from '@nats-io/jetstream';
import { ConsumerFeed } from './consumer-feed.js';
import type { ChangeEvent, RejectedChange, SourceChunk } from '../../core/change-event.js';
import { ConfigError, TransientError } from '../../core/errors.js';
import { append } from '../../core/arrays.js';
import type { TableConfig } from '../../core/mapping.js';
import { connectJetStream, type JetStreamConnection, type NatsStreamSettings } from '../../db/nats/connection.js';
import { decodeChange, HEADERS, streamSubjects } from '../../db/nats/envelope.js';
import { classifyNatsError } from '../../db/nats/errors.js';
import type { StreamContext } from '../../streams/context.js';
import type { RetryPolicy } from '../../streams/retry.js';
import { countCaptured } from '../count-captured.js';
import { ReadGeneration } from '../read-generation.js';
import { readWithRetry } from '../read-with-retry.js';
import { UnknownTables } from '../unknown-tables.js';
import type { Source } from '../source.js';

/**
 * How long one pull of the consumer stays open. The client renews it, and
 * misses the server's heartbeats (sent every half of it) twice before it
 * checks the consumer and pulls again: a consumer whose node was lost and
 * came back (its pull went with it) delivers again after about this long,
 * not after the client's default of 30 s (the convergence checker saw
 * changes wait that long after one node of three was killed).
 */
const PULL_EXPIRES_MS = 5_000;

/** An idle consumer (of a start whose process died) is removed by the server after this long. */
const CONSUMER_IDLE_LIFETIME_MS = 60 * 60_000;

export interface NatsSourceOptions extends NatsStreamSettings {
  url: string;
  tables: TableConfig[];
  /** The publishing cdc-sync stream whose subjects this source reads. */
  from: string;
  /** The durable consumers' name; each start makes one named `<consumer>_<start time>`. */
  consumer: string;
  /** The one partition this stream applies (of `partitions`); unset: all changes. */
  partition?: number | undefined;
  /** Messages per fetch. */
  readLimit: number;
  /** How long a fetch waits for messages when there are none. */
  idleIntervalMs: number;
  retry: RetryPolicy;
  timeoutMs: number;
}

/**
 * Applies the changes another cdc-sync stream published to JetStream (see
 * sinks/nats), through a durable pull consumer filtered to that stream's
 * subjects. The position is the JetStream stream sequence of the last
 * message read; the checkpoint lives with the sink (in the target's own
 * transaction where it can), so the effect is exactly once whatever JetStream
 * redelivers.
 *
 * Each start makes a consumer at the checkpoint (a consumer's start cannot
 * be moved) and removes those of earlier starts, so changes handed on but
 * not applied before a restart come again at once instead of after the ack
 * wait. A message is acknowledged (AckPolicy.All: with everything before
 * it) once the sink committed it; the consumer's pending count is then
 * what is left to apply. A fetch that ends inside a published batch (whole
 * source transactions) reads on to the batch's end.
 */
export class NatsSource implements Source {
  private nats: JetStreamConnection | undefined;
  private context!: StreamContext;
  private feed: ConsumerFeed | undefined;
  /** `<JetStream stream>@<its creation time>` of the stream being read: a position names the stream it counts in. */
  private identity = '';
  /** Last stream sequence handed on (at a start: the checkpoint's); a redelivery of it or of an earlier one is dropped. */
  private handed = 0;
  /** The identity of the stream `handed` counts in (null: none yet). */
  private handedIn: string | null = null;
  /** The last message of each chunk handed on, to acknowledge once committed. */
  private readonly unacked = new Map<string, JsMsg>();
  private readonly tables = new Set<string>();
  private readonly unknownTables = new UnknownTables((table) => this.tables.has(table));
  private readonly generations = new ReadGeneration();
  /** Consumers made by this process (a part of their names). */
  private starts = 0;
  /** Changes the stream holds back for a missing parent (`holding`). */
  private held = 0;

  constructor(private readonly options: NatsSourceOptions) {
    for (const table of options.tables) this.tables.add(table.source);
  }

  async open(context: StreamContext): Promise<void> {
    this.context = context;
    this.nats ??= await connectJetStream(this.options.url, `cdc-sync ${context.stream}`);
    context.setConnected('source', true);
  }

  chunks(from: string | null, demand: Observable<void>): Observable<SourceChunk> {
    return this.generations.chunks(
      demand,
      () => {
        const start = parsePosition(from);
        this.handed = start?.seq ?? 0;
        this.handedIn = start?.identity ?? null;
        this.feed?.stop();
        this.feed = undefined;
        this.unacked.clear();
      },
      (stale) => this.nextChunk(stale),
    );
  }

  async committed(position: string): Promise<void> {
    const message = this.unacked.get(position);
    const seq = parsePosition(position)?.seq ?? 0;
    for (const [key, m] of this.unacked) if (m.seq <= seq) this.unacked.delete(key);
    // Progress for the consumer's pending count only: the checkpoint is the sink's.
    message?.ack();
  }

  wake(): void {}

  holding(count: number): void {
    this.held = count;
  }

  async close(): Promise<void> {
    const nats = this.nats;
    this.nats = undefined;
    this.feed?.stop();
    this.feed = undefined;
    await nats?.connection.close();
  }

  private async nextChunk(stale: () => boolean): Promise<SourceChunk | null> {
    for (;;) {
      if (stale() || this.context.stopping.aborted) return null;
      const messages = await this.read(() => this.take());
      if (stale()) return null;
      const fresh = messages.filter((m) => m.seq > this.handed);
      if (fresh.length > 0) return this.toChunk(fresh);
      if (messages.length > 0) continue;
      this.context.idle?.();
      // A held child's parent may come through another partition's stream: nothing new here, so the stream
      // tries the held changes again (an empty chunk) once per idle read.
      if (this.partitioned && this.held > 0) return { events: [], rejected: [], position: this.position(this.handed), caughtUp: true, readsPending: true };
    }
  }

  /**
   * The messages received so far, up to `readLimit` (waiting up to the idle
   * interval for a first one), read on while they end inside a published
   * batch and the consumer has more.
   */
  private async take(): Promise<JsMsg[]> {
    const feed = (this.feed ??= await this.startFeed());
    const out: JsMsg[] = [];
    for (;;) {
      if (feed.failure !== undefined) {
        this.feed = undefined;
        feed.stop();
        throw feed.failure;
      }
      // Up to readLimit; past it only to the end of the batch the last one belongs to.
      const ends = feed.queue.findIndex(batchEnds);
      append(out, feed.queue.splice(0, out.length < this.options.readLimit ? this.options.readLimit - out.length : ends < 0 ? feed.queue.length : ends + 1));
      feed.resume();
      const last = out.at(-1);
      if (last && (batchEnds(last) || last.info.pending === 0)) break;
      if (!(await feed.arrival(last ? this.options.timeoutMs : this.options.idleIntervalMs))) break;
    }
    const pending = out.at(-1)?.info.pending;
    if (pending !== undefined) this.context.metrics.pending.set({ stream: this.context.stream, direction: this.context.direction }, pending);
    return out;
  }

  /** The consumer, set at the checkpoint, and the messages it delivers, kept at most a few reads ahead. */
  private async startFeed(): Promise<ConsumerFeed> {
    const consumer = await this.createConsumer();
    // A consumer deleted under it (a delete of an earlier try that the server carried out late) ends delivery
    // instead of waiting quietly for it to come back: the source sets it up again.
    const messages = await consumer.consume({ max_messages: this.options.readLimit, expires: PULL_EXPIRES_MS, abort_on_missing_resource: true });
    return new ConsumerFeed(messages, 2 * this.options.readLimit);
  }

  private async createConsumer(): Promise<Consumer> {
    const { manager, client, api } = this.requireNats();
    const { AckPolicy, DeliverPolicy } = api;
    const info = await manager.streams.info(this.options.stream);
    this.identity = `${this.options.stream}@${Date.parse(info.created)}`;
    if (this.handedIn !== null && this.handedIn !== this.identity) {
      // Sequences count again from 1 in a stream deleted and created again (or another one configured).
      this.context.log.warn({ checkpoint: this.handedIn, stream: this.identity }, 'the checkpoint counts in another JetStream stream (created again, or another one configured); reading this one from its start');
      this.handed = 0;
    }
    this.handedIn = this.identity;
    // After what this subscription handed on (at its start: the checkpoint); a consumer lost midway goes on from there.
    const startSeq = this.handed + 1;
    // A new consumer per start, at the checkpoint: deleting and creating one name again raced with deletes the
    // server carried out late (an earlier try's, after a crash), and each waits on a replica group while a node is down.
    const name = `${this.options.consumer}_${Date.now().toString(36)}${(this.starts += 1)}`;
    await manager.consumers.add(this.options.stream, {
      durable_name: name,
      filter_subject: streamSubjects(this.options.subjectPrefix, this.options.from, this.options.partition),
      ack_policy: AckPolicy.All,
      ...(startSeq > 1 ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: startSeq } : { deliver_policy: DeliverPolicy.All }),
      // Messages wait for the sink's commit, which may retry for minutes: redeliveries are dropped anyway.
      ack_wait: Math.max(this.options.timeoutMs, 30_000) * 1_000_000,
      max_ack_pending: -1,
      // A cursor, not state: the checkpoint is the sink's. One replica is quick to create, and a lost one is made again.
      num_replicas: 1,
      // Those of earlier starts that could not be removed go by themselves.
      inactive_threshold: CONSUMER_IDLE_LIFETIME_MS * 1_000_000,
    });
    void this.removeEarlierConsumers(name);
    return client.consumers.get(this.options.stream, name);
  }

  /** The consumers of this stream's earlier starts (best effort: they expire anyway). */
  private async removeEarlierConsumers(current: string): Promise<void> {
    const { manager } = this.requireNats();
    try {
      for await (const info of manager.consumers.list(this.options.stream)) {
        // Only this stream's: another stream's name may start with this one's (`x` and `x_y`), never with a suffix of _[0-9a-z]+.
        const earlier = info.name.startsWith(`${this.options.consumer}_`) && /^[0-9a-z]+$/.test(info.name.slice(this.options.consumer.length + 1));
        if (earlier && info.name !== current) await manager.consumers.delete(this.options.stream, info.name);
      }
    } catch (error) {
      this.context.log.debug({ err: (error as Error).message }, 'earlier JetStream consumers not removed; they expire when idle');
    }
  }

  private toChunk(messages: JsMsg[]): SourceChunk {
    const events: ChangeEvent[] = [];
    const rejected: RejectedChange[] = [];
    for (const message of messages) {
      const position = this.position(message.seq);
      const messageHeaders = message.headers;
      const headers = { get: (name: string) => messageHeaders?.get(name) ?? '' };
      const text = UTF8.decode(message.data);
      let event: ChangeEvent;
      try {
        event = decodeChange(text, headers, position);
      } catch (error) {
        rejected.push({ table: message.subject, key: null, payload: text, error: error as Error, position });
        continue;
      }
      if (!this.tables.has(event.table)) {
        this.unknownTables.skipped(event.table, this.context);
        continue;
      }
      events.push(event);
    }
    const last = messages.at(-1)!;
    this.handed = last.seq;
    this.unacked.set(this.position(last.seq), last);
    countCaptured(this.context, events);
    // A child's parent may still come: the publishing stream had more to read (a copy, a backlog), the
    // last batch is not whole (its publisher stopped midway and sends it again, its rest after a restart),
    // or it is in another key partition, which another stream applies.
    const readsPending = this.partitioned || last.headers?.get(HEADERS.more) === '1' || !batchEnds(last);
    this.context.log.debug({ first: messages[0]!.seq, last: last.seq, batch: last.headers?.get(HEADERS.batch), pending: last.info.pending, readsPending }, 'JetStream messages read');
    return { events, rejected, position: this.position(last.seq), caughtUp: last.info.pending === 0, readsPending };
  }

  /** One key partition of several: a change's parent may be in another. */
  private get partitioned(): boolean {
    return this.options.partition !== undefined && this.options.partitions > 1;
  }

  private position(seq: number): string {
    return `${this.identity}:${seq}`;
  }

  private read<T>(run: () => Promise<T>): Promise<T> {
    return readWithRetry(
      this.context,
      this.options.retry,
      {
        error: (error) => {
          // A consumer deleted or lost with its stream's leader is set up again on the next try.
          this.feed?.stop();
          this.feed = undefined;
          if ((error as { name?: string }).name === 'StreamNotFoundError') {
            return new TransientError(`JetStream stream ${this.options.stream} does not exist (yet): the publishing stream creates it`, { context: { stream: this.context.stream }, cause: error });
          }
          return classifyNatsError(error, { stream: this.context.stream, position: this.position(this.handed) });
        },
        lostConnection: (error) => error.transient,
      },
      run,
    );
  }

  private requireNats(): JetStreamConnection {
    if (!this.nats) throw new ConfigError('nats source used before open()');
    return this.nats;
  }
}

/** One decoder for every message: each one made is a native object the garbage collector must finalize. */
const UTF8 = new TextDecoder();

function batchEnds(message: JsMsg): boolean {
  const [order, size] = (message.headers?.get(HEADERS.batch) ?? '').split('/');
  return order === undefined || order === '' || order === size;
}

interface NatsPosition {
  identity: string;
  seq: number;
}

/** `<JetStream stream>@<created ms>:<stream sequence>`. */
function parsePosition(text: string | null): NatsPosition | null {
  if (text === null || text === '') return null;
  const match = /^(.+@\d+):(\d+)$/.exec(text);
  if (!match) throw new ConfigError(`not a nats position: ${text}`);
  return { identity: match[1]!, seq: Number(match[2]) };
}
