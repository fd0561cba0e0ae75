import { inOrder } from '../../core/arrays.js';
import { append } from '../../core/arrays.js';
import pg from 'pg';
import { Observable, startWith, type Subscriber } from 'rxjs';
import type { RejectedChange, ChangeEvent, SourceChunk } from '../../core/change-event.js';
import { ConfigError } from '../../core/errors.js';
import type { TableConfig } from '../../core/mapping.js';
import { DEFAULT_TIMEOUT_MS, connectError, createPool, endSilent, pgSocket, type Pool } from '../../db/postgres/connection.js';
import { classifyPgError, isConnectionError } from '../../db/postgres/errors.js';
import { qualifiedText, qualify, quoteIdent, quoteTable } from '../../db/postgres/identifiers.js';
import type { StreamContext } from '../../streams/context.js';
import type { RetryPolicy } from '../../streams/retry.js';
import { readRows } from './read-rows.js';
import { countCaptured } from '../count-captured.js';
import { checkSourceColumns } from '../check-columns.js';
import type { Source } from '../source.js';
import { formatLsn, parseLsn } from './wal-lsn.js';
import { XLOG_HEADER, isChangeMessage, standbyStatus, xlogWalEnd } from './wal-protocol.js';
import { readCopyData } from './copy-data-reader.js';
import { MARKER_EXISTS_SQL, PUBLICATION_SQL, RETAINED_SQL, SERVER_VERSION_SQL, SLOT_SQL, TABLE_INFO_SQL } from './wal-setup.js';
import { walCopyReader } from './wal-copy-reader.js';
import { WalCopier, type WalCopyItem, type WalTable } from './wal-copy.js';
import { WalPosition, type WalCopy } from './wal-position.js';
import { ORIGIN_MARKER_TABLE, TransactionAssembler, type WalTransaction } from './wal-transactions.js';
import { COPY_TIME } from '../table-copy.js';
import { ByteQueue } from './byte-queue.js';
import { UnknownTables } from '../unknown-tables.js';
import { holdChunk } from './chunk-hold.js';

/** A decoded transaction, or a copied chunk (`copyAfter` set: where the copy stands after it; no LSN of its own). */
type Queued = WalTransaction & { copyAfter?: WalCopy | null };

/** Messages decoded at a time before other work (the sink's replies) gets its turn. */
const DECODE_SLICE = 2000;
/** How long a chunk that is not full waits for more after the last XLogData while the server sends no keepalive (holdChunk). */
const HOLD_MS = 100;

export interface WalSourceOptions {
  url: string;
  tables: TableConfig[];
  slot: string;
  publication: string;
  truncate: 'apply' | 'dead-letter' | 'ignore';
  /** `initial`: a stream without checkpoint first copies its tables, beside the stream from the slot. */
  snapshot: 'initial' | 'never';
  /** Rows per chunk of a copy (snapshotChunkSize; default readLimit). */
  chunkSize?: number;
  /** Changes per chunk (whole transactions; one transaction may exceed it). */
  readLimit: number;
  /** Decoded changes held in memory before the socket is paused. */
  bufferSize: number;
  statusIntervalMs: number;
  retainedIntervalMs?: number;
  /** How long a chunk that is not full waits for more after the last XLogData while the server sends no keepalive (default 100 ms; ten times that in all at most). */
  holdMs?: number;
  retry: RetryPolicy;
  /** A server silent this long (no message, not even the reply to a status that asks for one) is taken as lost (liveness.timeoutMs). */
  timeoutMs?: number;
}

/**
 * Logical replication (pgoutput) from a slot. One chunk holds whole
 * transactions; its position is the last commit's end LSN. The server is told
 * a position is flushed only after `committed()` said the sink stored it, so a
 * restart replays from the slot whatever was not applied, and transactions
 * at or before the stored checkpoint are skipped.
 */
export class WalSource implements Source {
  private pool: Pool | undefined;
  private context!: StreamContext;
  private readonly tables = new Map<string, WalTable>();
  private client: pg.Client | undefined;
  /** Decoded transactions, and copied chunks (`copyAfter`: where the copy stands after them), in stream order. */
  private queue: Queued[] = [];
  private queued = 0;
  /**
   * XLogData received and not decoded yet, as bytes. Decoded in slices, only
   * so far that a chunk waits ready: a backlog held in memory costs the
   * garbage collector nothing until it is about to be applied.
   */
  private readonly pending = new ByteQueue();
  private decodeScheduled = false;
  /** The WAL end of the last keepalive that came while messages were pending: passed over once they are decoded. */
  private keepaliveEnd = 0n;
  private paused = false;
  /** A keepalive came after the last XLogData: the server has sent all the WAL it has for now. */
  private serverIdle = false;
  private lastXLogAt = 0;
  /** When the chunk now held back was first held. */
  private holdingSince: number | undefined;
  private holdTimer: NodeJS.Timeout | undefined;
  private requests = 0;
  private subscriber: Subscriber<SourceChunk> | undefined;
  private assembler!: TransactionAssembler;
  /** The copy's last page was read: "finished" is logged once a checkpoint without a copy is committed. */
  private copyEnding = false;
  private copier: WalCopier | undefined;
  /** PostgreSQL 14 and later send logical messages (the copy's watermarks) when asked. */
  private messages = false;
  private tableOrder: string[] = [];
  /** Transactions ending at or before this were applied already. */
  private skipUntil = 0n;
  private received = 0n;
  private flushed = 0n;
  private lastEmitted = 0n;
  /** Everything the server sent up to here is in the queue, emitted or skipped. */
  private sentThrough = 0n;
  /** Skipped transactions (own writes, other tables) since the last chunk: the next chunk's position covers them. */
  private skippedEnd = 0n;
  private stopped = false;
  private readonly unknownTables = new UnknownTables((table) => this.tables.has(table));
  /** When the server last sent anything on the replication connection (liveness). */
  private lastServerMessageAt = 0;
  private livenessTimer: NodeJS.Timeout | undefined;
  private statusTimer: NodeJS.Timeout | undefined;
  private retainedTimer: NodeJS.Timeout | undefined;

  constructor(private readonly options: WalSourceOptions) {}

  async open(context: StreamContext): Promise<void> {
    this.context = context;
    this.stopped = false;
    this.pool ??= createPool(this.options.url, { log: context.log, timeoutMs: this.options.timeoutMs, urlKey: 'source.url' });
    const qualifiedNames: string[] = [];
    for (const [i, table] of this.options.tables.entries()) {
      const path = `tables[${i}]`;
      const [row] = await this.query<{ exists: boolean; columns: string[]; published: string[]; types: number[]; primary_key: string[] }>(TABLE_INFO_SQL, [
        quoteTable(qualify(table.source)),
      ]);
      if (!row?.exists) throw new ConfigError(`${path}.source: table ${table.source} does not exist in the source database`);
      const key = checkSourceColumns(table, path, row.columns, row.primary_key);
      this.tables.set(qualifiedText(table.source), { source: table.source, key, columns: row.published, types: row.types });
      qualifiedNames.push(qualifiedText(table.source));
    }
    if (context.checkOnly) return;
    const [server] = await this.query<{ version: number }>(SERVER_VERSION_SQL, []);
    this.messages = (server?.version ?? 0) >= 140000;
    await this.ensurePublication(qualifiedNames);
    await this.ensureSlot();
    context.metrics.bufferCapacity.set({ stream: context.stream, direction: context.direction }, this.options.bufferSize);
    this.sampleRetained();
    this.retainedTimer ??= setInterval(() => this.sampleRetained(), this.options.retainedIntervalMs ?? 5000).unref();
    context.setConnected('source', true);
  }

  chunks(from: string | null, demand: Observable<void>): Observable<SourceChunk> {
    return new Observable<SourceChunk>((subscriber) => {
      this.subscriber = subscriber;
      const start = WalPosition.parse(from);
      const all = inOrder(this.options.tables.map((t) => t.source), this.tableOrder);
      const position = from === null && this.options.snapshot === 'initial' ? start.withCopy(all) : start;
      this.skipUntil = start.lsn;
      this.flushed = this.skipUntil;
      this.lastEmitted = this.skipUntil;
      this.queue = [];
      this.queued = 0;
      this.requests = 0;
      // The copy runs beside replication, a chunk at a time between watermarks (WalCopier).
      this.copier = new WalCopier(this.context, {
        table: (source) => {
          const table = this.tables.get(qualifiedText(source));
          if (!table) throw new ConfigError(`the copy names table ${source}, which this stream does not capture; reset the stream`);
          return table;
        },
        reader: walCopyReader((sql, params) => this.query(sql, params), (source) => this.tables.get(qualifiedText(source))!, this.context.stream),
        limit: this.options.chunkSize ?? this.options.readLimit,
        sentThrough: () => this.sentThrough,
        push: (item) => this.queueCopy(item),
        fail: (error) => this.subscriber?.error(error),
      });
      this.copier.start(position.copy);
      if (position.copy) {
        const { tables, after } = position.copy;
        this.context.log.info({ tables, resumedAfter: after ?? undefined }, 'initial copy started; changes stream beside it');
      }
      const demands = demand.pipe(startWith(undefined)).subscribe(() => {
        this.requests += 1;
        this.deliver();
      });
      void this.replicate();
      return () => {
        demands.unsubscribe();
        this.subscriber = undefined;
        this.copier?.stop();
        this.stopReplication();
      };
    });
  }

  /** The position that copies `tables` (all when empty) again, then streams on from where the stream was. */
  requestSnapshot(position: string | null, tables: string[], where?: string): string | null {
    const known = this.options.tables.map((t) => t.source);
    for (const table of tables) {
      if (!known.includes(table)) throw new ConfigError(`--table ${table}: not a table of this stream (${known.join(', ')})`);
    }
    const current = WalPosition.parse(position);
    const wanted = inOrder(tables.length > 0 ? tables : known, this.tableOrder);
    // A copy already going keeps its other tables, after the wanted ones (the one being copied starts again from its first row).
    const going = (current.copy?.tables ?? []).filter((t) => !wanted.includes(t));
    return current.withCopy([...wanted, ...going], where).toString();
  }

  /** The stream's apply order (parents first): tables are copied in it, so no copied child meets a missing parent. */
  order(tables: string[]): void {
    this.tableOrder = tables;
  }

  copying(position: string): string[] {
    return WalPosition.parse(position).copy?.tables ?? [];
  }

  /** A copied chunk joins the queue where its watermark fell. */
  private queueCopy(item: WalCopyItem): void {
    if (item.after === null) this.copyEnding = true;
    this.queue.push({ endLsn: 0n, xid: 0, commitTime: COPY_TIME, events: item.events, rejected: [], ownWrite: false, copyAfter: item.after });
    this.queued += item.events.length;
    this.deliver();
  }

  async committed(position: string): Promise<void> {
    const parsed = WalPosition.parse(position);
    if (this.copyEnding && parsed.copy === null) {
      this.copyEnding = false;
      this.context.log.info({ slot: this.options.slot }, 'initial copy finished; streaming changes');
    }
    const lsn = parsed.lsn;
    if (lsn > this.flushed) this.flushed = lsn;
    this.sendStatus();
  }

  wake(): void {}

  async close(): Promise<void> {
    this.stopReplication();
    clearInterval(this.retainedTimer);
    this.retainedTimer = undefined;
    const pool = this.pool;
    this.pool = undefined;
    await pool?.end();
  }

  private stopReplication(): void {
    this.stopped = true;
    clearTimeout(this.holdTimer);
    this.holdTimer = undefined;
    clearInterval(this.statusTimer);
    this.statusTimer = undefined;
    clearInterval(this.livenessTimer);
    this.livenessTimer = undefined;
    const client = this.client;
    this.client = undefined;
    void client?.end().catch(() => {});
  }

  /** Streams until stopped; reconnects with backoff after transient failures (the slot keeps what was not acknowledged). */
  private async replicate(): Promise<void> {
    this.stopped = false;
    let attempt = 0;
    while (!this.stopped && this.subscriber) {
      try {
        await this.streamOnce();
        attempt = 0;
        if (!this.stopped) throw new Error('connection terminated: replication ended by the server');
      } catch (error) {
        if (this.stopped) return;
        const classified = classifyPgError(error, { stream: this.context.stream });
        // "replication slot is active for PID": a previous session has not let go yet; retry.
        const transient = classified.transient || /is active for PID/i.test(classified.message);
        if (!transient) {
          this.subscriber?.error(classified);
          return;
        }
        if (isConnectionError(classified) || !classified.transient) this.context.setConnected('source', false);
        // Logged, counted and shown as the stream's state, as every retried read is.
        this.context.retrying('source', classified, attempt + 1);
        const { minDelayMs, maxDelayMs } = this.options.retry;
        const delay = Math.min(maxDelayMs, minDelayMs * 2 ** Math.min(attempt, 20)) * (0.5 + Math.random() / 2);
        attempt += 1;
        await new Promise((r) => setTimeout(r, delay));
      } finally {
        this.client?.end().catch(() => {});
        this.client = undefined;
        clearInterval(this.statusTimer);
        this.statusTimer = undefined;
        clearInterval(this.livenessTimer);
        this.livenessTimer = undefined;
      }
    }
  }

  private async streamOnce(): Promise<void> {
    // Whatever was received but not handed over is read again from the slot.
    this.queue = [];
    this.queued = 0;
    this.pending.clear();
    this.keepaliveEnd = 0n;
    this.paused = false;
    this.serverIdle = false;
    this.holdingSince = undefined;
    this.copier?.reset();
    this.copier?.readNext(0);
    this.skipUntil = this.skipUntil > this.lastEmitted ? this.skipUntil : this.lastEmitted;
    this.assembler = new TransactionAssembler({
      tables: this.tables,
      truncate: this.options.truncate,
      stream: this.context.stream,
      unknownTable: (table) => this.unknownTables.skipped(table, this.context),
    });
    const timeoutMs = this.options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const client = new pg.Client({
      connectionString: this.options.url,
      replication: 'database',
      application_name: 'cdc-sync-wal',
      connectionTimeoutMillis: Math.min(timeoutMs, 10_000),
      keepAlive: true,
      keepAliveInitialDelayMillis: 10_000,
    } as pg.ClientConfig);
    // pg emits 'error' when the connection dies; the query in progress (START_REPLICATION) fails with it and the loop reconnects.
    client.on('error', (error) => this.context.log.debug({ err: error.message }, 'replication connection error'));
    this.client = client;
    try {
      await client.connect();
    } catch (error) {
      throw connectError(error, 'source.url');
    }
    if (this.stopped) return;
    const [slot] = await this.query<{ confirmed: string | null }>(SLOT_SQL, [this.options.slot]);
    if (!slot) throw new ConfigError(`source.slot: replication slot ${this.options.slot} disappeared`);
    const start = slot.confirmed ?? '0/0';
    this.received = parseLsn(start);
    if (this.received > this.flushed) this.flushed = this.received;
    this.sentThrough = this.received;
    readCopyData(client, {
      xlog: (bytes, start, end, messages) => {
        this.lastServerMessageAt = performance.now();
        this.serverIdle = false;
        this.lastXLogAt = performance.now();
        this.pending.push(bytes, start, end, messages);
        this.controlFlow();
        this.scheduleDecode();
      },
      keepalive: (walEnd, replyRequested) => {
        this.lastServerMessageAt = performance.now();
        this.onKeepalive(walEnd, replyRequested);
      },
    });
    this.statusTimer = setInterval(() => this.sendStatus(), this.options.statusIntervalMs);
    this.watchLiveness(client, timeoutMs);
    this.context.setConnected('source', true);
    this.context.log.info({ slot: this.options.slot, start, checkpoint: formatLsn(this.skipUntil) }, 'logical replication started');
    const publication = quoteIdent(this.options.publication).replace(/'/g, "''");
    // messages: the copy's watermarks (WalCopier) arrive as soon as they are committed (PostgreSQL 15 skips empty transactions).
    const messages = this.messages ? `, messages 'true'` : '';
    await client.query(`START_REPLICATION SLOT ${this.options.slot} LOGICAL ${start} (proto_version '1', publication_names '${publication}'${messages})`);
  }

  /**
   * A walsender that has nothing to send and hears from us says nothing, so
   * silence alone proves nothing: after half the timeout without a message a
   * status asks for a reply (the walsender answers it at once with a
   * keepalive: walsender.c, ProcessStandbyReplyMessage), and a whole timeout
   * of silence ends the connection, which the reconnect loop reports. While the
   * socket is paused (the sink is behind) the server's messages wait unread:
   * nothing is judged then.
   */
  private watchLiveness(client: pg.Client, timeoutMs: number): void {
    this.lastServerMessageAt = performance.now();
    let asked = 0;
    this.livenessTimer = setInterval(() => {
      if (this.paused) {
        this.lastServerMessageAt = performance.now();
        return;
      }
      const silent = performance.now() - this.lastServerMessageAt;
      if (silent >= timeoutMs) {
        endSilent(client, this.options.url, timeoutMs, ' (replication)');
      } else if (silent >= timeoutMs / 2 && performance.now() - asked >= timeoutMs / 4) {
        asked = performance.now();
        this.sendStatus(true);
      }
    }, Math.max(50, Math.min(1000, timeoutMs / 10)));
    this.livenessTimer.unref();
  }

  private onKeepalive(walEnd: bigint, replyRequested: boolean): void {
    this.serverIdle = true;
    // A chunk held back may go now; on the next turn, not inside the socket's read (delivering starts a batch).
    if (this.pending.length === 0 && this.queue.length > 0) setImmediate(() => this.deliver());
    if (walEnd > this.received) this.received = walEnd;
    // Everything the server sent before the keepalive must be decoded for its WAL end to count as passed over.
    if (this.pending.length > 0) this.keepaliveEnd = walEnd;
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

  /** Decodes pending messages in slices until a chunk's worth of changes is ready, yielding to other work between slices. */
  private scheduleDecode(): void {
    if (this.decodeScheduled || this.pending.length === 0 || this.queued >= this.options.readLimit) return;
    this.decodeScheduled = true;
    setImmediate(() => {
      this.decodeScheduled = false;
      this.decodeSlice();
    });
  }

  private decodeSlice(): void {
    try {
      const pending = this.pending;
      for (let n = 0; n < DECODE_SLICE && this.queued < this.options.readLimit && pending.next(); n += 1) {
        // XLogData: 'w', WAL start, WAL end, send time, then the pgoutput message (wal-protocol.ts).
        const { bytes, start } = pending;
        if (!isChangeMessage(bytes, start)) {
          const walEnd = xlogWalEnd(bytes, start);
          if (walEnd > this.received) this.received = walEnd;
        }
        const tx = this.assembler.receive(bytes, start + XLOG_HEADER);
        if (tx) this.onTransaction(tx);
      }
    } catch (error) {
      this.subscriber?.error(classifyPgError(error, { stream: this.context.stream }));
      this.stopReplication();
      return;
    }
    if (this.pending.length === 0 && this.keepaliveEnd > 0n) {
      this.passOver(this.keepaliveEnd);
      this.keepaliveEnd = 0n;
    }
    this.controlFlow();
    this.reportHeld();
    this.scheduleDecode();
  }

  /** Pauses the replication socket while more than bufferSize changes wait (decoded or not), resumes below half of it. */
  private controlFlow(): void {
    const held = this.queued + this.pending.length;
    if (!this.paused && held > this.options.bufferSize) {
      this.paused = true;
      pgSocket(this.client)?.pause();
    } else if (this.paused && held <= this.options.bufferSize / 2) {
      this.paused = false;
      pgSocket(this.client)?.resume();
    }
  }

  /** Per slice and per chunk, not per message: a labelled gauge hashes its labels at every set. */
  private reportHeld(): void {
    const labels = { stream: this.context.stream, direction: this.context.direction };
    this.context.metrics.bufferEvents.set(labels, this.queued + this.pending.length);
    this.context.metrics.pending.set(labels, this.queued + this.pending.length);
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
    this.queued += tx.events.length + tx.rejected.length;
    this.deliver();
  }

  /** One chunk per request: whole transactions (and copied chunks), up to readLimit changes (at least one item). */
  private deliver(): void {
    const copier = this.copier;
    while (this.requests > 0 && this.queue.length > 0 && this.subscriber) {
      if (this.holdPartial()) break;
      const events: ChangeEvent[] = [];
      const rejected: RejectedChange[] = [];
      let end = this.lastEmitted;
      let copy = copier?.current ?? null;
      while (this.queue.length > 0) {
        const item = this.queue[0]!;
        const size = item.events.length + item.rejected.length;
        if (events.length + rejected.length > 0 && events.length + rejected.length + size > this.options.readLimit) break;
        this.queue.shift();
        this.queued -= size;
        if (item.copyAfter !== undefined) {
          copy = item.copyAfter;
          copier?.deliveredChunk(copy);
        } else {
          end = item.endLsn;
        }
        // While a copy runs, every position carries it (a restart goes on after its last delivered chunk).
        if (copy !== null || item.copyAfter !== undefined) {
          const position = new WalPosition(end, copy).toString();
          for (const e of item.events) e.position = position;
          for (const r of item.rejected) r.position = position;
        }
        append(events, item.events);
        append(rejected, item.rejected);
      }
      this.holdingSince = undefined;
      const position = new WalPosition(end, copy).toString();
      // Events keep their own transaction's end LSN (a valid checkpoint each); the chunk's is the last one.
      this.requests -= 1;
      this.lastEmitted = end;
      if (this.skippedEnd <= end) this.skippedEnd = 0n;
      countCaptured(this.context, events.filter((e) => !e.copied));
      this.controlFlow();
      this.reportHeld();
      const caughtUp = this.queue.length === 0 && this.pending.length === 0 && this.serverIdle && !copier?.active;
      this.subscriber.next({ events, rejected, position, caughtUp });
    }
    copier?.readNext(this.queued);
    this.scheduleDecode();
    if (this.queue.length === 0 && this.pending.length === 0 && this.requests > 0 && !copier?.active) this.context.idle?.();
  }

  /** Whether to hold a chunk that is not full back (holdChunk); if so, looks again after `holdMs`. */
  private holdPartial(): boolean {
    const holdMs = this.options.holdMs ?? HOLD_MS;
    const now = performance.now();
    this.holdingSince ??= now;
    const hold = holdChunk({
      full: this.queued >= this.options.readLimit,
      serverIdle: this.serverIdle,
      undecoded: this.pending.length > 0,
      sinceLastXLogData: now - this.lastXLogAt,
      sinceHeld: now - this.holdingSince,
      holdMs,
    });
    if (hold && !this.holdTimer) {
      this.holdTimer = setTimeout(() => {
        this.holdTimer = undefined;
        this.deliver();
      }, holdMs);
    }
    return hold;
  }

  /**
   * The flush position: the last committed one. When nothing is queued or in
   * flight, also what the server sent since (skipped transactions, other
   * databases' WAL), so an idle slot does not hold WAL forever.
   */
  private flushPosition(): bigint {
    let flush = this.flushed;
    const idle = this.queue.length === 0 && this.pending.length === 0 && !this.assembler?.open;
    if (idle && this.lastEmitted <= this.flushed && this.sentThrough > flush) flush = this.sentThrough;
    return flush;
  }

  private sendStatus(replyRequested = false): void {
    const client = this.client as unknown as { connection?: { sendCopyFromChunk(b: Buffer): void } } | undefined;
    if (!client?.connection || this.received === 0n) return;
    const flush = this.flushPosition();
    try {
      client.connection.sendCopyFromChunk(standbyStatus(this.received > flush ? this.received : flush, flush, flush, replyRequested));
    } catch {
      // The connection is going away; the reconnect reports it.
    }
  }

  private async ensurePublication(tables: string[]): Promise<void> {
    const name = this.options.publication;
    const [marker] = await this.query<{ exists: boolean }>(MARKER_EXISTS_SQL, []);
    const wanted = marker?.exists ? [...tables, ORIGIN_MARKER_TABLE] : tables;
    const [publication] = await this.query<{ all_tables: boolean; tables: string[] }>(PUBLICATION_SQL, [name]);
    const quoted = (list: string[]) => list.map((t) => quoteTable(qualify(t))).join(', ');
    if (!publication) {
      await this.query(`CREATE PUBLICATION ${quoteIdent(name)} FOR TABLE ${quoted(wanted)}`, []);
      this.context.log.info({ publication: name, tables: wanted }, 'publication created');
      return;
    }
    if (publication.all_tables) return;
    const missing = wanted.filter((t) => !publication.tables.includes(t));
    if (missing.length > 0) {
      await this.query(`ALTER PUBLICATION ${quoteIdent(name)} ADD TABLE ${quoted(missing)}`, []);
      this.context.log.info({ publication: name, tables: missing }, 'tables added to the publication');
    }
  }

  private async ensureSlot(): Promise<void> {
    const [slot] = await this.query<{ plugin: string }>(SLOT_SQL, [this.options.slot]);
    if (slot) {
      if (slot.plugin !== 'pgoutput') throw new ConfigError(`source.slot: slot ${this.options.slot} uses ${slot.plugin}, not pgoutput`);
      return;
    }
    try {
      await this.query(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [this.options.slot]);
      this.context.log.info({ slot: this.options.slot }, 'replication slot created');
    } catch (error) {
      if ((error as { context?: { code?: string } }).context?.code !== '42710') throw error; // created concurrently
    }
  }

  private sampleRetained(): void {
    const pool = this.pool;
    if (!pool) return;
    pool.query<{ bytes: number | null }>(RETAINED_SQL, [this.options.slot]).then(
      (result) => {
        const bytes = result.rows[0]?.bytes;
        if (bytes !== undefined && bytes !== null) {
          this.context.metrics.sourceRetainedBytes.set({ stream: this.context.stream, direction: this.context.direction }, Number(bytes));
        }
      },
      (error: Error) => this.context.log.debug({ err: error.message }, 'could not sample retained WAL'),
    );
  }

  private query<T>(sql: string, params: unknown[]): Promise<T[]> {
    return readRows<T>(this.pool, 'postgres-wal', this.context, this.options.retry, sql, params);
  }
}
