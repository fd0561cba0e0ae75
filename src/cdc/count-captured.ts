import type { ChangeEvent } from '../core/change-event.js';
import type { StreamContext } from '../streams/context.js';

/** `cdc_sync_events_captured_total` for a read: one increment per table and op, not one per change. */
export function countCaptured(context: StreamContext, events: ChangeEvent[]): void {
  const counts = new Map<string, { table: string; op: ChangeEvent['op']; count: number }>();
  for (const e of events) {
    const id = `${e.table}\u0000${e.op}`;
    const entry = counts.get(id);
    if (entry) entry.count += 1;
    else counts.set(id, { table: e.table, op: e.op, count: 1 });
  }
  for (const { table, op, count } of counts.values()) {
    context.metrics.captured.inc({ stream: context.stream, direction: context.direction, table, op }, count);
  }
}
