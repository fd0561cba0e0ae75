import type { ChangeEvent, Row } from '../core/change-event.js';

/** One resolved conflict, as a sink logs it (`cdc_sync.conflicts` in PostgreSQL, `cdc_sync_conflicts` in SQLite). */
export interface ConflictEntry {
  stream: string;
  /** Source table, as configured. */
  table: string;
  key: Row;
  rule: 'change-time' | 'updated-at';
  op: string;
  incoming: Row | null;
  incoming_time: Date | null;
  stored: Row | null;
  stored_time: Date | null;
  winner: 'incoming' | 'stored';
  winning: Row | null;
}

/**
 * newer-wins by change time in a two-way set-up: an incoming change loses
 * when the target's own change log holds a newer change of its key (an edit
 * made there that the other side had not seen when it made its own). Both
 * streams of a pair compare the same two times, each truncated to
 * milliseconds, and break a tie the same way (`preferIncoming` is true on
 * exactly one of them), so exactly one of two concurrent edits wins on both
 * sides and they converge.
 */
export function incomingLoses(storedTime: Date, incoming: ChangeEvent, preferIncoming: boolean): boolean {
  const newer = Math.floor(storedTime.getTime()) - incoming.commitTime.getTime();
  return newer > 0 || (newer === 0 && !preferIncoming);
}

/**
 * Whether a change is judged by change time against the target's change log.
 * Under the default rule every change is. Under newer-wins by the updated-at
 * column (`updatedAtRule`) the column decides between two updates of a row,
 * but a delete leaves no updated-at to compare: a change that meets one (an
 * incoming delete, or an incoming upsert of a row deleted here) is judged by
 * change time, so both sides of a pair compare the same two times. By the
 * column alone, each side applied the other's change and the row ended
 * deleted on one side only.
 */
export function judgedByChangeTime(updatedAtRule: boolean, incoming: ChangeEvent, stored: unknown): boolean {
  return !updatedAtRule || incoming.op === 'delete' || stored === null;
}

/** A batch's row changes of the tables that resolve by change time, per source table, in batch order. */
export function byChangeTimeTable(changes: ChangeEvent[], resolves: (table: string) => boolean): Map<string, ChangeEvent[]> {
  const byTable = new Map<string, ChangeEvent[]>();
  for (const e of changes) {
    if (e.op === 'truncate' || !resolves(e.table)) continue;
    const list = byTable.get(e.table);
    if (list) list.push(e);
    else byTable.set(e.table, [e]);
  }
  return byTable;
}

/** The log entry of an incoming change that lost to the stored row. */
export function lostToStored(stream: string, incoming: ChangeEvent, stored: Row | null, storedTime: Date | null): ConflictEntry {
  return {
    stream,
    table: incoming.table,
    key: incoming.key,
    rule: 'change-time',
    op: incoming.op,
    incoming: incoming.row,
    incoming_time: incoming.commitTime,
    stored,
    stored_time: storedTime,
    winner: 'stored',
    winning: stored,
  };
}

/**
 * Entries whose incoming change lost to a local delete (no stored row). A
 * sink in a two-way set-up writes each into its change log as a delete
 * stamped with the local delete's time (a ping-back), because the other
 * side's copy of that delete may have found nothing: it arrived while the
 * application there was still inserting the row. Stamped with the delete's
 * time, not now, so an edit made there after the delete still wins. A
 * winning stored row needs no ping-back: its own change crosses anyway.
 */
export function lostToDeletes(entries: ConflictEntry[]): ConflictEntry[] {
  return entries.filter((e) => e.rule === 'change-time' && e.stored === null && e.stored_time !== null);
}
