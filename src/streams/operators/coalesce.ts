import { keyString, type ChangeEvent } from '../../core/change-event.js';

/**
 * Keeps the last change per key (source order decides) and puts them in an
 * order a set-based sink can apply: deletes from child tables up, then
 * upserts from parent tables down. `tableOrder` lists tables parents first.
 * Upserts are idempotent, so the last image of a key is all the sink needs:
 * insert+update → upsert, update+delete → delete, delete+insert → upsert.
 * Tables a TRUNCATE emptied come first (children first), without the
 * changes that preceded the TRUNCATE.
 */
export function coalesce(events: ChangeEvent[], tableOrder: string[]): ChangeEvent[] {
  // Per table, one id object per key: found by the key value itself when the key is one text or number column (no string built per change), else by keyString.
  const last = new Map<object, ChangeEvent>();
  const tables = new Map<string, { values: Map<string | number, object>; strings: Map<string, object> }>();
  // A TRUNCATE wipes the table: its earlier changes in the batch are dropped, and it is applied before the later ones.
  const truncates = new Map<string, ChangeEvent>();
  for (const event of events) {
    let ids = tables.get(event.table);
    if (event.op === 'truncate') {
      for (const id of [...(ids?.values.values() ?? []), ...(ids?.strings.values() ?? [])]) last.delete(id);
      tables.delete(event.table);
      truncates.delete(event.table);
      truncates.set(event.table, event);
      continue;
    }
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
  const buckets = () => Array.from({ length: tableOrder.length + 1 }, (): ChangeEvent[] => []);
  const [emptied, deletes, upserts] = [buckets(), buckets(), buckets()];
  for (const e of truncates.values()) emptied[rank.get(e.table) ?? tableOrder.length]!.push(e);
  for (const e of last.values()) (e.op === 'delete' ? deletes : upserts)[rank.get(e.table) ?? tableOrder.length]!.push(e);
  return [...emptied.reverse().flat(), ...deletes.reverse().flat(), ...upserts.flat()];
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
