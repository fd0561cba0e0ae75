import { keyString, type ChangeEvent } from '../core/change-event.js';
import type { FailedChange } from './apply-batch.js';
import { eventsFromJson, eventsToJson } from '../core/event-json.js';

/**
 * How long a change waits for a parent that a source with nothing more to
 * read says may still come: long enough for another partition's stream to
 * be restarted, short enough that a parent that never comes is seen.
 */
export const HOLD_LIMIT_MS = 5 * 60_000;

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
 * not coming). A source that has nothing more but may still bring a parent
 * (`readsPending`: a scheduled catch-up, another key partition's stream)
 * has the change held up to `HOLD_LIMIT_MS` after it was first held.
 */
export class ParkedChanges {
  /** Per table and key, the change held and when a change of that key was first held (in this process: a restart starts the wait again). */
  private held = new Map<string, { event: ChangeEvent; since: number }>();

  /** Per table, the changes the last `settle` began to hold (held before: not counted). */
  newlyHeld = new Map<string, number>();

  constructor(private readonly now: () => number = Date.now) {}

  get size(): number {
    return this.held.size;
  }

  /** The held changes, oldest first, to go in front of the next batch (its newer changes of a key supersede them). */
  events(): ChangeEvent[] {
    return [...this.held.values()].map((h) => h.event);
  }

  /**
   * After a batch: which failures to hold (the rest go to the dead letter).
   * `caughtUp`: the source had nothing more to read; `readsPending`: it may
   * still bring older changes.
   */
  settle(failed: FailedChange[], options: { caughtUp: boolean; readsPending?: boolean }): FailedChange[] {
    const before = this.held;
    this.held = new Map();
    this.newlyHeld = new Map();
    if (options.caughtUp && !options.readsPending) return failed;
    const now = this.now();
    const letters: FailedChange[] = [];
    for (const f of failed) {
      const id = idOf(f.event);
      const since = before.get(id)?.since ?? now;
      if (f.reason !== 'missing-parent' || (options.caughtUp && now - since >= HOLD_LIMIT_MS)) {
        letters.push(f);
        continue;
      }
      this.held.set(id, { event: f.event, since });
      if (!before.has(id)) this.newlyHeld.set(f.event.table, (this.newlyHeld.get(f.event.table) ?? 0) + 1);
    }
    return letters;
  }

  /** At start: the changes the stored checkpoint holds (none: nothing is held). */
  restore(events: ChangeEvent[]): void {
    const now = this.now();
    this.held = new Map(events.map((event) => [idOf(event), { event, since: now }]));
  }

  /** Whether this very change is held (not a newer one of its key). */
  holds(event: ChangeEvent): boolean {
    return this.held.get(idOf(event))?.event === event;
  }

  /** The checkpoint to store after a batch: its position, with the changes held now. */
  checkpoint(batchPosition: string): string {
    return checkpointText(batchPosition, this.events());
  }
}

function idOf(event: ChangeEvent): string {
  return `${event.table}\u0000${keyString(event.key)}`;
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
