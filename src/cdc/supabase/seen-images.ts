import { createHash } from 'node:crypto';
import type { ChangeEvent, Row } from '../../core/change-event.js';
import { keyString } from '../../core/change-event.js';

/** How a change reached the source. */
export type Via = 'live' | 'webhook' | 'catch-up' | 'fetch';

/** A delete handed on that may not have been applied: not a duplicate of the tombstone a catch-up finds, still newer than a webhook's image. */
const UNAPPLIED_DELETE = Symbol('unapplied delete');
/** What the seen map holds per key: the image's digest, null for a delete. */
type Seen = string | null | typeof UNAPPLIED_DELETE;

/** Per key whose image changed while a catch-up page was read: the image it had when the read began. */
export type ChangedDuringRead = Map<string, Seen | undefined>;

/**
 * The last image handed on per key (null: deleted), to drop what was
 * already seen. Images, not updated-at values: those come from two clocks
 * (the clinic's, kept on cdc-sync's forward writes, and Supabase's), and a
 * new edit may carry an earlier one.
 */
export class SeenImages {
  private readonly seen = new Map<string, Seen>();
  /**
   * While a catch-up page is read: per key whose image changed meanwhile,
   * the image it had when the read began (see judge).
   */
  private duringRead: ChangedDuringRead | null = null;

  beginRead(): ChangedDuringRead {
    const changedDuringRead: ChangedDuringRead = new Map();
    this.duringRead = changedDuringRead;
    return changedDuringRead;
  }

  endRead(): void {
    this.duringRead = null;
  }

  /**
   * The seen map says what was handed on, not what was applied: changes a
   * full buffer dropped (`dropped`), or every change handed on before the
   * stream stopped (a copy request, a failed batch: those in its batch are
   * gone), must not be dropped as duplicates when a catch-up read finds them
   * again. A delete still refuses an older webhook image of its key.
   */
  forgetHandedOn(dropped?: (ChangeEvent | Promise<ChangeEvent | null>)[]): void {
    const ids = dropped
      ? dropped.flatMap((e) => (e instanceof Promise ? [] : [`${e.table}\u0000${keyString(e.key)}`]))
      : [...this.seen.keys()];
    for (const id of ids) {
      if (this.seen.get(id) === null) this.seen.set(id, UNAPPLIED_DELETE);
      else this.seen.delete(id);
    }
  }

  /** Is `image` the last image of the event's key handed on (and not forgotten since)? */
  isLast(event: ChangeEvent, image: Row): boolean {
    return this.seen.get(`${event.table}\u0000${keyString(event.key)}`) === imageText(image);
  }

  /**
   * Was this change not handed on yet? The same image of a key twice (live
   * and by catch-up, or an echo of a forward write) counts once; a delete
   * is remembered, so an unordered webhook's older image cannot bring the
   * row back (a real re-insert arrives live, or by the next catch-up read).
   * 'new', or why it is suppressed.
   */
  judge(event: ChangeEvent, via: Via, isEcho: () => boolean, changedDuringRead?: ChangedDuringRead): 'new' | 'duplicate' | 'stale' | 'origin' {
    const id = `${event.table}\u0000${keyString(event.key)}`;
    const image = event.op === 'delete' ? null : imageText(event.row!);
    // A page is handed on before the changes that arrived while it was read: it is judged by, and
    // leaves as the last image, what a key had when the read began.
    const later = changedDuringRead?.has(id) ?? false;
    const previous = later ? changedDuringRead!.get(id) : this.seen.get(id);
    const remember = () => {
      if (later) return;
      if (this.duringRead && !this.duringRead.has(id)) this.duringRead.set(id, this.seen.get(id));
      this.seen.delete(id);
      this.seen.set(id, image);
      // Bounded memory: forget the oldest keys; forgetting only costs an idempotent re-apply.
      if (this.seen.size > 100_000) this.seen.delete(this.seen.keys().next().value!);
    };
    if (isEcho()) {
      remember();
      return 'origin';
    }
    if (previous !== undefined && previous === image) return 'duplicate';
    if ((previous === null || previous === UNAPPLIED_DELETE) && via === 'webhook') return 'stale';
    remember();
    return 'new';
  }
}

/**
 * A row image as a short digest (columns in name order, whatever order the
 * feed or REST used): the seen map holds up to 100,000 keys, and a row may
 * carry a note of megabytes.
 */
function imageText(row: Row): string {
  const text = JSON.stringify(
    Object.keys(row)
      .sort()
      .map((k) => [k, row[k] ?? null]),
    (_, v: unknown) => (typeof v === 'bigint' ? v.toString() : v instanceof Uint8Array ? Buffer.from(v).toString('hex') : v),
  );
  return createHash('sha256').update(text).digest('base64');
}
