import { keyString, type ChangeEvent } from '../core/change-event.js';
import type { FailedChange } from './apply-batch.js';

/**
 * Changes whose parent had not arrived yet (reason `missing-parent`), held
 * back and applied again with the next batch instead of going to the dead
 * letter at once: a source that cannot tell where its transactions end (the
 * SQLite change log) or a parent that a later read brings (another table's
 * change, a late transaction) then needs no `retry-failed`.
 *
 * Nothing is lost to a crash meanwhile: while a change is held, the stream
 * stores the checkpoint it had before that change's batch (`held`), so a
 * restart reads the change again; the batches applied since are idempotent.
 * A held change that fails again in a batch after which the source had
 * nothing more to read goes to the dead letter (its parent is not coming).
 */
export class ParkedChanges {
  private readonly changes = new Map<string, ChangeEvent>();
  /** The checkpoint stored before the first held change's batch. */
  private heldAt: string | null = null;

  get size(): number {
    return this.changes.size;
  }

  /** The held changes, oldest first, to go in front of the next batch (its newer changes of a key supersede them). */
  events(): ChangeEvent[] {
    return [...this.changes.values()];
  }

  /**
   * After a batch: which failures to hold (the rest go to the dead letter).
   * `position` is the checkpoint stored before this batch.
   */
  settle(failed: FailedChange[], options: { position: string | null; caughtUp: boolean }): FailedChange[] {
    const wasEmpty = this.changes.size === 0;
    this.changes.clear();
    if (options.caughtUp) return failed;
    const letters: FailedChange[] = [];
    for (const f of failed) {
      if (f.reason === 'missing-parent') this.changes.set(`${f.event.table}\u0000${keyString(f.event.key)}`, f.event);
      else letters.push(f);
    }
    if (wasEmpty && this.changes.size > 0) this.heldAt = options.position;
    return letters;
  }

  /** A restart reads from the stored checkpoint again, which brings every held change back. */
  clear(): void {
    this.changes.clear();
    this.heldAt = null;
  }

  /** Whether this very change is held (not a newer one of its key). */
  holds(event: ChangeEvent): boolean {
    return this.changes.get(`${event.table}\u0000${keyString(event.key)}`) === event;
  }

  /** The checkpoint to store after a batch: the held one while anything is held. */
  checkpoint(batchPosition: string): string | null {
    return this.changes.size > 0 ? this.heldAt : batchPosition;
  }
}
