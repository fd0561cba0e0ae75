import type { Observable } from 'rxjs';

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
