import { startWith, type Observable, type Subscriber } from 'rxjs';
import type { SourceChunk } from '../../core/change-event.js';
import { ConfigError } from '../../core/errors.js';
import { DEFAULT_TIMEOUT_MS } from '../../db/postgres/connection.js';
import { classifyPgError } from '../../db/postgres/errors.js';
import type { StreamContext } from '../../streams/context.js';
import { countCaptured } from '../count-captured.js';
import { UnknownTables } from '../unknown-tables.js';
import { ChunkHold } from './chunk-hold.js';
import { WalDecoder } from './wal-decoder.js';
import { ReplicationConnection } from './wal-connection.js';
import { reconnectLoop } from './wal-reconnect.js';
import type { WalCopier, WalTable } from './wal-copy.js';
import { formatLsn, parseLsn } from './wal-lsn.js';
import { WalPosition } from './wal-position.js';
import { WalQueue, type Queued } from './wal-queue.js';
import { SLOT_SQL, startReplicationSql } from './wal-setup.js';
import type { WalSourceOptions } from './wal-source-options.js';
import { TransactionAssembler, type WalTransaction } from './wal-transactions.js';

/** How often the socket's reads and the decode slices may report the changes held (the gauges); a chunk delivered reports at once. */
const HELD_REPORT_MS = 100;

/** What the stream uses of its WalSource. */
export interface WalStreamSource {
  readonly tables: Map<string, WalTable>;
  /** Configured source tables whose inserts go on as text rows (Source.textRows). */
  readonly textTables: ReadonlySet<string>;
  /** PostgreSQL 14 and later send logical messages (the copy's watermarks) when asked. */
  messages(): boolean;
  query<T>(sql: string, params: unknown[]): Promise<T[]>;
}

/**
 * The WAL source's replication from the slot: the connection (reconnected
 * after transient failures), the XLogData decoded into transactions, and
 * the chunks they are handed on in. The server hears of a position as
 * flushed once the sink stored it (`committed`).
 */
export class WalStream {
  private readonly connection: ReplicationConnection;
  private readonly queue = new WalQueue();
  private readonly decoder: WalDecoder;
  /** The WAL end of the last keepalive that came while messages were pending: passed over once they are decoded. */
  private keepaliveEnd = 0n;
  private readonly hold: ChunkHold;
  private requests = 0;
  private subscriber: Subscriber<SourceChunk> | undefined;
  private assembler!: TransactionAssembler;
  private copier: WalCopier | undefined;
  /** Transactions ending at or before this were applied already. */
  private skipUntil = 0n;
  private received = 0n;
  private flushed = 0n;
  private lastEmitted = 0n;
  /** Everything the server sent up to here is in the queue, emitted or skipped. */
  sentThrough = 0n;
  /** Skipped transactions (own writes, other tables) since the last chunk: the next chunk's position covers them. */
  private skippedEnd = 0n;
  private stopped = false;
  private context!: StreamContext;
  private readonly unknownTables: UnknownTables;
  private heldReportedAt = -Infinity;
  private heldTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly options: WalSourceOptions,
    private readonly source: WalStreamSource,
  ) {
    this.connection = new ReplicationConnection(options.url, options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    this.hold = new ChunkHold(options.holdMs);
    this.decoder = new WalDecoder({
      room: () => this.queue.size < this.options.readLimit,
      walEnd: (walEnd) => {
        if (walEnd > this.received) this.received = walEnd;
      },
      transaction: (tx) => this.onTransaction(tx),
      slice: () => this.decodeSlice(),
    });
    this.unknownTables = new UnknownTables((table) => source.tables.has(table));
  }

  /** The replication connection starts connecting while the source opens (its checks, publication and slot). */
  connectAhead(): void {
    this.connection.connectAhead(this.connectionError);
  }

  private readonly connectionError = (error: Error) => this.context.log.debug({ err: error.message }, 'replication connection error');

  /** The source is opened (again). */
  reopen(context: StreamContext): void {
    this.context = context;
    this.stopped = false;
  }

  /** A subscription from the checkpoint's `lsn`, with the copier that runs beside it; returns its teardown. */
  subscribe(subscriber: Subscriber<SourceChunk>, lsn: bigint, copier: WalCopier, demand: Observable<void>): () => void {
    this.subscriber = subscriber;
    this.skipUntil = lsn;
    this.flushed = this.skipUntil;
    this.lastEmitted = this.skipUntil;
    this.queue.clear();
    this.requests = 0;
    this.copier = copier;
    const demands = demand.pipe(startWith(undefined)).subscribe(() => {
      this.requests += 1;
      this.deliver();
    });
    void this.replicate();
    return () => {
      demands.unsubscribe();
      this.subscriber = undefined;
      this.copier?.stop();
      this.stop();
    };
  }

  /** A copied chunk, queued where its watermark fell. */
  push(item: Queued): void {
    this.queue.push(item);
    this.deliver();
  }

  error(error: unknown): void {
    this.subscriber?.error(error);
  }

  /** The sink stored everything up to `lsn`. */
  committed(lsn: bigint): void {
    if (lsn > this.flushed) this.flushed = lsn;
    this.sendStatus();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.heldTimer);
    this.heldTimer = undefined;
    this.hold.stop();
    this.connection.close();
  }

  /** Streams until stopped, reconnecting (reconnectLoop). */
  private async replicate(): Promise<void> {
    this.stopped = false;
    await reconnectLoop(
      {
        streamOnce: () => this.streamOnce(),
        stopped: () => this.stopped,
        subscribed: () => this.subscriber !== undefined,
        fail: (error) => this.subscriber?.error(error),
        ended: () => this.connection.close(),
      },
      () => this.context,
      this.options.retry,
    );
  }

  private async streamOnce(): Promise<void> {
    // Whatever was received but not handed over is read again from the slot.
    this.queue.clear();
    this.decoder.clear();
    this.keepaliveEnd = 0n;
    this.connection.reset();
    this.hold.reset();
    this.copier?.reset();
    this.copier?.readNext(0);
    this.skipUntil = this.skipUntil > this.lastEmitted ? this.skipUntil : this.lastEmitted;
    this.assembler = new TransactionAssembler({
      tables: this.source.tables,
      textTables: this.source.textTables,
      truncate: this.options.truncate,
      stream: this.context.stream,
      unknownTable: (table) => this.unknownTables.skipped(table, this.context),
    });
    const client = await this.connection.open(this.connectionError);
    if (this.stopped) return;
    const [slot] = await this.source.query<{ confirmed: string | null }>(SLOT_SQL, [this.options.slot]);
    if (!slot) throw new ConfigError(`source.slot: replication slot ${this.options.slot} disappeared`);
    const start = slot.confirmed ?? '0/0';
    this.received = parseLsn(start);
    if (this.received > this.flushed) this.flushed = this.received;
    this.sentThrough = this.received;
    this.connection.readCopyData(client, {
      xlog: (bytes, start, end, messages) => {
        this.hold.xlogData();
        this.decoder.push(bytes, start, end, messages);
        this.controlFlow();
        this.reportHeldSoon();
        this.decoder.schedule();
      },
      keepalive: (walEnd, replyRequested) => this.onKeepalive(walEnd, replyRequested),
    });
    this.connection.startStatus(() => this.sendStatus(), this.options.statusIntervalMs);
    this.connection.watchLiveness(client, () => this.sendStatus(true));
    this.context.setConnected('source', true);
    this.context.log.info({ slot: this.options.slot, start, checkpoint: formatLsn(this.skipUntil) }, 'logical replication started');
    await client.query(startReplicationSql(this.options.slot, start, this.options.publication, this.source.messages()));
  }

  private onKeepalive(walEnd: bigint, replyRequested: boolean): void {
    this.hold.keepalive();
    // A chunk held back may go now; on the next turn, not inside the socket's read (delivering starts a batch).
    if (this.decoder.length === 0 && this.queue.length > 0) setImmediate(() => this.deliver());
    if (walEnd > this.received) this.received = walEnd;
    // Everything the server sent before the keepalive must be decoded for its WAL end to count as passed over.
    if (this.decoder.length > 0) this.keepaliveEnd = walEnd;
    else if (this.passOver(walEnd)) return;
    if (replyRequested) this.sendStatus();
  }

  /**
   * The server sent everything up to `walEnd`: with no transaction open, it is
   * passed over. Idle with everything applied, that is confirmed at once (as
   * PostgreSQL's own apply worker does), not at the next interval; true when
   * a status went out.
   */
  private passOver(walEnd: bigint): boolean {
    const before = this.flushPosition();
    if (!this.assembler.open && walEnd > this.sentThrough) this.sentThrough = walEnd;
    if (!this.assembler.open) this.copier?.passed(walEnd);
    if (this.flushPosition() <= before) return false;
    this.sendStatus();
    return true;
  }

  private decodeSlice(): void {
    try {
      this.decoder.decode(this.assembler);
    } catch (error) {
      this.subscriber?.error(classifyPgError(error, { stream: this.context.stream }));
      this.stop();
      return;
    }
    if (this.decoder.length === 0 && this.keepaliveEnd > 0n) {
      this.passOver(this.keepaliveEnd);
      this.keepaliveEnd = 0n;
    }
    this.controlFlow();
    this.reportHeldSoon();
    this.decoder.schedule();
  }

  private controlFlow(): void {
    this.connection.controlFlow(this.queue.size + this.decoder.length, this.options.bufferSize, this.decoder.byteLength, this.options.bufferBytes);
  }

  /**
   * The gauges of the changes held, from the socket's reads and the decode
   * slices: at most every HELD_REPORT_MS, the last value at the end of it. A
   * backlog comes in ~20,000 small reads for 300,000 changes (bench:wal), each
   * followed by a slice, and a labelled gauge builds and sorts its labels'
   * hash at every set (prom-client's Gauge.set).
   */
  private reportHeldSoon(): void {
    if (this.heldTimer) return;
    const wait = HELD_REPORT_MS - (performance.now() - this.heldReportedAt);
    if (wait <= 0) {
      this.reportHeld();
      return;
    }
    this.heldTimer = setTimeout(() => {
      this.heldTimer = undefined;
      this.reportHeld();
    }, wait);
    this.heldTimer.unref();
  }

  /** Per chunk delivered, and from reportHeldSoon. */
  private reportHeld(): void {
    this.heldReportedAt = performance.now();
    const labels = { stream: this.context.stream, direction: this.context.direction };
    this.context.metrics.bufferEvents.set(labels, this.queue.size + this.decoder.length);
    this.context.metrics.pending.set(labels, this.queue.size + this.decoder.length);
  }

  private onTransaction(tx: WalTransaction): void {
    if (tx.endLsn > this.sentThrough) this.sentThrough = tx.endLsn;
    if (tx.endLsn <= this.skipUntil) return; // applied before the restart
    // Before the ownWrite check: cdc-sync's own writes are newer than a chunk read before them, too.
    this.copier?.seen(tx);
    if (tx.ownWrite) {
      const counts = new Map<string, number>();
      for (const e of tx.events) counts.set(e.table, (counts.get(e.table) ?? 0) + 1);
      for (const [table, n] of counts) {
        this.context.metrics.suppressed.inc({ stream: this.context.stream, direction: this.context.direction, table, reason: 'origin' }, n);
      }
      this.skippedEnd = tx.endLsn;
      return;
    }
    if (tx.events.length === 0 && tx.rejected.length === 0) {
      this.skippedEnd = tx.endLsn;
      return;
    }
    this.queue.push(tx);
    this.deliver();
  }

  /** One chunk per request: whole transactions (and copied chunks), up to readLimit changes (at least one item). */
  private deliver(): void {
    const copier = this.copier;
    while (this.requests > 0 && this.queue.length > 0 && this.subscriber) {
      if (this.hold.hold(this.queue.size >= this.options.readLimit, this.decoder.length > 0, () => this.deliver())) break;
      const { events, rejected, end, copy } = this.queue.take(this.options.readLimit, this.lastEmitted, copier?.current ?? null, (copy) => copier?.deliveredChunk(copy));
      this.hold.released();
      const position = new WalPosition(end, copy).toString();
      // Events keep their own transaction's end LSN (a valid checkpoint each); the chunk's is the last one.
      this.requests -= 1;
      this.lastEmitted = end;
      if (this.skippedEnd <= end) this.skippedEnd = 0n;
      // Copied rows are not captured changes; most chunks have none (no copy of the chunk then).
      countCaptured(this.context, events.some((e) => e.copied) ? events.filter((e) => !e.copied) : events);
      this.controlFlow();
      this.reportHeld();
      const caughtUp = this.queue.length === 0 && this.decoder.length === 0 && this.hold.serverIdle && !copier?.active;
      this.subscriber.next({ events, rejected, position, caughtUp });
    }
    copier?.readNext(this.queue.size);
    this.decoder.schedule();
    if (this.queue.length === 0 && this.decoder.length === 0 && this.requests > 0 && !copier?.active) this.context.idle?.();
  }

  /**
   * The flush position: the last committed one. When nothing is queued or in
   * flight, also what the server sent since (skipped transactions, other
   * databases' WAL), so an idle slot does not hold WAL forever.
   */
  private flushPosition(): bigint {
    let flush = this.flushed;
    const idle = this.queue.length === 0 && this.decoder.length === 0 && !this.assembler?.open;
    if (idle && this.lastEmitted <= this.flushed && this.sentThrough > flush) flush = this.sentThrough;
    return flush;
  }

  private sendStatus(replyRequested = false): void {
    this.connection.sendStatus(this.received, () => this.flushPosition(), replyRequested);
  }
}
