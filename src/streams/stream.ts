import { Subject, concatMap, defer, from, fromEvent, map, takeUntil, tap } from 'rxjs';
import type { Source } from '../cdc/source.js';
import type { CheckpointStore } from '../checkpoints/checkpoint-store.js';
import { ConfigError, TransientError, errorMessage, isTransient } from '../core/errors.js';
import type { Logger } from '../log.js';
import { initStreamSeries } from '../metrics/metrics.js';
import type { Sink } from '../sinks/sink.js';
import { applyStep, type ApplyStepContext } from './apply-step.js';
import { askOnce } from './ask-once.js';
import { logBatch } from './batch-log-entry.js';
import { checkStream } from './check-stream.js';
import type { StreamContext } from './context.js';
import { CopyRequested, CopyRequests, checkCopyRequest } from './copy-requests.js';
import { Drain } from './drain.js';
import { batchChunks, type Batch } from './operators/batch-chunks.js';
import { ParkedChanges } from './parked-changes.js';
import { prepareBatch, type PreparedBatch } from './prepare-batch.js';
import { pushChange, type PushedChange } from './pushed-change.js';
import { retryTransient } from './retry.js';
import { runUntilDone } from './run-until-done.js';
import { SinkTables } from './sink-tables.js';
import { sleep } from './sleep.js';
import { loadCheckpoint, rewriteCheckpoint, saveCheckpoint } from './stream-checkpoint.js';
import { streamContext, streamHealth } from './stream-context.js';
import type { StreamHealth } from './stream-health.js';
import type { StreamParts } from './stream-parts.js';
import { StatusCounters, streamStatus, type StreamState, type StreamStatus } from './stream-status.js';

/**
 * One configured direction: source → map → drop no-ops → order per key →
 * batch → sink (retry, isolate bad changes) → checkpoint. Runs until stopped;
 * after an unexpected failure it reopens source and sink and resumes from the
 * last checkpoint. Only a configuration error ends it.
 */
export class Stream {
  readonly name: string;
  private readonly abort = new AbortController();
  private readonly context: StreamContext;
  /** Connected parts, retries, lag and the idle sink's probe. */
  private readonly health: StreamHealth;
  /** What applying a batch works with (apply-step.ts). */
  private readonly step: ApplyStepContext;
  /** The stream reached `running` once: a configuration error after that stops this stream, not the process at start. */
  private ranOnce = false;
  /** Ends the running pipeline with an error, so the stream reopens from its checkpoint (the process-level guard). */
  private interrupt: ((error: Error) => void) | null = null;
  /** Copies asked for while running (`requestSnapshot`), stored as the checkpoint between two pipelines. */
  private readonly copyRequests = new CopyRequests();
  /** The batch being applied, which a reopen waits for. */
  private applying: Promise<unknown> | null = null;
  /** The sink's tables: their mappings and order. */
  private readonly tables: SinkTables;
  private state: StreamState = 'starting';
  private position: string | null = null;
  private readonly parked = new ParkedChanges();
  private readonly counters = new StatusCounters();
  /** Reopens since the last committed batch: the backoff before the next one grows with them. */
  private failuresInRow = 0;
  /** Batches read and not applied yet: `run --once` stops when there are none. */
  private readonly drain = new Drain(() => this.stop());

  constructor(private readonly parts: StreamParts) {
    const { config, metrics } = parts;
    this.name = config.name;
    const labels = { stream: config.name, direction: config.direction };
    const log = parts.log.child({ stream: config.name });
    this.health = streamHealth(parts, labels, log, this.abort.signal, this.counters, () => this.drain.inFlight);
    this.context = streamContext(parts, log, this.abort.signal, this.health, this.counters, () => {
      this.health.idle();
      // run --once: the source read nothing new; stop once the last batch is committed.
      if (!parts.once) return;
      this.drain.idle(this.position);
    });
    this.tables = new SinkTables(parts, this.context, this.health);
    const { parked, health, counters } = this;
    this.step = { name: this.name, labels, parts, parked, tableOrder: () => this.tables.order, log, health, counters, advance: (position) => this.advance(position) };
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
          this.counters.lastError = errorMessage(error);
          this.log.error({ err: this.counters.lastError, failures }, 'stream failed; reopening from the last checkpoint');
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

  private async open(): Promise<void> {
    const { config, source } = this.parts;
    this.counters.problems = [];
    // The sink and the source open at once: a start waits for the slower of the two, not for both. When one fails,
    // the other stops retrying and is waited for, so that the next attempt never overlaps it.
    const attempt = new AbortController();
    const hooks = (part: 'source' | 'sink') => {
      const stream = this.health.retryHooks(part);
      return { ...stream, signal: stream.signal ? AbortSignal.any([stream.signal, attempt.signal]) : attempt.signal };
    };
    const stopped = new Error('the other side of the stream failed to open');
    let cause: unknown;
    const failed = (error: unknown): never => {
      if (!attempt.signal.aborted) {
        cause = error;
        attempt.abort(stopped);
      }
      throw error;
    };
    const [sinkSide, sourceSide] = await Promise.allSettled([
      this.tables
        .open(hooks('sink'))
        .then(() => loadCheckpoint(this.parts, hooks('sink')))
        .catch(failed),
      retryTransient(() => source.open(this.context), config.retry, hooks('source')).catch(failed),
    ]);
    if (sinkSide.status === 'rejected' || sourceSide.status === 'rejected') {
      // Which side fails first is a race; what is reported must not be. A permanent error is reported before a
      // transient one, and the sink's before the source's, as when they opened one after the other.
      const errors = [sinkSide, sourceSide].flatMap((side) => (side.status === 'rejected' && side.reason !== stopped ? [side.reason] : []));
      throw errors.find((error) => !isTransient(error)) ?? cause;
    }
    source.order?.(this.tables.order);
    source.textRows?.([...this.tables.mappings.values()].filter((m) => m.target.textRows).map((m) => m.source));
    const stored = sinkSide.value;
    this.position = stored.position;
    this.drain.lastRead = this.position;
    this.parked.restore(stored.held);
    source.holding?.(this.parked.size);
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
    const pipeline = () =>
      source.chunks(this.position, demand).pipe(
        takeUntil(fromEvent(this.abort.signal, 'abort')),
        tap((chunk) => (this.drain.lastRead = chunk.position)),
        batchChunks({ maxSize: config.batch.maxSize, maxWaitMs: config.batch.maxWaitMs, onAbsorbed: () => demand.next() }),
        map((batch) => this.prepare(batch)),
        concatMap((prepared) =>
          defer(() => {
            // The next batch is read and prepared while the sink's database works on this one: once the sink says its
            // largest statement is sent (onSent), else once this batch's statements are under way; at the latest when
            // this batch is done.
            const next = askOnce(demand);
            const applied = this.process(prepared, next).finally(next);
            this.applying = applied;
            if (!this.parts.sink.signalsSent) next();
            return from(applied);
          }),
        ),
      );
    return runUntilDone(pipeline, (interrupt) => (this.interrupt = interrupt));
  }

  private prepare(batch: Batch): PreparedBatch {
    const prepared = prepareBatch(batch, this.tables.mappings, this.tables.order);
    this.parts.sink.prepare?.(prepared.changes);
    this.health.read(batch.events.find((e) => !e.copied)?.commitTime);
    return prepared;
  }

  private async process(prepared: PreparedBatch, onSent: () => void): Promise<void> {
    this.drain.inFlight += 1;
    const started = performance.now();
    try {
      const failed = await applyStep(this.step, prepared, started, onSent);
      logBatch(this.parts.batchLog, this.name, prepared.batch, failed, started);
    } catch (error) {
      logBatch(this.parts.batchLog, this.name, prepared.batch, [], started, errorMessage(error));
      throw error;
    } finally {
      this.drain.inFlight -= 1;
      this.drain.stopWhenDrained(this.position);
    }
  }

  /** A batch is applied and stored up to `position`. */
  private advance(position: string): void {
    this.position = position;
    this.parts.source.checkpointed?.(position);
    this.state = 'running';
    // Working again: the next failure waits minDelayMs, not what failures long ago had built up to.
    this.failuresInRow = 0;
  }

  /** After the pipeline stopped for `requestSnapshot`: the last batch is in, the copy's position becomes the checkpoint. */
  private async storeCopyRequests(): Promise<void> {
    await this.applying?.catch(() => {});
    await this.copyRequests.storeAll(async (requests) => {
      let position = this.position;
      for (const { tables, where } of requests) position = this.parts.source.requestSnapshot!(position, tables, where);
      if (position !== null && position !== this.position) {
        await saveCheckpoint(this.parts, this.parked.checkpoint(position), this.health.retryHooks('sink'));
        this.position = position;
      }
      this.log.info({ tables: requests.flatMap((r) => (r.tables.length ? r.tables : ['(all)'])) }, 'copy of existing rows requested');
    });
  }

  private configError(error: ConfigError): ConfigError {
    this.state = 'failed';
    this.counters.lastError = error.message;
    this.context.setConnected('source', false);
    this.log.error({ err: error.message }, 'configuration error: the stream stops');
    // Messages that start with a key of the stream (`tables[0].source: …`, `sink.url: …`) get the stream's path.
    const relative = /^(tables\[|source\.|sink\.)/.test(error.message);
    return relative ? new ConfigError(`${this.parts.path}.${error.message}`, { cause: error, context: error.context }) : error;
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

  /** Read now (queue-notify, trigger). */
  wake(): void {
    this.parts.source.wake();
  }

  /** A change pushed from outside (a Supabase Database Webhook) for one of this stream's tables; false when the stream does not take it. */
  receive(change: PushedChange): boolean {
    return pushChange(this.parts.source, this.parts.config.tables, change);
  }

  /**
   * Copies `tables` (all when empty) again while the stream runs (`cdc-sync
   * snapshot`, the control API): the batch in flight is finished, the
   * copy's position is stored as the checkpoint, and the source goes on from
   * it, so a restart in between still makes the copy. Resolves once stored.
   */
  requestSnapshot(tables: string[], where?: string): Promise<void> {
    checkCopyRequest(this.parts.config, this.parts.source, this.position, tables, where);
    if (!this.interrupt) throw new TransientError(`stream ${this.name} is not running (${this.state}); ask again once it runs`);
    const stored = this.copyRequests.add({ tables, where });
    this.interrupt?.(new CopyRequested());
    return stored;
  }

  /** `cdc-sync snapshot` without running the stream (see stream-checkpoint.ts). */
  rewriteCheckpoint(change: (position: string | null, source: Source) => string | null): Promise<boolean> {
    return rewriteCheckpoint(this.parts, this.context, change);
  }

  /** The sink open for `work`: see sink-tables.ts. */
  withSink<T>(work: (sink: Sink) => Promise<T>): Promise<T> {
    return this.tables.withSink(work);
  }

  /** The separate checkpoint store, or null when the sink keeps the checkpoint (`cdc-sync reset`). */
  get checkpointStore(): CheckpointStore | null {
    return this.parts.checkpoints;
  }

  status(): StreamStatus {
    return streamStatus(this.parts, this.health, this.state, this.position, this.counters);
  }

  /** `cdc-sync validate`: see check-stream.ts. */
  check(): Promise<void> {
    return checkStream(this.parts, { ...this.context, checkOnly: true }, (error) => this.configError(error));
  }
}
