import { keyString, type ChangeEvent } from '../../core/change-event.js';

/**
 * Keeps the last change per key (source order decides) and puts them in an
 * order a set-based sink can apply: deletes from child tables up, then
 * upserts from parent tables down. `tableOrder` lists tables parents first.
 * Upserts are idempotent, so the last image of a key is all the sink needs:
 * insert+update → upsert, update+delete → delete, delete+insert → upsert.
 */
export function coalesce(events: ChangeEvent[], tableOrder: string[]): ChangeEvent[] {
  const last = new Map<string, ChangeEvent>();
  for (const event of events) {
    const id = `${event.table}\u0000${keyString(event.key)}`;
    // Delete and re-insert so Map order follows the newest change of each key.
    last.delete(id);
    last.set(id, event);
  }
  const rank = new Map(tableOrder.map((t, i) => [t, i]));
  const order = (e: ChangeEvent) => rank.get(e.table) ?? tableOrder.length;
  const latest = [...last.values()];
  const deletes = latest.filter((e) => e.op === 'delete').sort((a, b) => order(b) - order(a));
  const upserts = latest.filter((e) => e.op !== 'delete').sort((a, b) => order(a) - order(b));
  return [...deletes, ...upserts];
}
