import type { ChangeEvent, RejectedChange } from '../core/change-event.js';
import { keyString } from '../core/change-event.js';
import { countByTableAndOp } from '../core/change-counts.js';
import { errorMessage, failureReason } from '../core/errors.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics/metrics.js';
import type { FailedChange } from './apply-batch.js';
import type { StatusCounters } from './stream-status.js';

export interface BatchCounting {
  labels: { stream: string; direction: string };
  metrics: Metrics;
  log: Logger;
  counters: StatusCounters;
}

/** An applied batch in the metrics and the status: the changes applied, and each dead-lettered one, logged. */
export function countBatch({ labels, metrics, log, counters }: BatchCounting, kept: ChangeEvent[], failures: FailedChange[], rejected: RejectedChange[]): void {
  // Per-change work here is per-change cost of the whole stream: key strings
  // only when something failed, and one counter increment per table and op.
  const failedKeys = failures.length > 0 ? new Set(failures.map((f) => `${f.event.table}\u0000${keyString(f.event.key)}`)) : null;
  const skip = failedKeys ? (e: ChangeEvent) => failedKeys.has(`${e.table}\u0000${keyString(e.key)}`) : undefined;
  for (const { table, op, count } of countByTableAndOp(kept, skip)) {
    metrics.applied.inc({ ...labels, table, op }, count);
    counters.applied += count;
  }
  for (const f of failures) {
    metrics.failed.inc({ ...labels, table: f.event.table, reason: f.reason });
    log.warn({ table: f.event.table, position: f.event.position, reason: f.reason, err: errorMessage(f.error) }, 'change dead-lettered');
  }
  for (const r of rejected) {
    metrics.failed.inc({ ...labels, table: r.table, reason: failureReason(r.error) });
    log.warn({ table: r.table, position: r.position, err: errorMessage(r.error) }, 'unreadable change dead-lettered');
  }
  counters.failed += failures.length + rejected.length;
  if (failures.length + rejected.length > 0) counters.lastError = errorMessage((failures[0]?.error ?? rejected[0]?.error)!);
}
