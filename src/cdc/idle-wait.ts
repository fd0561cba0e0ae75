import type { Observable } from 'rxjs';
import type { StreamContext } from '../streams/context.js';

/** Waits `ms`, or less when woken (queue-notify, trigger) or stopped. */
export function idleWait(ms: number, wake: Observable<void>, stop: AbortSignal): Promise<void> {
  if (stop.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      subscription.unsubscribe();
      stop.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    const subscription = wake.subscribe(done);
    stop.addEventListener('abort', done);
  });
}

/**
 * The pause of a polling source after a read that found nothing: it doubles
 * from `pollIntervalMs` (at least 50 ms) up to `idleIntervalMs`, and a wake-up
 * or a stop cuts it short. One per read loop: a read that finds work starts
 * the next loop at the short delay again.
 */
export class IdlePoll {
  private delay: number;

  constructor(
    private readonly options: { pollIntervalMs: number; idleIntervalMs: number },
    private readonly wakeUp: Observable<void>,
  ) {
    this.delay = options.pollIntervalMs;
  }

  /** Tells the stream the source is idle (run --once), then waits; false when the stream is stopping or `stop` (its read loop was given up) aborted. */
  async wait(context: StreamContext, stop: AbortSignal): Promise<boolean> {
    this.delay = Math.min(Math.max(this.delay * 2, 50), this.options.idleIntervalMs);
    context.idle?.();
    const either = AbortSignal.any([context.stopping, stop]);
    await idleWait(this.delay, this.wakeUp, either);
    return !either.aborted;
  }
}
