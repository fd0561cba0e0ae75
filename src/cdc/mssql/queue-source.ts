import { inOrder } from '../../core/arrays.js';
import { ReadGeneration } from '../read-generation.js';
import { hostname } from 'node:os';
import { Observable, Subject } from 'rxjs';
import type { ChangeEvent, SourceChunk } from '../../core/change-event.js';
import { ConfigError } from '../../core/errors.js';
import type { TableConfig } from '../../core/mapping.js';
import type { StreamContext } from '../../streams/context.js';
import type { RetryPolicy } from '../../streams/retry.js';
import { IdlePoll } from '../idle-wait.js';
import { readWithRetry } from '../read-with-retry.js';
import { countCaptured } from '../count-captured.js';
import type { Source } from '../source.js';
import { loadMssqlDriver, type MssqlClient, type MssqlConnect, openClient } from '../../db/mssql/client.js';
import { MSSQL_ERRORS } from '../../db/mssql/errors.js';
import { ClaimLedger } from './queue-ledger.js';
import { QueuePosition } from './queue-position.js';
import { idList, pendingRecordSql, type QueueRow, type QueueShape, queueStatements, type QueueStatements, tableNameParams } from './queue-queries.js';
import { isLocalTimeDefault } from '../../db/mssql/columns.js';
import { type QueuedTable, QueueRowReader } from './queue-rows.js';
import { TableSnapshot } from './snapshot.js';
import { checkQueueTable, describeQueuedTable } from './queue-check.js';
import { QueueUpkeep } from './queue-upkeep.js';

export interface MssqlQueueSourceOptions {
  url: string;
  tables: TableConfig[];
  readLimit: number;
  pollIntervalMs: number;
  idleIntervalMs: number;
  snapshot: 'initial' | 'never';
  queueTable: string;
  /** A row claimed this many times without being marked is Failed instead of applied again. */
  maxAttempts: number;
  leaseSeconds: number;
  /** Synced rows older than this are deleted. */
  retentionHours: number;
  retry: RetryPolicy;
  /** Who holds claimed rows. Default `<host>/<stream>`: a restarted process takes its rows back at once. */
  owner?: string;
  purgeIntervalMs?: number;
  pendingIntervalMs?: number;
  /** The driver; default the configured one (`loadMssqlDriver`). Tests hand in a stand-in. */
  connect?: MssqlConnect;
}

/**
 * Reads the trigger-fed SyncQueue of the older scripts. Each read claims the
 * next Pending rows in QueueID order with a lease (see queue-queries.ts) and
 * hands them over as one chunk; `committed` marks them Synced, or Failed with
 * the error. Rows of a reader that died are claimed again after the lease;
 * a row claimed more than `maxAttempts` times is Failed instead.
 * A stream without a checkpoint first copies its tables (keyset pages).
 */
export class MssqlQueueSource implements Source {
  /** Rows are marked done (or Failed) in SyncQueue by `committed`. */
  readonly marksDone = true;
  private client: MssqlClient | undefined;
  private context!: StreamContext;
  private readonly wakeUp = new Subject<void>();
  private woken = false;
  private statements: QueueStatements | undefined;
  private shape: QueueShape = { names: 'nvarchar', localTime: false };
  private reader!: QueueRowReader;
  private snapshots = new Map<string, TableSnapshot>();
  private tableOrder: string[] = [];
  private position = QueuePosition.start;
  /** QueueIDs the stored checkpoint covers, marked Synced before the first read (see markApplied). */
  private unmarked: number[] = [];
  private readonly ledger = new ClaimLedger();
  private owner = '';
  private opened = 0;
  private lastPending = 0;
  private pendingKnown = -1;
  private renewTimer: NodeJS.Timeout | undefined;
  private readonly generations = new ReadGeneration();
  private readonly upkeep: QueueUpkeep;

  constructor(private readonly options: MssqlQueueSourceOptions) {
    this.upkeep = new QueueUpkeep(() => this.context, () => this.client, () => this.statements, (run) => this.query(run), options);
  }

  async open(context: StreamContext): Promise<void> {
    this.context = context;
    this.owner = this.options.owner ?? `${hostname()}/${context.stream}`;
    const connect = this.options.connect ?? (await loadMssqlDriver());
    const client = (this.client ??= await openClient(connect, this.options.url, 'source.url'));
    const base = queueStatements(this.options.queueTable, 0);
    const found = await checkQueueTable(() => client, (run) => this.query(run), this.options.queueTable, base.check);
    const tables: QueuedTable[] = [];
    for (const [i, table] of this.options.tables.entries()) {
      tables.push(await describeQueuedTable(() => this.client!, (run) => this.query(run), base.tableInfo, table, `tables[${i}]`, context));
    }
    this.reader = new QueueRowReader(tables, this.options.maxAttempts, (message, ctx) => context.log.warn(ctx, message));
    this.shape = { names: found.table_name_type === 'varchar' ? 'varchar' : 'nvarchar', localTime: isLocalTimeDefault(found.created_at_default ?? null) };
    this.statements = queueStatements(this.options.queueTable, this.reader.names.length, this.shape);
    this.snapshots = new Map(tables.map((t) => [t.source, this.tableSnapshot(client, t)]));
    // Rows this reader still holds: a previous life of the process died with
    // them, or the stream failed and reopens (then they wait a little, as any
    // transient failure does).
    const { minDelayMs, maxDelayMs } = this.options.retry;
    const delay = this.opened === 0 ? 0 : Math.min(maxDelayMs, minDelayMs * 2 ** Math.min(this.opened, 20));
    await this.query(() => client.query(this.statements!.release, this.releaseParams(delay)));
    this.opened += 1;
    this.ledger.clear();
    context.setConnected('source', true);
  }

  chunks(from: string | null, demand: Observable<void>): Observable<SourceChunk> {
    clearInterval(this.renewTimer);
    this.renewTimer = setInterval(() => void this.upkeep.renew(this.ledger.ids(), this.owner), (this.options.leaseSeconds * 1000) / 3);
    this.renewTimer.unref();
    return this.generations.chunks(
      demand,
      () => {
        try {
          const stored = from === null ? this.initialPosition() : QueuePosition.parse(from);
          this.unmarked = [...stored.applied];
          this.position = stored.covering([]);
        } catch (error) {
          throw new ConfigError(`the checkpoint of stream ${this.context.stream} is not an mssql-queue position (was source.type changed?): ${(error as Error).message}`);
        }
      },
      (stale, stop) => this.nextChunk(stale, stop),
    );
  }

  wake(): void {
    this.woken = true;
    this.wakeUp.next();
  }

  /** Position that makes the next run copy `tables` (all when empty) before it goes on with the queue. */
  requestSnapshot(position: string | null, tables: string[], where?: string): string | null {
    let next = position === null ? QueuePosition.start : QueuePosition.parse(position);
    for (const table of inOrder(tables.length > 0 ? tables : this.options.tables.map((t) => t.source), this.tableOrder)) {
      if (!this.options.tables.some((t) => t.source === table)) throw new ConfigError(`--table: ${table} is not a table of this stream`);
      next = next.withSnapshot(table, null, where);
    }
    return next.toString();
  }

  copying(position: string): string[] {
    return Object.keys(QueuePosition.parse(position).snapshot);
  }

  async committed(position: string, failed: { sourceRef: string | undefined; table: string; error: string }[]): Promise<void> {
    const settlement = this.ledger.settle(position, failed);
    if (!settlement || !this.client || !this.statements) return;
    const { markSynced, markFailed } = this.statements;
    const ids = (list: number[]) => ({ type: 'nvarchar-max' as const, value: idList(list) });
    if (settlement.synced.length > 0 || settlement.failed.size > 0) {
      await this.client.transaction(async (tx) => {
        if (settlement.synced.length > 0) await tx.query(markSynced, { ids: ids(settlement.synced) });
        for (const [error, list] of settlement.failed) await tx.query(markFailed, { ids: ids(list), error: { type: 'nvarchar-max', value: error } });
      });
    }
    // Only now: a retried call (the stream retries transient errors) finds its chunks again.
    this.ledger.drop(settlement.upto);
  }

  async close(): Promise<void> {
    clearInterval(this.renewTimer);
    const client = this.client;
    this.client = undefined;
    // Claimed but never handed over (the stream stopped mid-read): back to the queue now, not after the lease.
    if (client && this.statements) await client.query(this.statements.release, this.releaseParams(0)).catch(() => undefined);
    await client?.close();
  }

  /** A copy that leaves out the rows whose record still has a Pending queue row: the queue brings them. */
  private tableSnapshot(client: MssqlClient, table: QueuedTable): TableSnapshot {
    const names = this.reader.namesOf(table.source);
    const changed = { sql: pendingRecordSql(this.options.queueTable, table.key, names.length), params: tableNameParams(names, this.shape.names, 'n') };
    return new TableSnapshot(client, table.source, table.key, changed);
  }

  /**
   * Rows of a copy are not queue rows: a child copied before its parent could
   * not be held back for it (a queue source's batches are marked done), so
   * the copy goes parents first.
   */
  order(tables: string[]): void {
    this.tableOrder = tables;
  }

  private initialPosition(): QueuePosition {
    if (this.options.snapshot === 'never') return QueuePosition.start;
    return inOrder(this.options.tables.map((t) => t.source), this.tableOrder).reduce((p, table) => p.withSnapshot(table, null), QueuePosition.start);
  }

  /** Reads until there is something to hand over; waits (adaptively) while the queue is empty. */
  private async nextChunk(stale: () => boolean, stop: AbortSignal): Promise<SourceChunk | null> {
    const idle = new IdlePoll(this.options, this.wakeUp);
    for (;;) {
      if (stale()) return null;
      if (this.upkeep.purgeDue) await this.upkeep.purge();
      if (this.unmarked.length > 0) await this.markApplied();
      const chunk = this.position.snapping ? await this.snapshotChunk() : await this.claimChunk();
      if (chunk) return chunk;
      if (this.woken) continue; // a notification came during the read: read again now
      if (!(await idle.wait(this.context, stop))) return null;
    }
  }

  private async snapshotChunk(): Promise<SourceChunk> {
    const table = Object.keys(this.position.snapshot)[0]!;
    const snapshot = this.snapshots.get(table);
    const after = this.position.snapshot[table] ?? null;
    let events: ChangeEvent[] = [];
    if (snapshot) {
      if (after === null) this.context.log.info({ table }, 'snapshot started');
      const page = await this.query(() => snapshot.next(after, this.options.readLimit, {}, this.position.where[table]));
      const done = page.read < this.options.readLimit;
      this.position = this.position.withSnapshot(table, done ? undefined : page.last).next();
      snapshot.counted(this.context, page, done);
      if (done) this.context.log.info({ table }, 'snapshot finished');
      events = snapshot.toEvents(page.rows, this.position.toString(), table);
    } else {
      this.position = this.position.withSnapshot(table, undefined).next(); // no longer configured
    }
    return this.emit({ events, rejected: [], position: this.position.toString(), caughtUp: false }, new Map());
  }

  private async claimChunk(): Promise<SourceChunk | null> {
    this.woken = false;
    const limit = this.options.readLimit;
    const claimed = await this.query(() =>
      this.client!.query<QueueRow>(this.statements!.claim, {
        limit: { type: 'int', value: limit },
        owner: { type: 'nvarchar', value: this.owner },
        lease: { type: 'int', value: this.options.leaseSeconds },
        ...tableNameParams(this.reader.names, this.shape.names),
      }),
    );
    await this.reportPending(claimed.length);
    if (claimed.length === 0) return null;
    this.position = this.position.next();
    const position = this.position.toString();
    const { events, rejected, rows } = this.reader.toChanges(claimed, position, this.context.stream);
    return this.emit({ events, rejected, position, caughtUp: claimed.length < limit }, rows);
  }

  /**
   * Rows the stored checkpoint covers but a process that died did not mark:
   * applied with it, so Synced now (a dead-lettered one too: its letter is
   * in the sink). Claimed again, they would bring back older images.
   */
  private async markApplied(): Promise<void> {
    const ids = this.unmarked;
    await this.query(() => this.client!.query(this.statements!.markSynced, { ids: { type: 'nvarchar-max', value: idList(ids) } }));
    this.context.log.info({ rows: ids.length }, 'queue rows the checkpoint covers marked Synced (the process stopped before marking them)');
    this.unmarked = [];
  }

  private emit(chunk: SourceChunk, rows: Map<number, string | null>): SourceChunk {
    const covered = [...this.ledger.ids(), ...rows.keys()];
    if (covered.length > 0) {
      // Positions stay unique by seq; the ledger knows the chunk by the text handed over.
      chunk = { ...chunk, position: QueuePosition.parse(chunk.position).covering(covered).toString() };
      for (const e of chunk.events) e.position = chunk.position;
      for (const r of chunk.rejected) r.position = chunk.position;
    }
    this.ledger.add(chunk.position, rows);
    countCaptured(this.context, chunk.events);
    return chunk;
  }

  /** Queue depth for `pending_events`: throttled, and not at all while idle with an empty queue. */
  private async reportPending(claimed: number): Promise<void> {
    if (claimed === 0 && this.pendingKnown === 0) return;
    if (Date.now() - this.lastPending < (this.options.pendingIntervalMs ?? 5000)) return;
    this.lastPending = Date.now();
    const [row] = await this.query(() => this.client!.query<{ pending: number }>(this.statements!.pending, tableNameParams(this.reader.names, this.shape.names)));
    this.pendingKnown = row?.pending ?? 0;
    const labels = { stream: this.context.stream, direction: this.context.direction };
    this.context.metrics.pending.set(labels, this.pendingKnown);
    if (this.pendingKnown === 0) this.context.metrics.lag.set(labels, 0);
  }

  private releaseParams(delayMs: number) {
    return { owner: { type: 'nvarchar' as const, value: this.owner }, delay_ms: { type: 'int' as const, value: delayMs } };
  }

  private query<T>(run: () => Promise<T>): Promise<T> {
    return readWithRetry(this.context, this.options.retry, MSSQL_ERRORS, run);
  }
}
