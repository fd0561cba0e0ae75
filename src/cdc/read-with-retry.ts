import type { CdcSyncError } from '../core/errors.js';
import type { StreamContext } from '../streams/context.js';
import { retryTransient, type RetryPolicy } from '../streams/retry.js';

/** A source's readWithRetry, bound to its context, policy and driver. */
export type RetriedRead = <T>(run: () => Promise<T>) => Promise<T>;

/**
 * A source's read: transient errors are retried with the stream's backoff,
 * logged, counted and shown as the stream's state, as the sink's are; the
 * source's `connected` state follows success and connection loss. `classify` turns driver errors into CdcSyncErrors and
 * says which of them mean the connection is gone.
 */
export function readWithRetry<T>(
  context: StreamContext,
  policy: RetryPolicy,
  classify: { error(error: unknown): CdcSyncError; lostConnection(error: CdcSyncError): boolean },
  run: () => Promise<T>,
): Promise<T> {
  return retryTransient(
    async () => {
      try {
        const result = await run();
        context.setConnected('source', true);
        return result;
      } catch (error) {
        const classified = classify.error(error);
        if (classify.lostConnection(classified)) context.setConnected('source', false);
        throw classified;
      }
    },
    policy,
    { signal: context.stopping, onRetry: (error, attempt) => context.retrying('source', error, attempt) },
  );
}
