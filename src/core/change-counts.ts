import type { ChangeEvent } from './change-event.js';

/**
 * Changes per table and op; `skip` leaves some out. A batch is mostly long
 * runs of one table and op: each run is counted with a plain counter, and only
 * its total goes into the maps (no string built per change).
 */
export function countByTableAndOp(events: ChangeEvent[], skip?: (event: ChangeEvent) => boolean): { table: string; op: ChangeEvent['op']; count: number }[] {
  const byTable = new Map<string, Map<ChangeEvent['op'], number>>();
  const add = (table: string, op: ChangeEvent['op'], n: number) => {
    let ops = byTable.get(table);
    if (!ops) byTable.set(table, (ops = new Map()));
    ops.set(op, (ops.get(op) ?? 0) + n);
  };
  let table: string | undefined;
  let op: ChangeEvent['op'] = 'insert';
  let run = 0;
  // An index loop: a for-of over 10,000 changes, in code V8 has not optimized yet, makes an iterator result per change.
  for (let i = 0; i < events.length; i += 1) {
    const e = events[i]!;
    if (skip?.(e)) continue;
    if (e.table === table && e.op === op) {
      run += 1;
      continue;
    }
    if (run > 0) add(table!, op, run);
    table = e.table;
    op = e.op;
    run = 1;
  }
  if (run > 0) add(table!, op, run);
  const counts: { table: string; op: ChangeEvent['op']; count: number }[] = [];
  for (const [t, ops] of byTable) for (const [o, count] of ops) counts.push({ table: t, op: o, count });
  return counts;
}
