import { keyString, type ChangeEvent } from '../../core/change-event.js';

/**
 * Keeps the last change per key (source order decides) and puts them in an
 * order a set-based sink can apply: deletes from child tables up, then
 * upserts from parent tables down. `tableOrder` lists tables parents first.
 * Upserts are idempotent, so the last image of a key is all the sink needs:
 * insert+update → upsert, update+delete → delete, delete+insert → upsert.
 */
export function coalesce(events: ChangeEvent[], tableOrder: string[]): ChangeEvent[] {
  // Per table, one id object per key: found by the key value itself when the key is one text or number column (no string built per change), else by keyString.
  const last = new Map<object, ChangeEvent>();
  const tables = new Map<string, { values: Map<string | number, object>; strings: Map<string, object> }>();
  for (const event of events) {
    let ids = tables.get(event.table);
    if (!ids) tables.set(event.table, (ids = { values: new Map(), strings: new Map() }));
    const value = singleValue(event.key);
    let id: object | undefined;
    if (value !== undefined) {
      id = ids.values.get(value);
      if (!id) ids.values.set(value, (id = {}));
    } else {
      const text = keyString(event.key);
      id = ids.strings.get(text);
      if (!id) ids.strings.set(text, (id = {}));
    }
    // Delete and re-insert so Map order follows the newest change of each key.
    last.delete(id);
    last.set(id, event);
  }
  // One bucket per table rank (unknown tables last): a stable order without sorting.
  const rank = new Map(tableOrder.map((t, i) => [t, i]));
  const deletes: ChangeEvent[][] = Array.from({ length: tableOrder.length + 1 }, () => []);
  const upserts: ChangeEvent[][] = Array.from({ length: tableOrder.length + 1 }, () => []);
  for (const e of last.values()) (e.op === 'delete' ? deletes : upserts)[rank.get(e.table) ?? tableOrder.length]!.push(e);
  return [...deletes.reverse().flat(), ...upserts.flat()];
}

/** The key's value when it is one column of text or number; undefined otherwise. */
function singleValue(key: ChangeEvent['key']): string | number | undefined {
  let only: unknown;
  let count = 0;
  for (const column in key) {
    only = key[column];
    count += 1;
  }
  return count === 1 && (typeof only === 'string' || typeof only === 'number') ? only : undefined;
}
