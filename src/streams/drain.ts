/** What the source handed over and is not applied yet: `run --once` stops when that is nothing and the source has nothing more. */
export class Drain {
  /** Batches being applied now; `once` waits for them before stopping. */
  inFlight = 0;
  /** The position of the last chunk read: `once` stops when it is applied (a batch still forming is not in flight yet). */
  lastRead: string | null = null;
  private idleSeen = false;

  constructor(private readonly stop: () => void) {}

  /** The source read nothing new. */
  idle(position: string | null): void {
    this.idleSeen = true;
    this.stopWhenDrained(position);
  }

  /** run --once: the source had nothing more, and everything it handed over is applied (up to `position`). */
  stopWhenDrained(position: string | null): void {
    if (this.idleSeen && this.inFlight === 0 && position === this.lastRead) this.stop();
  }
}
