import type { ChangeEvent } from './change-event.js';

/** Changes per table and op; `skip` leaves some out. Nested maps: no string built per change. */
export function countByTableAndOp(events: ChangeEvent[], skip?: (event: ChangeEvent) => boolean): { table: string; op: ChangeEvent['op']; count: number }[] {
  const byTable = new Map<string, Map<ChangeEvent['op'], number>>();
  for (const e of events) {
    if (skip?.(e)) continue;
    let ops = byTable.get(e.table);
    if (!ops) byTable.set(e.table, (ops = new Map()));
    ops.set(e.op, (ops.get(e.op) ?? 0) + 1);
  }
  const counts: { table: string; op: ChangeEvent['op']; count: number }[] = [];
  for (const [table, ops] of byTable) for (const [op, count] of ops) counts.push({ table, op, count });
  return counts;
}
