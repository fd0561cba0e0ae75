import type { BatchLog } from '../control/batch-log.js';
import type { Batch } from './operators/batch-chunks.js';

/** Adds a batch to the recent batches of `GET /api/sync/logs`, when the stream keeps them. */
export function logBatch(log: BatchLog | undefined, stream: string, batch: Batch, failed: { table: string }[], started: number, error?: string): void {
  if (!log) return;
  const tables: Record<string, { applied: number; failed: number }> = {};
  const entry = (table: string) => (tables[table] ??= { applied: 0, failed: 0 });
  for (const f of failed) entry(f.table).failed += 1;
  // Events of a failed batch were not applied; otherwise every event that did not fail was.
  for (const e of batch.events) if (!error) entry(e.table).applied += 1;
  for (const t of Object.values(tables)) t.applied = Math.max(0, t.applied - t.failed);
  log.add({
    time: new Date().toISOString(),
    stream,
    tables,
    durationMs: Math.round(performance.now() - started),
    ...(error ? { error } : {}),
  });
}
