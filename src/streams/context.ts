import type { Logger } from '../log.js';
import type { Metrics } from '../metrics/metrics.js';

/** What a stream hands to its source and sink: who they work for, where to log and count. */
export interface StreamContext {
  stream: string;
  direction: string;
  log: Logger;
  metrics: Metrics;
  /** Sources and sinks report their connection; the gauge is 1 only when both are up. Up again also ends a part's retrying. */
  setConnected(part: 'source' | 'sink', up: boolean): void;
  /**
   * A part's operation failed with a transient error and is tried again:
   * logged, counted, and shown as the stream's state (`retrying`, `stalled`
   * from the policy's `attempts` on) until the part works again.
   */
  retrying(part: 'source' | 'sink', error: Error, attempt: number): void;
  /** A problem the operator must act on (shown as the stream's last error in status and /readyz). */
  reportProblem(message: string): void;
  /** Sources call this when a read found nothing new (before waiting); `run --once` stops on it. */
  idle?(): void;
  /** Stop asking: the stream is shutting down (long waits should end early). */
  readonly stopping: AbortSignal;
  /**
   * `cdc-sync validate`: open only to run the checks a start runs; create,
   * write and subscribe to nothing (no schema, slot, publication or channel).
   */
  readonly checkOnly?: boolean;
}
