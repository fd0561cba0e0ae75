import { errorMessage } from '../core/errors.js';
import type { Logger } from '../log.js';

/**
 * The last guard of a running process. Every driver error is meant to reach
 * a stream's retry path, but one that escapes (an 'error' event nobody
 * listens to, a promise nobody awaits) must not end the process: it is
 * logged and `reopen` runs (every stream reopens from its checkpoint, which
 * is always safe). Returns the function that removes the guard.
 */
export function guardProcess(log: Logger, reopen: (error: unknown) => void): () => void {
  const onUnexpected = (error: unknown) => {
    log.error({ err: errorMessage(error) }, 'unexpected error outside the streams; reopening them from their checkpoints');
    reopen(error);
  };
  process.on('uncaughtException', onUnexpected);
  process.on('unhandledRejection', onUnexpected);
  return () => {
    process.off('uncaughtException', onUnexpected);
    process.off('unhandledRejection', onUnexpected);
  };
}
