import type { ChangeEvent, Row } from '../../core/change-event.js';
import { Lsn } from './lsn.js';

/** One row of cdc.fn_cdc_get_all_changes_<instance>, tagged with its table. */
export interface CdcRow {
  table: string;
  lsn: Lsn;
  seqval: Lsn;
  /** 1 delete, 2 insert, 3 update before-image, 4 update after-image. */
  operation: number;
  row: Row;
}

export function compareRows(a: CdcRow, b: CdcRow): number {
  return a.lsn.compare(b.lsn) || a.seqval.compare(b.seqval) || a.operation - b.operation;
}

export interface Cut {
  rows: CdcRow[];
  /** Last (lsn, seqval) fully included; seqval null when the whole transaction at lsn is. */
  lsn: Lsn;
  seqval: Lsn | null;
}

/**
 * Trims merged rows so the chunk ends on a whole transaction. `limit` is the
 * first (lsn, seqval) some read could not see past (it was cut by TOP); rows
 * from there on are dropped, and so is the last, partly read transaction —
 * unless it is the only one, too large for one read: then the chunk ends
 * inside it, after the last whole (lsn, seqval) group, and the seqval says
 * where. `upto` is the published max LSN, the position when nothing was cut.
 */
export function cutRows(rows: CdcRow[], limit: { lsn: Lsn; seqval: Lsn } | null, upto: Lsn): Cut {
  if (!limit) return { rows, lsn: upto, seqval: null };
  const before = rows.filter((r) => r.lsn.compare(limit.lsn) < 0 || (r.lsn.equals(limit.lsn) && r.seqval.compare(limit.seqval) < 0));
  const whole = before.filter((r) => r.lsn.compare(limit.lsn) < 0);
  if (whole.length > 0) return { rows: whole, lsn: whole.at(-1)!.lsn, seqval: null };
  const last = before.at(-1);
  if (!last) throw new Error('a read returned no complete change; raise readLimit');
  return { rows: before, lsn: last.lsn, seqval: last.seqval };
}

/**
 * Turns CDC rows into change events: the before (3) and after (4) image of
 * an update become one update; a delete and an insert with the same seqval
 * (a deferred update, or an update of a unique key) become one update when
 * the key is the same, or a delete then an insert when the key changed —
 * never an insert followed by a delete, which would lose the row.
 */
export function toEvents(
  rows: CdcRow[],
  keyOf: (table: string, row: Row) => Row,
  sourceOf: (table: string) => string,
  commitTime: (lsn: Lsn) => Date,
  position: string,
): ChangeEvent[] {
  const events: ChangeEvent[] = [];
  for (let i = 0; i < rows.length; ) {
    let j = i;
    while (j < rows.length && rows[j]!.table === rows[i]!.table && rows[j]!.lsn.equals(rows[i]!.lsn) && rows[j]!.seqval.equals(rows[i]!.seqval)) j += 1;
    const group = rows.slice(i, j);
    i = j;
    const first = group[0]!;
    const base = { table: sourceOf(first.table), position, commitTime: commitTime(first.lsn) };
    const find = (op: number) => group.find((r) => r.operation === op)?.row;
    const deleted = find(1);
    const inserted = find(2);
    const old = find(3);
    const updated = find(4);
    if (updated) {
      events.push({ ...base, op: 'update', key: keyOf(first.table, updated), row: updated, before: old ?? null });
    } else if (deleted && inserted) {
      const oldKey = keyOf(first.table, deleted);
      const newKey = keyOf(first.table, inserted);
      if (JSON.stringify(oldKey) === JSON.stringify(newKey)) {
        events.push({ ...base, op: 'update', key: newKey, row: inserted, before: deleted });
      } else {
        events.push({ ...base, op: 'delete', key: oldKey, row: null, before: deleted });
        events.push({ ...base, op: 'insert', key: newKey, row: inserted });
      }
    } else if (inserted) {
      events.push({ ...base, op: 'insert', key: keyOf(first.table, inserted), row: inserted });
    } else if (deleted) {
      events.push({ ...base, op: 'delete', key: keyOf(first.table, deleted), row: null, before: deleted });
    }
  }
  return events;
}
