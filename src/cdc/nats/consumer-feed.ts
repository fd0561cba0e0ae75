import type { ConsumerMessages, JsMsg } from '@nats-io/jetstream';
import { TransientError } from '../../core/errors.js';

/**
 * What a pull consumer's `consume()` delivers, queued for the source's
 * reads. The client pulls more as its iterator is read, so reading pauses
 * while `limit` messages wait: the backlog stays in JetStream, not here.
 */
export class ConsumerFeed {
  readonly queue: JsMsg[] = [];
  /** Why delivery ended (set once it did): the source sets the consumer up again. */
  failure: unknown;
  private wake: (() => void) | undefined;
  private room: (() => void) | undefined;

  constructor(
    private readonly messages: ConsumerMessages,
    private readonly limit: number,
  ) {
    void this.run();
  }

  /** Resolves true when a message arrived (or delivery ended), false after `ms`. */
  arrival(ms: number): Promise<boolean> {
    if (this.queue.length > 0 || this.failure !== undefined) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.wake = undefined;
        resolve(false);
      }, ms);
      this.wake = () => {
        clearTimeout(timer);
        this.wake = undefined;
        resolve(true);
      };
    });
  }

  /** The source took messages: read on if there is room. */
  resume(): void {
    if (this.queue.length < this.limit) this.room?.();
  }

  stop(): void {
    this.messages.stop();
    this.room?.();
  }

  private async run(): Promise<void> {
    try {
      for await (const message of this.messages) {
        this.queue.push(message);
        this.wake?.();
        if (this.queue.length >= this.limit) await new Promise<void>((resolve) => (this.room = resolve));
        this.room = undefined;
      }
    } catch (error) {
      this.failure = error;
    }
    this.failure ??= new TransientError('the JetStream consumer stopped delivering');
    this.wake?.();
  }
}
