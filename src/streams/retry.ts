import pRetry from 'p-retry';
import { isTransient } from '../core/errors.js';

export interface RetryPolicy {
  /** Failed attempts after which the stream reports itself stalled (it keeps trying). */
  attempts: number;
  minDelayMs: number;
  maxDelayMs: number;
}

export interface RetryHooks {
  onRetry?(error: Error, attempt: number): void;
  /** Called once when `attempts` is reached; the operation keeps being retried. */
  onStalled?(error: Error): void;
  signal?: AbortSignal;
}

/**
 * Runs `operation`, retrying transient errors with exponential backoff and
 * jitter (p-retry: delay = min(maxDelay, minDelay·2^n)·random[1,2)).
 * With the defaults (200 ms, 30 s) the waits are about 0.2-0.4, 0.4-0.8, …
 * 25-51 s, then 30-60 s for ever: an unreachable database is waited for, not
 * skipped. Permanent errors reject at once.
 */
export async function retryTransient<T>(operation: () => Promise<T>, policy: RetryPolicy, hooks: RetryHooks = {}): Promise<T> {
  let stalled = false;
  return pRetry(operation, {
    retries: Number.POSITIVE_INFINITY,
    factor: 2,
    minTimeout: policy.minDelayMs,
    maxTimeout: policy.maxDelayMs,
    randomize: true,
    signal: hooks.signal,
    unref: true,
    shouldRetry: ({ error }) => isTransient(error) && !hooks.signal?.aborted,
    onFailedAttempt: ({ error, attemptNumber }) => {
      if (!isTransient(error)) return;
      hooks.onRetry?.(error, attemptNumber);
      if (attemptNumber >= policy.attempts && !stalled) {
        stalled = true;
        hooks.onStalled?.(error);
      }
    },
  });
}
