import { append } from '../core/arrays.js';
import { Subject, concatMap, defer, from, fromEvent, map, takeUntil, tap } from 'rxjs';
import type { ChangeEvent, RejectedChange, Row } from '../core/change-event.js';
import { keyString } from '../core/change-event.js';
import { ConfigError, TransientError, errorMessage, failureReason } from '../core/errors.js';
import { parentsFirst } from './table-order.js';
import { ParkedChanges, checkpointText, readCheckpointText } from './parked-changes.js';
import { TableMapping, type TargetTable } from '../core/mapping.js';
import { formatQualifiedName } from '../core/names.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics/metrics.js';
import { initStreamSeries } from '../metrics/metrics.js';
import type { Source } from '../cdc/source.js';
import type { CheckpointStore } from '../checkpoints/checkpoint-store.js';
import type { DeadLetterStore } from '../dead-letters/dead-letter-store.js';
import type { FileConflictLog } from '../dead-letters/file-conflict-log.js';
import type { StreamConfig } from '../config/schema.js';
import type { DeadLetter, Sink } from '../sinks/sink.js';
import { applyBatch, deadLetterFor, type FailedChange } from './apply-batch.js';
import type { StreamContext } from './context.js';
import type { BatchLog } from '../control/batch-log.js';
import { batchChunks, type Batch } from './operators/batch-chunks.js';
import { coalesce } from './operators/coalesce.js';
import { dropNoops } from './operators/drop-noops.js';
import { retryTransient } from './retry.js';
import { countByTableAndOp } from '../core/change-counts.js';
import { StreamHealth, type Part } from './stream-health.js';
import { checkWhere } from '../cdc/copy-filter.js';
import { CopyRequested, CopyRequests } from './copy-requests.js';

/** A batch mapped and ordered for the sink, waiting its turn. */
interface PreparedBatch {
  batch: Batch;
  kept: ChangeEvent[];
  noops: ChangeEvent[];
  failures: FailedChange[];
  /** What the sink applies: kept changes, last image per key, in dependency order. */
  changes: ChangeEvent[];
}

export type StreamState = 'starting' | 'running' | 'retrying' | 'stalled' | 'failed' | 'stopped';

export interface StreamStatus {
  name: string;
  direction: string;
  source: string;
  sink: string;
  state: StreamState;
  connected: boolean;
  position: string | null;
  applied: number;
  failed: number;
  lastError: string | null;
  problems: string[];
  lastAppliedAt: string | null;
  /** Tables whose copy of existing rows is not done at the last checkpoint (the first one being copied now). */
  copying: string[];
}

export interface StreamParts {
  config: StreamConfig;
  /** Key path of the stream in the configuration, for error messages (`streams[0]`). */
  path: string;
  source: Source;
  sink: Sink;
  /** A separate store, or null when the sink keeps checkpoints in its own transaction. */
  checkpoints: CheckpointStore | null;
  /** Where dead letters go when the sink does not store them itself (`storesDeadLetters` false). */
  deadLetters?: DeadLetterStore | null;
  /** Where the log entries of conflicts go that the sink reports without logging them itself. */
  conflictLog?: Pick<FileConflictLog, 'append'> | null;
  metrics: Metrics;
  log: Logger;
  /** Recent batches for `GET /api/sync/logs`. */
  batchLog?: BatchLog;
  /** `run --once`: stop (gracefully) as soon as the source reports it has nothing more to read. */
  once?: boolean;
}

/**
 * One configured direction: source → map → drop no-ops → order per key →
 * batch → sink (retry, isolate bad changes) → checkpoint. Runs until stopped;
 * after an unexpected failure it reopens source and sink and resumes from the
 * last checkpoint. Only a configuration error ends it.
 */
export class Stream {
  readonly name: string;
  private readonly abort = new AbortController();
  private readonly labels: { stream: string; direction: string };
  private readonly context: StreamContext;
  /** Connected parts, retries, lag and the idle sink's probe. */
  private readonly health: StreamHealth;
  /** The stream reached `running` once: a configuration error after that stops this stream, not the process at start. */
  private ranOnce = false;
  /** Ends the running pipeline with an error, so the stream reopens from its checkpoint (the process-level guard). */
  private interrupt: ((error: Error) => void) | null = null;
  /** Copies asked for while running (`requestSnapshot`), stored as the checkpoint between two pipelines. */
  private readonly copyRequests = new CopyRequests();
  /** The batch being applied, which a reopen waits for. */
  private applying: Promise<unknown> | null = null;
  private mappings = new Map<string, TableMapping>();
  private tableOrder: string[] = [];
  private state: StreamState = 'starting';
  private position: string | null = null;
  private readonly parked = new ParkedChanges();
  private applied = 0;
  private failed = 0;
  private lastError: string | null = null;
  /** Conditions the operator must resolve (a table stopped by a CDC cleanup gap); cleared on reopen. */
  private problems: string[] = [];
  private lastAppliedAt: Date | null = null;
  /** Reopens since the last committed batch: the backoff before the next one grows with them. */
  private failuresInRow = 0;
  /** Batches being applied now; `once` waits for them before stopping. */
  private inFlight = 0;
  private idleSeen = false;
  /** The position of the last chunk read: `once` stops when it is applied (a batch still forming is not in flight yet). */
  private lastRead: string | null = null;

  constructor(private readonly parts: StreamParts) {
    const { config, metrics } = parts;
    this.name = config.name;
    this.labels = { stream: config.name, direction: config.direction };
    const log = parts.log.child({ stream: config.name });
    this.health = new StreamHealth({
      labels: this.labels,
      metrics,
      log,
      retry: config.retry,
      timeoutMs: config.liveness.timeoutMs,
      sinkUrl: config.sink.url,
      sink: parts.sink,
      inFlight: () => this.inFlight,
      stopping: this.abort.signal,
      problem: (message) => (this.lastError = message),
    });
    this.context = {
      stream: config.name,
      direction: config.direction,
      log,
      metrics,
      stopping: this.abort.signal,
      retrying: (part, error, attempt) => this.health.retrying(part, error, attempt),
      reportProblem: (message) => {
        this.lastError = message;
        if (!this.problems.includes(message)) this.problems.push(message);
        log.error({ err: message }, 'stream problem');
      },
      idle: () => {
        this.health.idle();
        // run --once: the source read nothing new; stop once the last batch is committed.
        if (!parts.once) return;
        this.idleSeen = true;
        this.stopWhenDrained();
      },
      setConnected: (part, up) => this.health.setConnected(part, up),
    };
    initStreamSeries(metrics, config.name, config.direction, config.tables.map((t) => t.source));
  }

  get log(): Logger {
    return this.context.log;
  }

  /**
   * Runs until `stop()`. Rejects only with a ConfigError: the configuration
   * does not fit the databases (at start, or later: a password changed, the
   * database dropped); the stream is then `failed` and stays stopped.
   */
  async run(): Promise<void> {
    this.health.start();
    try {
      while (!this.abort.signal.aborted) {
        try {
          await this.open();
          await this.pump();
          this.failuresInRow = 0;
        } catch (error) {
          if (this.abort.signal.aborted) break;
          if (error instanceof CopyRequested) {
            await this.storeCopyRequests();
            continue;
          }
          if (error instanceof ConfigError) throw this.configError(error);
          const failures = (this.failuresInRow += 1);
          this.state = 'failed';
          this.lastError = errorMessage(error);
          this.log.error({ err: this.lastError, failures }, 'stream failed; reopening from the last checkpoint');
          // The batch in flight finishes (or fails) before its changes are read again.
          await this.applying?.catch(() => {});
          this.health.forgetRead();
          await sleep(Math.min(this.parts.config.retry.maxDelayMs, this.parts.config.retry.minDelayMs * 2 ** failures), this.abort.signal);
        }
      }
    } finally {
      this.copyRequests.dropAll(this.name);
      this.health.stop();
      await Promise.allSettled([this.parts.source.close(), this.parts.sink.close()]);
      this.context.setConnected('source', false);
      this.context.setConnected('sink', false);
      if (this.state !== 'failed' || this.abort.signal.aborted) this.state = 'stopped';
    }
  }

  /**
   * Replaces the stored checkpoint with `change(current)` (for `cdc-sync
   * snapshot`), once, without running the stream. Returns false when there
   * was nothing to change.
   */
  async rewriteCheckpoint(change: (position: string | null, source: Source) => string | null): Promise<boolean> {
    const { config, sink, source, checkpoints } = this.parts;
    try {
      await sink.open(this.context, config.tables);
      const current = readCheckpointText(checkpoints ? await checkpoints.load(this.name) : await sink.readCheckpoint(this.name));
      const position = change(current.position, source);
      if (position === null || position === current.position) return false;
      // Changes held for their parents stay held.
      const next = checkpointText(position, current.held);
      if (checkpoints) await checkpoints.save(this.name, next);
      else await sink.apply({ changes: [], deadLetters: [], checkpoint: { stream: this.name, position: next } });
      return true;
    } finally {
      await sink.close();
    }
  }

  /**
   * Copies `tables` (all when empty) again while the stream runs (`cdc-sync
   * snapshot`, the control API): the batch in flight is finished, the
   * copy's position is stored as the checkpoint, and the source goes on from
   * it, so a restart in between still makes the copy. Resolves once stored.
   */
  requestSnapshot(tables: string[], where?: string): Promise<void> {
    const { source, config } = this.parts;
    if (!source.requestSnapshot) throw new ConfigError(`stream ${this.name}: a ${config.source.type} source cannot copy its tables again`);
    const unknown = tables.filter((t) => !config.tables.some((c) => c.source === t));
    if (unknown.length > 0) throw new ConfigError(`--table: not a table of stream ${this.name}: ${unknown.join(', ')} (have: ${config.tables.map((t) => t.source).join(', ')})`);
    checkWhere(tables, where);
    // Refused now, not when the request is stored: a wrong condition must fail the command that gave it.
    source.requestSnapshot(this.position, tables, where);
    if (!this.interrupt) throw new TransientError(`stream ${this.name} is not running (${this.state}); ask again once it runs`);
    const stored = this.copyRequests.add({ tables, where });
    this.interrupt?.(new CopyRequested());
    return stored;
  }

  /** After the pipeline stopped for `requestSnapshot`: the last batch is in, the copy's position becomes the checkpoint. */
  private async storeCopyRequests(): Promise<void> {
    await this.applying?.catch(() => {});
    await this.copyRequests.storeAll(async (requests) => {
      const { source, sink, config } = this.parts;
      let position = this.position;
      for (const { tables, where } of requests) position = source.requestSnapshot!(position, tables, where);
      if (position !== null && position !== this.position) {
        const text = this.parked.checkpoint(position);
        const store = this.parts.checkpoints;
        if (store) await retryTransient(() => store.save(this.name, text), config.retry, this.retryHooks('sink'));
        else await retryTransient(() => sink.apply({ changes: [], deadLetters: [], checkpoint: { stream: this.name, position: text } }), config.retry, this.retryHooks('sink'));
        this.position = position;
      }
      this.log.info({ tables: requests.flatMap((r) => (r.tables.length ? r.tables : ['(all)'])) }, 'copy of existing rows requested');
    });
  }

  /**
   * Runs `work` with this stream's sink open and bound to its tables: the
   * running sink when the stream is connected, else opened just for `work`
   * (retry-failed without a running stream).
   */
  async withSink<T>(work: (sink: Sink) => Promise<T>): Promise<T> {
    if (this.health.sinkConnected) return work(this.parts.sink);
    try {
      await this.openSink();
      return await work(this.parts.sink);
    } finally {
      await this.parts.sink.close();
      this.context.setConnected('sink', false);
    }
  }

  /** The separate checkpoint store, or null when the sink keeps the checkpoint (`cdc-sync reset`). */
  get checkpointStore(): CheckpointStore | null {
    return this.parts.checkpoints;
  }

  /** Stop reading; the batch in flight is finished and its checkpoint saved. */
  stop(): void {
    this.abort.abort();
  }

  /** Whether the stream ever ran (a configuration error later stops only this stream). */
  get started(): boolean {
    return this.ranOnce;
  }

  /**
   * Ends the running pipeline as a failure: the batch in flight finishes,
   * then source and sink reopen from the checkpoint. For errors nothing
   * caught (the process-level guard): whatever state they left is dropped.
   */
  reopen(cause: unknown): void {
    this.interrupt?.(new TransientError(`reopened after an unexpected error: ${errorMessage(cause)}`, { context: { stream: this.name } }));
  }

  /**
   * A change pushed from outside (a Supabase Database Webhook) for one of
   * this stream's tables; false when the stream does not take it.
   */
  receive(change: { schema: string; table: string; op: ChangeEvent['op']; record: Row | null; oldRecord: Row | null }): boolean {
    const { source, config } = this.parts;
    if (!source.push) return false;
    const table = config.tables.find((t) => t.source === `${change.schema}.${change.table}` || (change.schema === 'public' && t.source === change.table));
    if (!table) return false;
    const image = change.record ?? change.oldRecord;
    if (!image) return false;
    source.push([
      {
        table: table.source,
        op: change.op,
        key: Object.fromEntries((table.key ?? ['id']).map((k) => [k, image[k] ?? null])),
        row: change.op === 'delete' ? null : change.record,
        before: change.oldRecord,
        position: '',
        commitTime: new Date(),
      },
    ]);
    return true;
  }

  /** Read now (queue-notify, trigger). */
  wake(): void {
    this.parts.source.wake();
  }

  status(): StreamStatus {
    return {
      name: this.name,
      direction: this.parts.config.direction,
      source: this.parts.config.source.type,
      sink: this.parts.config.sink.type,
      state: this.health.shownState(this.state),
      connected: this.health.connected,
      position: this.position,
      applied: this.applied,
      failed: this.failed,
      lastError: this.lastError,
      problems: [...this.problems],
      lastAppliedAt: this.lastAppliedAt?.toISOString() ?? null,
      copying: this.copying(),
    };
  }

  private copying(): string[] {
    if (this.position === null || !this.parts.source.copying) return [];
    try {
      return this.parts.source.copying(this.position);
    } catch {
      return []; // a position of another source type: the stream's own start says so
    }
  }

  private async openSink(): Promise<void> {
    const { config, sink } = this.parts;
    const targets = await retryTransient(() => sink.open(this.context, config.tables), config.retry, this.retryHooks('sink'));
    const mappings = this.mapTo(targets);
    this.mappings = new Map(mappings.map((m) => [m.source, m]));
    this.tableOrder = parentsFirst(mappings);
    sink.bind(mappings);
  }

  /** The configured tables mapped onto the targets the sink found (a target left out is named from now on). */
  private mapTo(targets: TargetTable[]): TableMapping[] {
    this.nameFoundTargets(targets);
    const warned = new Set<string>();
    const warn = (message: string, context: Record<string, string>) => {
      const id = `${message}${JSON.stringify(context)}`;
      if (!warned.has(id)) this.log.warn(context, message);
      warned.add(id);
    };
    return this.parts.config.tables.map((t, i) => new TableMapping(t, targets[i]!, `tables[${i}]`, warn));
  }

  private async open(): Promise<void> {
    const { config, sink, source } = this.parts;
    this.problems = [];
    await this.openSink();
    source.order?.(this.tableOrder);
    await retryTransient(() => source.open(this.context), config.retry, this.retryHooks('source'));
    const stored = readCheckpointText(
      await retryTransient(
        () => (this.parts.checkpoints ? this.parts.checkpoints.load(this.name) : sink.readCheckpoint(this.name)),
        config.retry,
        this.retryHooks('sink'),
      ),
    );
    this.position = stored.position;
    this.lastRead = this.position;
    this.parked.restore(stored.held);
    if (this.position !== null) source.checkpointed?.(this.position);
    this.state = 'running';
    this.ranOnce = true;
    this.log.info({ position: this.position }, 'stream started');
  }

  /**
   * Reads one batch ahead: once a batch has started being applied, the next is
   * requested, read and prepared (mapped, ordered) while the sink works, so
   * reading and writing overlap. At most one prepared batch waits; batches
   * are applied and checkpointed strictly in order.
   */
  private pump(): Promise<void> {
    const { config, source } = this.parts;
    const demand = new Subject<void>();
    return new Promise<void>((resolve, reject) => {
      const subscription = source
        .chunks(this.position, demand)
        .pipe(
          takeUntil(fromEvent(this.abort.signal, 'abort')),
          tap((chunk) => (this.lastRead = chunk.position)),
          batchChunks({ maxSize: config.batch.maxSize, maxWaitMs: config.batch.maxWaitMs, onAbsorbed: () => demand.next() }),
          map((batch) => this.prepare(batch)),
          concatMap((prepared) =>
            defer(() => {
              // The next batch is read and prepared while the sink's database works on this one: once the sink says its
              // largest statement is sent (onSent), else once this batch's statements are under way; at the latest when
              // this batch is done.
              // (Never inside the sink's call: the demand is answered on the next turn of the event loop.)
              let asked = false;
              const next = () => {
                if (asked) return;
                asked = true;
                setImmediate(() => demand.next());
              };
              const applied = this.process(prepared, next).finally(next);
              this.applying = applied;
              if (!this.parts.sink.signalsSent) next();
              return from(applied);
            }),
          ),
        )
        .subscribe({
          error: (error: unknown) => {
            this.interrupt = null;
            reject(error);
          },
          complete: () => {
            this.interrupt = null;
            resolve();
          },
        });
      this.interrupt = (error) => {
        this.interrupt = null;
        subscription.unsubscribe();
        reject(error);
      };
    });
  }

  private async process(prepared: PreparedBatch, onSent: () => void): Promise<void> {
    this.inFlight += 1;
    const started = performance.now();
    try {
      const failed = await this.applyOne(prepared, started, onSent);
      this.logBatch(prepared.batch, failed, started);
    } catch (error) {
      this.logBatch(prepared.batch, [], started, errorMessage(error));
      throw error;
    } finally {
      this.inFlight -= 1;
      this.stopWhenDrained();
    }
  }

  /** run --once: the source had nothing more, and everything it handed over is applied. */
  private stopWhenDrained(): void {
    if (this.idleSeen && this.inFlight === 0 && this.position === this.lastRead) this.stop();
  }

  private logBatch(batch: Batch, failed: { table: string }[], started: number, error?: string): void {
    const log = this.parts.batchLog;
    if (!log) return;
    const tables: Record<string, { applied: number; failed: number }> = {};
    const entry = (table: string) => (tables[table] ??= { applied: 0, failed: 0 });
    for (const f of failed) entry(f.table).failed += 1;
    // Events of a failed batch were not applied; otherwise every event that did not fail was.
    for (const e of batch.events) if (!error) entry(e.table).applied += 1;
    for (const t of Object.values(tables)) t.applied = Math.max(0, t.applied - t.failed);
    log.add({
      time: new Date().toISOString(),
      stream: this.name,
      tables,
      durationMs: Math.round(performance.now() - started),
      ...(error ? { error } : {}),
    });
  }

  /** Maps a batch to target names and types and orders it for the sink; changes that cannot be mapped are set aside. */
  private prepare(batch: Batch): PreparedBatch {
    const mapped: ChangeEvent[] = [];
    const failures: FailedChange[] = [];
    for (const event of batch.events) {
      try {
        mapped.push(this.mappings.get(event.table)!.mapEvent(event));
      } catch (error) {
        failures.push({ event, error: error as Error, reason: failureReason(error) });
      }
    }
    const { kept, noops } = dropNoops(mapped);
    const changes = coalesce(kept, this.tableOrder);
    this.parts.sink.prepare?.(changes);
    this.health.read(batch.events.find((e) => !e.copied)?.commitTime);
    return { batch, kept, noops, failures, changes };
  }

  /** Applies one batch; returns the changes that went to the dead letter (source table names). */
  private async applyOne({ batch, kept, noops, failures, changes }: PreparedBatch, started: number, onSent: () => void): Promise<{ table: string }[]> {
    const { config, sink, metrics } = this.parts;
    // Changes held back for a missing parent go again, in front: this batch's newer changes of a key supersede them.
    const retried = this.parked.events();
    if (retried.length > 0) changes = coalesce([...retried, ...changes], this.tableOrder);
    // Queue sources mark rows done by the batch's position (committed): nothing may be held back past it.
    const holds = !this.parts.source.committed;
    const settle = (failed: FailedChange[]) => {
      const letters = holds ? this.parked.settle(failed, { caughtUp: batch.caughtUp ?? false }) : failed;
      return { letters, checkpoint: { stream: this.name, position: this.parked.checkpoint(batch.position) } };
    };
    for (const e of noops) metrics.suppressed.inc({ ...this.labels, table: e.table, reason: 'no-op' });
    const deadLetters: DeadLetter[] = [
      ...batch.rejected.map((r) => this.rejectedLetter(r)),
      ...failures.map((f) => deadLetterFor(this.name, f)),
    ];
    const checkpoint = this.parts.checkpoints ? undefined : { stream: this.name, position: batch.position };
    const letterStore = this.parts.deadLetters;
    const outcome = await applyBatch(
      sink,
      { changes, deadLetters: letterStore ? [] : deadLetters, ...(checkpoint ? { checkpoint } : {}), onSent },
      this.name,
      config.retry,
      this.retryHooks('sink'),
      settle,
    );
    // Applied whole: nothing is held any more.
    if (outcome.failed.length === 0 && this.parked.size > 0 && outcome.applied.length === changes.length) settle([]);
    const stored = this.parked.checkpoint(batch.position);
    // A sink without transactions cannot keep dead letters: they are stored before the checkpoint moves past them.
    if (letterStore) await letterStore.append([...deadLetters, ...outcome.failed.map((f) => deadLetterFor(this.name, f))]);
    await this.parts.conflictLog?.append(outcome.conflicts.flatMap((c) => (c.entry ? [c.entry] : [])));
    if (this.parts.checkpoints) {
      const store = this.parts.checkpoints;
      await retryTransient(() => store.save(this.name, stored), config.retry, this.retryHooks('sink'));
    }
    append(failures, outcome.failed);
    if (outcome.superseded > 0) {
      this.log.info({ deadLetters: outcome.superseded }, 'dead letters superseded: a later change of their key is applied, so retry-failed will not write the older one');
    }
    for (const conflict of outcome.conflicts) {
      metrics.conflicts.inc({ ...this.labels, table: conflict.table });
      this.log.warn({ table: conflict.table, key: conflict.key }, 'conflict: the target row is newer; the incoming change lost (newer-wins)');
    }
    if (this.parts.source.committed) {
      const failed = [
        ...failures.map((f) => ({ sourceRef: f.event.sourceRef, table: f.event.table, error: errorMessage(f.error) })),
        ...batch.rejected.map((r) => ({ sourceRef: r.sourceRef, table: r.table, error: errorMessage(r.error) })),
      ];
      const source = this.parts.source;
      await retryTransient(() => source.committed!(batch.position, failed), config.retry, this.retryHooks('source'));
    }
    this.count(retried.length > 0 ? [...retried.filter((e) => !this.parked.holds(e)), ...kept] : kept, failures, batch.rejected);
    metrics.batchDuration.observe(this.labels, (performance.now() - started) / 1000);
    this.health.applied(batch.events.findLast((e) => !e.copied)?.commitTime, batch.caughtUp ?? false);
    this.lastAppliedAt = new Date();
    metrics.lastApplied.set(this.labels, this.lastAppliedAt.getTime() / 1000);
    this.position = batch.position;
    this.parts.source.checkpointed?.(batch.position);
    this.state = 'running';
    // Working again: the next failure waits minDelayMs, not what failures long ago had built up to.
    this.failuresInRow = 0;
    return [...failures.map((f) => ({ table: f.event.table })), ...batch.rejected.map((r) => ({ table: r.table }))];
  }

  private count(kept: ChangeEvent[], failures: FailedChange[], rejected: RejectedChange[]): void {
    const { metrics } = this.parts;
    // Per-change work here is per-change cost of the whole stream: key strings
    // only when something failed, and one counter increment per table and op.
    const failedKeys = failures.length > 0 ? new Set(failures.map((f) => `${f.event.table}\u0000${keyString(f.event.key)}`)) : null;
    const skip = failedKeys ? (e: ChangeEvent) => failedKeys.has(`${e.table}\u0000${keyString(e.key)}`) : undefined;
    for (const { table, op, count } of countByTableAndOp(kept, skip)) {
      metrics.applied.inc({ ...this.labels, table, op }, count);
      this.applied += count;
    }
    for (const f of failures) {
      metrics.failed.inc({ ...this.labels, table: f.event.table, reason: f.reason });
      this.log.warn({ table: f.event.table, position: f.event.position, reason: f.reason, err: errorMessage(f.error) }, 'change dead-lettered');
    }
    for (const r of rejected) {
      metrics.failed.inc({ ...this.labels, table: r.table, reason: failureReason(r.error) });
      this.log.warn({ table: r.table, position: r.position, err: errorMessage(r.error) }, 'unreadable change dead-lettered');
    }
    this.failed += failures.length + rejected.length;
    if (failures.length + rejected.length > 0) this.lastError = errorMessage((failures[0]?.error ?? rejected[0]?.error)!);
  }

  private rejectedLetter(r: RejectedChange): DeadLetter {
    return {
      stream: this.name,
      table: r.table,
      key: r.key,
      payload: r.payload,
      error: errorMessage(r.error),
      reason: failureReason(r.error),
      position: r.position,
    };
  }

  private retryHooks(part: Part) {
    return { signal: this.abort.signal, onRetry: (error: Error, attempt: number) => this.health.retrying(part, error, attempt) };
  }

  /**
   * `cdc-sync validate`: the checks a start makes (the tables and columns of
   * both databases, the mapping between them, the source's set-up), without
   * running the stream: nothing is created, written or subscribed to.
   */
  async check(): Promise<void> {
    const { config, sink, source } = this.parts;
    const context: StreamContext = { ...this.context, checkOnly: true };
    try {
      source.order?.(parentsFirst(this.mapTo(await sink.open(context, config.tables))));
      await source.open(context);
    } catch (error) {
      throw error instanceof ConfigError ? this.configError(error) : error;
    } finally {
      await Promise.allSettled([source.close(), sink.close()]);
    }
  }

  /** Targets the configuration left out, as the sink found them (matchTarget): named from now on, and said once. */
  private nameFoundTargets(targets: TargetTable[]): void {
    for (const [i, table] of this.parts.config.tables.entries()) {
      if (table.target) continue;
      table.target = formatQualifiedName(targets[i]!.name);
      this.log.info({ table: table.source, target: table.target }, `tables[${i}].target left out: the sink's table named like the source's is used`);
    }
  }

  private configError(error: ConfigError): ConfigError {
    this.state = 'failed';
    this.lastError = error.message;
    this.context.setConnected('source', false);
    this.log.error({ err: error.message }, 'configuration error: the stream stops');
    // Messages that start with a key of the stream (`tables[0].source: …`, `sink.url: …`) get the stream's path.
    const relative = /^(tables\[|source\.|sink\.)/.test(error.message);
    return relative ? new ConfigError(`${this.parts.path}.${error.message}`, { cause: error, context: error.context }) : error;
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done);
  });
}
