import { keyString, type ChangeEvent } from '../core/change-event.js';
import type { FailedChange } from './apply-batch.js';
import { eventsFromJson, eventsToJson } from '../core/event-json.js';

/**
 * Changes whose parent had not arrived yet (reason `missing-parent`), held
 * back and applied again with the next batch instead of going to the dead
 * letter at once: a source that cannot tell where its transactions end (the
 * SQLite change log) or a parent that a later read brings (another table's
 * change, a late transaction) then needs no `retry-failed`.
 *
 * Nothing is lost to a crash meanwhile: the held changes are stored with the
 * checkpoint (`checkpointText`), in the sink's transaction, so a restart
 * holds them again. The checkpoint itself moves on with every batch: a
 * restart must not read the batches applied since a change was held again,
 * which would set their rows back to older values for a while and write
 * them twice. A held change that fails again in a batch after which the
 * source had nothing more to read goes to the dead letter (its parent is
 * not coming).
 */
export class ParkedChanges {
  private readonly changes = new Map<string, ChangeEvent>();

  get size(): number {
    return this.changes.size;
  }

  /** The held changes, oldest first, to go in front of the next batch (its newer changes of a key supersede them). */
  events(): ChangeEvent[] {
    return [...this.changes.values()];
  }

  /** After a batch: which failures to hold (the rest go to the dead letter). */
  settle(failed: FailedChange[], options: { caughtUp: boolean }): FailedChange[] {
    this.changes.clear();
    if (options.caughtUp) return failed;
    const letters: FailedChange[] = [];
    for (const f of failed) {
      if (f.reason === 'missing-parent') this.changes.set(`${f.event.table}\u0000${keyString(f.event.key)}`, f.event);
      else letters.push(f);
    }
    return letters;
  }

  /** At start: the changes the stored checkpoint holds (none: nothing is held). */
  restore(events: ChangeEvent[]): void {
    this.changes.clear();
    for (const e of events) this.changes.set(`${e.table}\u0000${keyString(e.key)}`, e);
  }

  /** Whether this very change is held (not a newer one of its key). */
  holds(event: ChangeEvent): boolean {
    return this.changes.get(`${event.table}\u0000${keyString(event.key)}`) === event;
  }

  /** The checkpoint to store after a batch: its position, with the changes held now. */
  checkpoint(batchPosition: string): string {
    return checkpointText(batchPosition, this.events());
  }
}

/** Between the source's position and the held changes of a stored checkpoint (no source's position holds a newline). */
const HELD = '\nheld ';

/** The stored checkpoint: the source's position, then the held changes, if any. */
export function checkpointText(position: string, held: ChangeEvent[]): string {
  return held.length === 0 ? position : `${position}${HELD}${eventsToJson(held)}`;
}

/** A stored checkpoint as the source's position and the changes it holds. */
export function readCheckpointText(text: string | null): { position: string | null; held: ChangeEvent[] } {
  if (text === null) return { position: null, held: [] };
  const at = text.indexOf(HELD);
  if (at < 0) return { position: text, held: [] };
  return { position: text.slice(0, at), held: eventsFromJson(text.slice(at + HELD.length)) };
}
