import { append } from '../../core/arrays.js';
import { Observable, asyncScheduler, type OperatorFunction, type SchedulerLike, type Subscription } from 'rxjs';
import type { ChangeEvent, RejectedChange, SourceChunk } from '../../core/change-event.js';

/** What the sink is given once: changes of one or more whole chunks and the checkpoint after them. */
export interface Batch {
  events: ChangeEvent[];
  rejected: RejectedChange[];
  position: string;
  /** The source said its last chunk left nothing to read. */
  caughtUp?: boolean;
  /** The source said a read it has scheduled may still bring older changes (SourceChunk.readsPending). */
  readsPending?: boolean;
}

export interface BatchOptions {
  maxSize: number;
  maxWaitMs: number;
  scheduler?: SchedulerLike;
  /** Called when a chunk was taken in without closing the batch: the source may read more. */
  onAbsorbed?: () => void;
}

/**
 * Joins source chunks into batches of at most about `maxSize` changes. A batch
 * closes when it is full, when the source says it is caught up, or `maxWaitMs`
 * after its first chunk. Chunks are never split: a chunk is the unit a source
 * promised not to divide across checkpoints. On completion the open batch is
 * still emitted, so a stop finishes what was read.
 */
export function batchChunks(options: BatchOptions): OperatorFunction<SourceChunk, Batch> {
  const scheduler = options.scheduler ?? asyncScheduler;
  return (source) =>
    new Observable<Batch>((subscriber) => {
      let open: Batch | null = null;
      let timer: Subscription | null = null;

      const flush = () => {
        timer?.unsubscribe();
        timer = null;
        if (open) {
          const batch = open;
          open = null;
          subscriber.next(batch);
        }
      };

      const subscription = source.subscribe({
        next(chunk) {
          if (open) {
            append(open.events, chunk.events);
            append(open.rejected, chunk.rejected);
            open.position = chunk.position;
            open.caughtUp = chunk.caughtUp;
            open.readsPending = chunk.readsPending;
          } else {
            open = { events: [...chunk.events], rejected: [...chunk.rejected], position: chunk.position, caughtUp: chunk.caughtUp, readsPending: chunk.readsPending };
            if (options.maxWaitMs > 0 && !chunk.caughtUp) timer = scheduler.schedule(flush, options.maxWaitMs);
          }
          if (chunk.caughtUp || options.maxWaitMs === 0 || open.events.length + open.rejected.length >= options.maxSize) {
            flush();
          } else {
            options.onAbsorbed?.();
          }
        },
        error(error: unknown) {
          timer?.unsubscribe();
          subscriber.error(error);
        },
        complete() {
          flush();
          subscriber.complete();
        },
      });
      return () => {
        timer?.unsubscribe();
        subscription.unsubscribe();
      };
    });
}
