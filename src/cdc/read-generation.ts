/**
 * Which `chunks()` subscription of a source is the current one. A read loop
 * of an earlier subscription (the stream reopened, or restarted for a copy)
 * keeps running after it is given up; it checks `stale` before each read and
 * stops, or it would move the reader past changes the new subscription has
 * not handed over.
 */
export class ReadGeneration {
  private current = 0;

  /** A new subscription: its token. */
  next(): number {
    return ++this.current;
  }

  stale(generation: number): boolean {
    return generation !== this.current;
  }
}
