import type { ChangeEvent } from '../core/change-event.js';
import { countByTableAndOp } from '../core/change-counts.js';
import type { StreamContext } from '../streams/context.js';

/** `cdc_sync_events_captured_total` for a read: one increment per table and op, not one per change. */
export function countCaptured(context: StreamContext, events: ChangeEvent[]): void {
  for (const { table, op, count } of countByTableAndOp(events)) {
    context.metrics.captured.inc({ stream: context.stream, direction: context.direction, table, op }, count);
  }
}
