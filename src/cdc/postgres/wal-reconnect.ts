import type { CdcSyncError } from '../../core/errors.js';
import { classifyPgError, isConnectionError } from '../../db/postgres/errors.js';
import type { StreamContext } from '../../streams/context.js';
import type { RetryPolicy } from '../../streams/retry.js';

/** What the reconnect loop runs (WalStream). */
export interface Replication {
  /** Streams on one connection until it ends. */
  streamOnce(): Promise<void>;
  stopped(): boolean;
  subscribed(): boolean;
  /** A failure that no reconnect gets past. */
  fail(error: CdcSyncError): void;
  /** A connection's streaming ended, however it did. */
  ended(): void;
}

/** Streams until stopped; reconnects with backoff after transient failures (the slot keeps what was not acknowledged). */
export async function reconnectLoop(replication: Replication, context: () => StreamContext, retry: RetryPolicy): Promise<void> {
  let attempt = 0;
  while (!replication.stopped() && replication.subscribed()) {
    try {
      await replication.streamOnce();
      attempt = 0;
      if (!replication.stopped()) throw new Error('connection terminated: replication ended by the server');
    } catch (error) {
      if (replication.stopped()) return;
      const classified = classifyPgError(error, { stream: context().stream });
      // "replication slot is active for PID": a previous session has not let go yet; retry.
      const transient = classified.transient || /is active for PID/i.test(classified.message);
      if (!transient) {
        replication.fail(classified);
        return;
      }
      if (isConnectionError(classified) || !classified.transient) context().setConnected('source', false);
      // Logged, counted and shown as the stream's state, as every retried read is.
      context().retrying('source', classified, attempt + 1);
      const { minDelayMs, maxDelayMs } = retry;
      const delay = Math.min(maxDelayMs, minDelayMs * 2 ** Math.min(attempt, 20)) * (0.5 + Math.random() / 2);
      attempt += 1;
      await new Promise((r) => setTimeout(r, delay));
    } finally {
      replication.ended();
    }
  }
}
