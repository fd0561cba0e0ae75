import { concatMap, defer, startWith, type Observable } from 'rxjs';

/**
 * The `chunks()` subscriptions of a source, one current. A read loop of an
 * earlier subscription (the stream reopened, or restarted for a copy) keeps
 * running after it is given up, because a promise cannot be called back:
 * it must end before the new subscription sets the reader to its
 * checkpoint, and must not move the reader after that, or it takes changes
 * the new subscription then never hands over.
 */
export class ReadGeneration {
  private current = 0;
  private controller = new AbortController();
  /** The read loop in progress, of whichever subscription; settled when it ended. */
  private reading: Promise<unknown> = Promise.resolve();

  /**
   * A new subscription's chunks, one `loop` per demand. `start` sets the
   * reader to the subscription's checkpoint once an earlier loop still
   * reading has ended (it stops at its next `stale()` check, or when `stop`
   * aborts its idle wait). A loop that returns null (stale, or the stream
   * stopping) hands nothing over: its pipeline is gone.
   */
  chunks<T>(demand: Observable<void>, start: () => void, loop: (stale: () => boolean, stop: AbortSignal) => Promise<T | null>): Observable<T> {
    this.controller.abort();
    this.controller = new AbortController();
    const generation = ++this.current;
    const stop = this.controller.signal;
    const stale = () => generation !== this.current;
    let started = false;
    const read = (): Promise<T> => {
      const run = this.reading.then(() => {
        if (stale()) return null;
        if (!started) {
          started = true;
          start();
        }
        return loop(stale, stop);
      });
      this.reading = run.catch(() => {});
      return run.then((result) => (result === null ? new Promise<never>(() => {}) : result));
    };
    return demand.pipe(
      startWith(undefined),
      concatMap(() => defer(read)),
    );
  }
}
