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
  // Sized once (a batch is up to 10,000 changes), not grown by push.
  const mapped = new Array<ChangeEvent>(events.length);
  let count = 0;
  const failures: FailedChange[] = [];
  for (let i = 0; i < events.length; i += 1) {
    const event = events[i]!;
    try {
      const mappedEvent = mappings.get(event.table)!.mapEvent(event);
      mapped[count] = mappedEvent;
      count += 1;
    } catch (error) {
      failures.push({ event, error: error as Error, reason: failureReason(error) });
    }
  }
  mapped.length = count;
  const { kept, noops } = dropNoops(mapped);
  const changes = coalesce(kept, tableOrder);
  return { batch, kept, noops, failures, changes };
}
