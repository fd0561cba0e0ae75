import { append } from '../core/arrays.js';
import type { ChangeEvent } from '../core/change-event.js';
import { PermanentError, errorMessage, failureReason, isTransient, type FailureReason } from '../core/errors.js';
import { toJsonText } from '../core/json.js';
import type { ApplyResult, DeadLetter, Sink, SinkBatch } from '../sinks/sink.js';
import { retryTransient, type RetryHooks, type RetryPolicy } from './retry.js';

export interface FailedChange {
  event: ChangeEvent;
  error: Error;
  reason: FailureReason;
}

export interface ApplyOutcome {
  applied: ChangeEvent[];
  failed: FailedChange[];
  written: number;
  conflicts: NonNullable<ApplyResult['conflicts']>;
  /** Open dead letters that a later change of their key made obsolete (closed by the sink). */
  superseded: number;
}

/**
 * Applies a batch so that one bad change cannot hold back the others: the
 * whole batch first; on a permanent error the batch is halved and each half
 * applied on its own, down to the single changes that fail, which become dead
 * letters. The halves keep the batch order, so parents still precede children.
 * The dead letters and the checkpoint are committed last, after every part.
 */
export async function applyBatch(
  sink: Sink,
  batch: SinkBatch,
  stream: string,
  policy: RetryPolicy,
  hooks: RetryHooks,
  /**
   * Once the failing changes are known: those to dead-letter (the others
   * are held back by the caller) and the checkpoint to store instead of the
   * batch's (null: none).
   */
  settle?: (failed: FailedChange[]) => { letters: FailedChange[]; checkpoint: SinkBatch['checkpoint'] | null },
): Promise<ApplyOutcome> {
  const apply = (part: SinkBatch) => retryTransient(() => sink.apply(part), policy, hooks);
  try {
    const { written, conflicts = [], superseded = 0 } = await apply(batch);
    return { applied: batch.changes, failed: [], written, conflicts, superseded };
  } catch (error) {
    if (isTransient(error) || !(error instanceof PermanentError) || batch.changes.length === 0) throw error;
  }

  const outcome: ApplyOutcome = { applied: [], failed: [], written: 0, conflicts: [], superseded: 0 };
  const isolate = async (part: ChangeEvent[]): Promise<void> => {
    if (part.length === 0) return;
    try {
      const { written, conflicts = [], superseded = 0 } = await apply({ changes: part, deadLetters: [], ...(batch.more ? { more: true } : {}) });
      append(outcome.applied, part);
      outcome.written += written;
      outcome.superseded += superseded;
      append(outcome.conflicts, conflicts);
    } catch (error) {
      if (isTransient(error) || !(error instanceof PermanentError)) throw error;
      if (part.length === 1) {
        outcome.failed.push({ event: part[0]!, error: error as Error, reason: failureReason(error) });
        return;
      }
      const middle = Math.ceil(part.length / 2);
      await isolate(part.slice(0, middle));
      await isolate(part.slice(middle));
    }
  };
  const middle = Math.ceil(batch.changes.length / 2);
  await isolate(batch.changes.slice(0, middle));
  await isolate(batch.changes.slice(middle));

  const settled = settle?.(outcome.failed) ?? { letters: outcome.failed, checkpoint: batch.checkpoint ?? null };
  outcome.failed = settled.letters;
  const deadLetters = [...batch.deadLetters, ...settled.letters.map((f) => deadLetterFor(stream, f))];
  await apply({ changes: [], deadLetters, ...(batch.checkpoint && settled.checkpoint ? { checkpoint: settled.checkpoint } : {}) });
  return outcome;
}

export function deadLetterFor(stream: string, failed: FailedChange): DeadLetter {
  const { event } = failed;
  return {
    stream,
    table: event.table,
    key: event.key,
    payload: toJsonText({ op: event.op, key: event.key, row: event.row, before: event.before ?? null, commitTime: event.commitTime }),
    error: errorMessage(failed.error),
    reason: failed.reason,
    position: event.position,
  };
}
