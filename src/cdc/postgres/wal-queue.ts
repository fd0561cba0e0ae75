import { append } from '../../core/arrays.js';
import type { ChangeEvent, RejectedChange } from '../../core/change-event.js';
import { WalPosition, type WalCopy } from './wal-position.js';
import type { WalTransaction } from './wal-transactions.js';

/** A decoded transaction, or a copied chunk (`copyAfter` set: where the copy stands after it; no LSN of its own). */
export type Queued = WalTransaction & { copyAfter?: WalCopy | null };

/** Decoded transactions, and copied chunks (`copyAfter`: where the copy stands after them), in stream order. */
export class WalQueue {
  private items: Queued[] = [];
  /** Changes (events and rejected ones) the items hold. */
  size = 0;

  get length(): number {
    return this.items.length;
  }

  push(item: Queued): void {
    this.items.push(item);
    this.size += item.events.length + item.rejected.length;
  }

  clear(): void {
    this.items = [];
    this.size = 0;
  }

  /**
   * One chunk's changes: whole items, up to `limit` changes (at least one
   * item). `end` and `copy` are where the stream stands before them; the
   * returned ones, after them. `delivered` hears of each copied chunk taken.
   */
  take(limit: number, end: bigint, copy: WalCopy | null, delivered: (copy: WalCopy | null) => void): { events: ChangeEvent[]; rejected: RejectedChange[]; end: bigint; copy: WalCopy | null } {
    let events: ChangeEvent[] = [];
    const rejected: RejectedChange[] = [];
    while (this.items.length > 0) {
      const item = this.items[0]!;
      const size = item.events.length + item.rejected.length;
      if (events.length + rejected.length > 0 && events.length + rejected.length + size > limit) break;
      this.items.shift();
      this.size -= size;
      if (item.copyAfter !== undefined) {
        copy = item.copyAfter;
        delivered(copy);
      } else {
        end = item.endLsn;
      }
      // While a copy runs, every position carries it (a restart goes on after its last delivered chunk).
      if (copy !== null || item.copyAfter !== undefined) {
        const position = new WalPosition(end, copy).toString();
        for (const e of item.events) e.position = position;
        for (const r of item.rejected) r.position = position;
      }
      // The first transaction's own array, taken over (it leaves the queue): most chunks are one transaction.
      if (events.length === 0) events = item.events;
      else append(events, item.events);
      append(rejected, item.rejected);
    }
    return { events, rejected, end, copy };
  }
}
