import { describeUrl } from '../core/endpoint.js';
import { TransientError, errorMessage, isTransient } from '../core/errors.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics/metrics.js';
import type { Sink } from '../sinks/sink.js';
import type { RetryHooks, RetryPolicy } from './retry.js';

export type Part = 'source' | 'sink';
type Trouble = 'retrying' | 'stalled' | null;

export interface StreamHealthOptions {
  labels: { stream: string; direction: string };
  metrics: Metrics;
  log: Logger;
  retry: RetryPolicy;
  /** liveness.timeoutMs: how long the sink may leave a probe unanswered (two thirds of it), and how idle it may be (a third). */
  timeoutMs: number;
  sinkUrl: string;
  sink: Sink;
  /** Batches being applied now: no probe meanwhile, and a probe's late failure is not judged then. */
  inFlight(): number;
  stopping: AbortSignal;
  /** The stream's last error, for status and /readyz. */
  problem(message: string): void;
}

/**
 * What a stream shows about its parts besides its pipeline: whether source
 * and sink are connected, whether one of them is being retried (the stream's
 * state says so), the lag, and a probe of an idle sink. Once a second it
 * updates the lag and probes: while changes wait (read, not applied), the lag
 * counts from the oldest one's commit time; while the source cannot be read,
 * from the last moment the stream knew it was caught up (an upper bound:
 * changes made meanwhile cannot be seen). A sink that answers nothing for the
 * liveness time is shown as lost, also when nothing else would notice.
 */
export class StreamHealth {
  private readonly connectedParts = { source: false, sink: false };
  /** A part whose operations fail transiently and are being retried, until it works again. */
  private readonly trouble: Record<Part, Trouble> = { source: null, sink: null };
  /** Per batch read and not yet applied, oldest first: the commit time (ms) of its first change (null: no change). */
  private readonly unapplied: (number | null)[] = [];
  /** When the stream last knew it had applied everything the source had. */
  private caughtUpAt = Date.now();
  private lastSinkAnswer = 0;
  private probing = false;
  private sinkLostByProbe = false;
  private ticker: NodeJS.Timeout | undefined;

  constructor(private readonly options: StreamHealthOptions) {}

  get connected(): boolean {
    return this.connectedParts.source && this.connectedParts.sink;
  }

  get sinkConnected(): boolean {
    return this.connectedParts.sink;
  }

  start(): void {
    this.ticker = setInterval(() => this.tick(), 1000);
    this.ticker.unref();
  }

  stop(): void {
    clearInterval(this.ticker);
  }

  /** Up again also ends the part's retrying. */
  setConnected(part: Part, up: boolean): void {
    this.connectedParts[part] = up;
    if (up) this.trouble[part] = null;
    if (up && part === 'sink') this.lastSinkAnswer = Date.now();
    this.options.metrics.connected.set(this.options.labels, this.connected ? 1 : 0);
  }

  /** A transient failure of `part` that is tried again: counted, logged, and `stalled` from the policy's attempts on. */
  retrying(part: Part, error: Error, attempt: number): void {
    const { metrics, labels, log, retry } = this.options;
    metrics.retries.inc(labels);
    this.options.problem(`${part}: ${errorMessage(error)}`);
    const stalled = attempt >= retry.attempts;
    if (stalled && this.trouble[part] !== 'stalled') {
      log.error({ part, err: errorMessage(error), attempt }, 'still failing after the configured attempts; retrying until it recovers');
    } else {
      log.warn({ part, err: errorMessage(error), attempt, transient: isTransient(error) }, 'transient error; retrying');
    }
    this.trouble[part] = stalled ? 'stalled' : 'retrying';
  }

  /** For `retryTransient` on `part`: each retry is reported (`retrying`); the stream's stop ends the retries. */
  retryHooks(part: Part): RetryHooks {
    return { signal: this.options.stopping, onRetry: (error: Error, attempt: number) => this.retrying(part, error, attempt) };
  }

  /** A running stream whose source or sink is being retried shows that as its state. */
  shownState<S extends string>(state: S): S | 'retrying' | 'stalled' {
    if (state !== 'running' && state !== 'starting') return state;
    const trouble = [this.trouble.source, this.trouble.sink];
    if (trouble.includes('stalled')) return 'stalled';
    if (trouble.includes('retrying')) return 'retrying';
    return state;
  }

  /** A batch was read (and prepared): its changes wait until `applied`. */
  read(firstCommitTime: Date | undefined): void {
    this.unapplied.push(firstCommitTime?.getTime() ?? null);
  }

  /** The oldest batch read was applied; `caughtUp`: the source had nothing more when it was read. */
  applied(lastCommitTime: Date | undefined, caughtUp: boolean): void {
    this.unapplied.shift();
    if (lastCommitTime) this.options.metrics.lag.set(this.options.labels, Math.max(0, (Date.now() - lastCommitTime.getTime()) / 1000));
    if (caughtUp && this.unapplied.length === 0) this.caughtUpAt = Date.now();
    this.lastSinkAnswer = Date.now();
    this.trouble.sink = null;
  }

  /** The source read nothing new: with nothing waiting, the stream is caught up. */
  idle(): void {
    if (this.unapplied.length > 0 || this.options.inFlight() > 0) return;
    this.caughtUpAt = Date.now();
    this.options.metrics.lag.set(this.options.labels, 0);
  }

  /** The pipeline ended: what it had read is read again from the checkpoint. */
  forgetRead(): void {
    this.unapplied.length = 0;
  }

  private tick(): void {
    const now = Date.now();
    const oldest = this.unapplied.find((t) => t !== null);
    const sourceLost = !this.connectedParts.source || this.trouble.source !== null;
    const behind = [...(oldest !== undefined && oldest !== null ? [now - oldest] : []), ...(sourceLost ? [now - this.caughtUpAt] : [])];
    if (behind.length > 0) this.options.metrics.lag.set(this.options.labels, Math.max(0, ...behind) / 1000);
    this.probeSink(now);
  }

  private probeSink(now: number): void {
    const { sink, timeoutMs } = this.options;
    // Probe an idle connected sink, and keep probing one a probe found lost: nothing else would bring it back while idle.
    const due = this.sinkLostByProbe || (this.connectedParts.sink && now - this.lastSinkAnswer >= timeoutMs / 3);
    if (!sink.ping || this.probing || this.options.inFlight() > 0 || !due) return;
    this.probing = true;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      const message = `no answer from ${describeUrl(this.options.sinkUrl)} to a probe within ${Math.round((timeoutMs * 2) / 3)} ms`;
      timer = setTimeout(() => reject(new TransientError(message)), (timeoutMs * 2) / 3);
    });
    Promise.race([sink.ping(), late])
      .then(
        () => {
          this.sinkLostByProbe = false;
          this.setConnected('sink', true);
        },
        (error: unknown) => {
          if (this.options.stopping.aborted || this.options.inFlight() > 0) return;
          this.sinkLostByProbe = true;
          this.setConnected('sink', false);
          this.retrying('sink', error instanceof Error ? error : new Error(String(error)), 1);
        },
      )
      .finally(() => {
        clearTimeout(timer);
        this.probing = false;
      });
  }
}
