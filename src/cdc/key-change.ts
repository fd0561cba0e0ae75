import { keyString, type ChangeEvent, type Row } from '../core/change-event.js';

/**
 * An update that changed the row's key, as the sink must apply it: the delete
 * of the old key, then the insert of the new key, one after the other (the
 * source puts both in one chunk, so they share its checkpoint and reach the
 * sink in one batch; coalesce then applies the delete before the upsert).
 * Applied as an upsert of the new key alone, it would leave the row under its
 * old key on the target.
 *
 * The new key's half is an `insert`, not an `update`: the key was free in the
 * source when the update took it (a key is unique), so on a target in step it
 * is free too, and the PostgreSQL sink may COPY the row. Where the target
 * holds the key after all (a copy into a filled table, a checkpoint put back),
 * nothing breaks: every sink writes an insert as an upsert (the PostgreSQL
 * sink's COPY is refused by the existing key, and the batch is applied again
 * with upserts), and coalesce makes it an `update` when the same batch deleted
 * the key before (a swap of two keys, A → B → A).
 *
 * Both halves keep everything else of the update: position, commit time,
 * origin, source handle, and its before-image — the same object, which is
 * how `isKeyChange` knows them as one change.
 */
export function keyChange(update: ChangeEvent, oldKey: Row): [ChangeEvent, ChangeEvent] {
  return [
    { ...update, op: 'delete', key: oldKey, row: null },
    { ...update, op: 'insert' },
  ];
}

/** Whether `a` and `b` are the key (columns of `b`) of the same row: equal column for column, as `keyString` compares values. */
export function sameKey(a: Row, b: Row): boolean {
  for (const column in b) {
    const x = a[column] ?? null;
    const y = b[column] ?? null;
    if (x !== y && keyString({ [column]: x }) !== keyString({ [column]: y })) return false;
  }
  return true;
}

/** Whether events `i` and `i + 1` are the two halves of one key change (made by `keyChange`). */
export function isKeyChange(events: ChangeEvent[], i: number): boolean {
  const first = events[i]!;
  if (first.op !== 'delete' || !first.before) return false;
  const second = events[i + 1];
  return second !== undefined && second.before === first.before && second.op === 'insert' && second.table === first.table;
}
