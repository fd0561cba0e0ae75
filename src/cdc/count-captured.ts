import type { ChangeEvent } from '../core/change-event.js';
import { countByTableAndOp } from '../core/change-counts.js';
import type { StreamContext } from '../streams/context.js';
import { isKeyChange } from './key-change.js';

/**
 * `cdc_sync_events_captured_total` for a read: one increment per table and op, not one per change.
 * A key change counts once, as the `update` the source recorded (one edit, one change-log row or
 * pgoutput Update), though it reaches the sink as a delete and an insert (see keyChange) and
 * `cdc_sync_events_applied_total` counts those two.
 */
export function countCaptured(context: StreamContext, events: ChangeEvent[]): void {
  const labels = { stream: context.stream, direction: context.direction };
  // Key changes are rare: no set and no map unless the read has one.
  let halves: Set<ChangeEvent> | undefined;
  let keyChanges: Map<string, number> | undefined;
  for (let i = 0; i < events.length - 1; i += 1) {
    if (!isKeyChange(events, i)) continue;
    halves ??= new Set();
    keyChanges ??= new Map();
    halves.add(events[i]!).add(events[i + 1]!);
    keyChanges.set(events[i]!.table, (keyChanges.get(events[i]!.table) ?? 0) + 1);
    i += 1;
  }
  for (const { table, op, count } of countByTableAndOp(events, halves && ((e) => halves.has(e)))) {
    context.metrics.captured.inc({ ...labels, table, op }, count);
  }
  for (const [table, count] of keyChanges ?? []) context.metrics.captured.inc({ ...labels, table, op: 'update' }, count);
}
