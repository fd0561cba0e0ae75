import type { StreamContext } from '../../streams/context.js';

/**
 * When a catch-up read is due: on request (a trigger, an overflow, the
 * channel down or broken), after the margin of a (re)subscription, and on
 * an interval.
 */
export class CatchUpSchedule {
  due = true;
  private timer: NodeJS.Timeout | undefined;
  private readonly followUps = new Set<NodeJS.Timeout>();

  constructor(
    private readonly context: () => StreamContext,
    private readonly marginSeconds: number,
    private readonly wake: () => void,
  ) {}

  request(reason: string): void {
    this.context().log.debug({ reason }, 'catch-up requested');
    this.due = true;
    this.wake();
  }

  /**
   * After a (re)subscription: a catch-up now, and another once the margin
   * has passed, because the first one leaves out the last `marginSeconds`,
   * which is where the changes of a short outage are.
   */
  nowAndAfterMargin(reason: string): void {
    this.request(reason);
    const timer = setTimeout(() => {
      this.followUps.delete(timer);
      this.request(`${reason}, after the margin`);
    }, this.marginSeconds * 1000 + 1000);
    timer.unref();
    this.followUps.add(timer);
  }

  /** A catch-up is due, or one is set for after the margin of a (re)subscription: older changes may still come. */
  get readsPending(): boolean {
    return this.due || this.followUps.size > 0;
  }

  every(intervalMs: number): void {
    this.timer ??= setInterval(() => this.request('interval'), intervalMs).unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    for (const t of this.followUps) clearTimeout(t);
    this.followUps.clear();
  }
}
