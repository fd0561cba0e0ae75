import type { ChangeEvent } from '../core/change-event.js';
import { failureReason } from '../core/errors.js';
import type { TableMapping } from '../core/mapping.js';
import type { FailedChange } from './apply-batch.js';
import type { Batch } from './operators/batch-chunks.js';
import { coalesce } from './operators/coalesce.js';
import { dropNoops } from './operators/drop-noops.js';

/** A batch mapped and ordered for the sink, waiting its turn. */
export interface PreparedBatch {
  batch: Batch;
  kept: ChangeEvent[];
  noops: ChangeEvent[];
  failures: FailedChange[];
  /** What the sink applies: kept changes, last image per key, in dependency order. */
  changes: ChangeEvent[];
}

/** Maps a batch to target names and types and orders it for the sink; changes that cannot be mapped are set aside. */
export function prepareBatch(batch: Batch, mappings: Map<string, TableMapping>, tableOrder: string[]): PreparedBatch {
  const events = batch.events;
  const mapped: ChangeEvent[] = [];
  const failures: FailedChange[] = [];
  // An index loop, as in countByTableAndOp: no iterator result per change.
  for (let i = 0; i < events.length; i += 1) {
    const event = events[i]!;
    try {
      mapped.push(mappings.get(event.table)!.mapEvent(event));
    } catch (error) {
      failures.push({ event, error: error as Error, reason: failureReason(error) });
    }
  }
  const { kept, noops } = dropNoops(mapped);
  const changes = coalesce(kept, tableOrder);
  return { batch, kept, noops, failures, changes };
}
