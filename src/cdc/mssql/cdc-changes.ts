import type { ChangeEvent, Row } from '../../core/change-event.js';
import { Lsn } from './lsn.js';

/** One row of a change table cdc.<instance>_CT, tagged with its table. */
export interface CdcRow {
  table: string;
  lsn: Lsn;
  /** Order of the statement within its transaction. */
  commandId: number;
  seqval: Lsn;
  /** 1 delete, 2 insert, 3 update before-image, 4 update after-image. */
  operation: number;
  row: Row;
}

/** Commit order, then statement order within a transaction (__$command_id, not __$seqval: see cdc-queries.ts). */
export function compareRows(a: CdcRow, b: CdcRow): number {
  return a.lsn.compare(b.lsn) || a.commandId - b.commandId || a.seqval.compare(b.seqval) || a.operation - b.operation;
}

/**
 * Turns the rows of whole transactions into change events, one statement
 * (table, LSN, command id) at a time. A statement changes each row once,
 * but SQL Server may log a row whose key changed as a delete and an insert
 * with different seqvals, the insert first, and a key-moving bulk update
 * (`SET id = id + 1`) as deletes, inserts and updates of keys other rows
 * had. So within a statement: the before (3) and after (4) images of one
 * seqval pair up; a delete and an insert of the same key are one update;
 * an update whose key changed is a delete of the old key and an insert of
 * the new one; and every remaining delete comes before every insert or
 * update, so no row the statement kept is lost.
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
    const first = rows[i]!;
    while (j < rows.length && rows[j]!.table === first.table && rows[j]!.lsn.equals(first.lsn) && rows[j]!.commandId === first.commandId) j += 1;
    const base = { table: sourceOf(first.table), position, commitTime: commitTime(first.lsn) };
    const keyText = (row: Row) => JSON.stringify(keyOf(first.table, row));
    const deletes: { key: string; row: Row }[] = [];
    const writes: { key: string; row: Row; before: Row | null }[] = [];
    const statement = rows.slice(i, j);
    i = j;
    const consumed = new Set<CdcRow>();
    for (let k = 0; k < statement.length; k += 1) {
      const r = statement[k]!;
      if (consumed.has(r)) continue;
      if (r.operation === 3) {
        const after = statement.slice(k + 1).find((n) => n.operation === 4 && n.seqval.equals(r.seqval));
        if (!after) continue; // the after-image is what counts; a lone before-image carries nothing to apply
        if (keyText(r.row) === keyText(after.row)) writes.push({ key: keyText(after.row), row: after.row, before: r.row });
        else {
          deletes.push({ key: keyText(r.row), row: r.row });
          writes.push({ key: keyText(after.row), row: after.row, before: null });
        }
        consumed.add(after);
      } else if (r.operation === 4) {
        writes.push({ key: keyText(r.row), row: r.row, before: null });
      } else if (r.operation === 1) {
        deletes.push({ key: keyText(r.row), row: r.row });
      } else if (r.operation === 2) {
        writes.push({ key: keyText(r.row), row: r.row, before: null });
      }
    }
    const deleted = new Map(deletes.map((d) => [d.key, d]));
    const paired = new Set<string>();
    for (const w of writes) {
      const d = deleted.get(w.key);
      if (d && !paired.has(w.key)) {
        paired.add(w.key);
        w.before ??= d.row;
      }
    }
    for (const d of deletes) {
      if (!paired.has(d.key)) events.push({ ...base, op: 'delete', key: keyOf(first.table, d.row), row: null, before: d.row });
    }
    for (const w of writes) {
      const op = w.before ? 'update' : 'insert';
      events.push({ ...base, op, key: keyOf(first.table, w.row), row: w.row, ...(w.before ? { before: w.before } : {}) });
    }
  }
  return events;
}

/**
 * Rows a checkpoint written inside a transaction already covers (positions
 * of older versions, which split a transaction too large for one read).
 */
export function afterLegacySeqval(rows: CdcRow[], lsn: Lsn, seqval: Lsn | null): CdcRow[] {
  if (!seqval) return rows;
  return rows.filter((r) => !r.lsn.equals(lsn) || r.seqval.compare(seqval) > 0);
}

/**
 * Echo suppression: `own` holds the commit LSNs of transactions that
 * changed cdc_sync.origin_marker. Such a transaction was
 * written by cdc-sync's SQL Server sink (it marks every transaction), so
 * all of it is dropped and counted, and nothing goes back where it came from.
 */
export function dropOwn(rows: CdcRow[], own: Set<string>, suppressed: (row: CdcRow) => void): CdcRow[] {
  if (own.size === 0) return rows;
  const kept: CdcRow[] = [];
  for (const r of rows) {
    if (!own.has(r.lsn.toString())) kept.push(r);
    else if (r.operation !== 3) suppressed(r);
  }
  return kept;
}
