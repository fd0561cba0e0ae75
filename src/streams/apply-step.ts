import { append } from '../core/arrays.js';
import type { RejectedChange } from '../core/change-event.js';
import { errorMessage, failureReason } from '../core/errors.js';
import type { Logger } from '../log.js';
import type { DeadLetter } from '../sinks/sink.js';
import { applyBatch, deadLetterFor, type FailedChange } from './apply-batch.js';
import { countBatch } from './count-batch.js';
import { coalesce } from './operators/coalesce.js';
import type { ParkedChanges } from './parked-changes.js';
import type { PreparedBatch } from './prepare-batch.js';
import { retryTransient } from './retry.js';
import type { StreamHealth } from './stream-health.js';
import type { StreamParts } from './stream-parts.js';
import type { StatusCounters } from './stream-status.js';

/** What applying a batch works with: the stream's parts, the changes it holds back, its health and its status. */
export interface ApplyStepContext {
  name: string;
  labels: { stream: string; direction: string };
  parts: StreamParts;
  parked: ParkedChanges;
  /** The order the sink applies tables in (parents first), as found when the sink was last opened. */
  tableOrder(): string[];
  log: Logger;
  health: StreamHealth;
  counters: StatusCounters;
  /** The batch is in (stored, counted): the stream goes on from its position. */
  advance(position: string): void;
}

/** Applies one batch; returns the changes that went to the dead letter (source table names). */
export async function applyStep(
  step: ApplyStepContext,
  { batch, kept, noops, failures, changes }: PreparedBatch,
  started: number,
  onSent: () => void,
): Promise<{ table: string }[]> {
  const { name, labels, parts, parked, log, health, counters } = step;
  const { config, sink, metrics } = parts;
  // Changes held back for a missing parent go again, in front: this batch's newer changes of a key supersede them.
  const retried = parked.events();
  if (retried.length > 0) changes = coalesce([...retried, ...changes], step.tableOrder());
  // Queue sources mark rows done by the batch's position (committed): nothing may be held back past it. A log
  // reader that only acknowledges (JetStream, a replication slot) holds: the held changes live in the checkpoint.
  const holds = !parts.source.marksDone;
  const settle = (failed: FailedChange[]) => {
    // Held while the source has more to read; while a read it has scheduled (or another partition) may still bring
    // the parent, for up to HOLD_LIMIT_MS; then the parent is not coming.
    const letters = holds ? parked.settle(failed, { caughtUp: batch.caughtUp ?? false, readsPending: batch.readsPending ?? false }) : failed;
    return { letters, checkpoint: { stream: name, position: parked.checkpoint(batch.position) } };
  };
  for (const e of noops) metrics.suppressed.inc({ ...labels, table: e.table, reason: 'no-op' });
  const deadLetters: DeadLetter[] = [
    ...batch.rejected.map((r) => rejectedLetter(name, r)),
    ...failures.map((f) => deadLetterFor(name, f)),
  ];
  const checkpoint = parts.checkpoints ? undefined : { stream: name, position: batch.position };
  const letterStore = parts.deadLetters;
  const outcome = await applyBatch(
    sink,
    { changes, deadLetters: letterStore ? [] : deadLetters, ...(checkpoint ? { checkpoint } : {}), onSent, ...(!batch.caughtUp || batch.readsPending ? { more: true } : {}) },
    name,
    config.retry,
    health.retryHooks('sink'),
    settle,
  );
  // Applied whole: nothing is held any more.
  if (outcome.failed.length === 0 && parked.size > 0 && outcome.applied.length === changes.length) settle([]);
  const stored = parked.checkpoint(batch.position);
  parts.source.holding?.(parked.size);
  // Caught up, a held change may wait long (its parent comes through another partition, or never): say so once.
  if (batch.caughtUp && parked.newlyHeld.size > 0) {
    log.info({ tables: Object.fromEntries(parked.newlyHeld), held: parked.size }, 'changes held until their parent arrives (tried again with each read, dead-lettered if it does not come)');
  }
  // A sink without transactions cannot keep dead letters: they are stored before the checkpoint moves past them.
  if (letterStore) await letterStore.append([...deadLetters, ...outcome.failed.map((f) => deadLetterFor(name, f))]);
  await parts.conflictLog?.append(outcome.conflicts.flatMap((c) => (c.entry ? [c.entry] : [])));
  if (parts.checkpoints) {
    const store = parts.checkpoints;
    await retryTransient(() => store.save(name, stored), config.retry, health.retryHooks('sink'));
  }
  append(failures, outcome.failed);
  if (outcome.superseded > 0) {
    log.info({ deadLetters: outcome.superseded }, 'dead letters superseded: a later change of their key is applied, so retry-failed will not write the older one');
  }
  for (const conflict of outcome.conflicts) {
    metrics.conflicts.inc({ ...labels, table: conflict.table });
    log.warn({ table: conflict.table, key: conflict.key }, 'conflict: the target row is newer; the incoming change lost (newer-wins)');
  }
  if (parts.source.committed) {
    const failed = [
      ...failures.map((f) => ({ sourceRef: f.event.sourceRef, table: f.event.table, error: errorMessage(f.error) })),
      ...batch.rejected.map((r) => ({ sourceRef: r.sourceRef, table: r.table, error: errorMessage(r.error) })),
    ];
    const source = parts.source;
    await retryTransient(() => source.committed!(batch.position, failed), config.retry, health.retryHooks('source'));
  }
  countBatch({ labels, metrics, log, counters }, retried.length > 0 ? [...retried.filter((e) => !parked.holds(e)), ...kept] : kept, failures, batch.rejected);
  metrics.batchDuration.observe(labels, (performance.now() - started) / 1000);
  health.applied(batch.events.findLast((e) => !e.copied)?.commitTime, batch.caughtUp ?? false);
  counters.lastAppliedAt = new Date();
  metrics.lastApplied.set(labels, counters.lastAppliedAt.getTime() / 1000);
  step.advance(batch.position);
  return [...failures.map((f) => ({ table: f.event.table })), ...batch.rejected.map((r) => ({ table: r.table }))];
}

function rejectedLetter(stream: string, r: RejectedChange): DeadLetter {
  return {
    stream,
    table: r.table,
    key: r.key,
    payload: r.payload,
    error: errorMessage(r.error),
    reason: failureReason(r.error),
    position: r.position,
  };
}
