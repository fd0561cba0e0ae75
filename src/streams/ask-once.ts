import type { Subject } from 'rxjs';

/** Asks `demand` for the next chunk the first time it is called; later calls do nothing. */
export function askOnce(demand: Subject<void>): () => void {
  let asked = false;
  return () => {
    if (asked) return;
    asked = true;
    // Never inside the sink's call: the demand is answered on the next turn of the event loop.
    setImmediate(() => demand.next());
  };
}
