import type { ChangeEvent } from '../../core/change-event.js';

/** A live change younger than this may have more rows of its transaction behind it (see midBurst). */
const BURST_MS = 200;

/** A change, or a pending fetch that holds the place of a record Realtime cut down. */
export type Buffered = ChangeEvent | Promise<ChangeEvent | null>;

/** Live and webhook changes in arrival order; a pending fetch holds the place of a record Realtime cut down. */
export class LiveBuffer {
  private entries: Buffered[] = [];
  /** When the last live or webhook change was buffered. */
  private lastArrival = 0;

  get length(): number {
    return this.entries.length;
  }

  add(event: ChangeEvent): void {
    this.entries.push(event);
    this.lastArrival = Date.now();
  }

  hold(fetched: Promise<ChangeEvent | null>): void {
    this.entries.push(fetched);
  }

  /** Empties the buffer; what it held. */
  dropAll(): Buffered[] {
    const dropped = this.entries;
    this.entries = [];
    return dropped;
  }

  /**
   * Realtime sends the rows of one transaction one message at a time (a
   * child inserted before its parent arrives first). While rows are still
   * coming in, an empty buffer does not mean the source is caught up: the
   * batch then waits its maxWaitMs for the rest (so the parent joins it), and
   * a child that fails for its missing parent is held, not dead-lettered.
   */
  midBurst(): boolean {
    return Date.now() - this.lastArrival < BURST_MS;
  }

  /**
   * The next buffered changes, at most maxSize of the first `limit` entries,
   * in order; waits for a fetch that holds the first place. `taken`: how
   * many entries left the buffer.
   */
  async take(limit: number, maxSize: number): Promise<{ events: ChangeEvent[]; taken: number }> {
    const events: ChangeEvent[] = [];
    let taken = 0;
    while (this.entries.length > 0 && taken < limit && events.length < maxSize) {
      const first = this.entries[0]!;
      if (first instanceof Promise) {
        if (events.length > 0) break;
        const fetched = await first;
        // An overflow may have emptied the buffer meanwhile.
        if (this.entries[0] !== first) break;
        this.entries.shift();
        taken += 1;
        if (fetched) events.push(fetched);
        continue;
      }
      events.push(first);
      this.entries.shift();
      taken += 1;
    }
    return { events, taken };
  }
}
