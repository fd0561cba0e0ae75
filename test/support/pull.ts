import { Subject, firstValueFrom, take, tap, toArray } from 'rxjs';
import type { Source } from '../../src/cdc/source.js';
import type { SourceChunk } from '../../src/core/change-event.js';

/** Pulls `n` chunks from a source, asking for the next one after each, as the stream does after a commit. */
export function pull(source: Source, from: string | null, n: number): Promise<SourceChunk[]> {
  const demand = new Subject<void>();
  return firstValueFrom(
    source.chunks(from, demand).pipe(
      take(n),
      tap(() => setTimeout(() => demand.next(), 0)),
      toArray(),
    ),
  );
}

/** Follows a source from `from`, asking for the next chunk after each; `chunks` fills as they arrive. */
export function follow(source: Source, from: string | null): { chunks: SourceChunk[]; stop(): void } {
  const chunks: SourceChunk[] = [];
  const demand = new Subject<void>();
  const subscription = source.chunks(from, demand).subscribe((chunk) => {
    chunks.push(chunk);
    setTimeout(() => demand.next(), 0);
  });
  return { chunks, stop: () => subscription.unsubscribe() };
}

/**
 * Reads a source one chunk at a time, as the stream does: `next()` asks for
 * the next chunk and waits for it, at most `waitMs` when given (null then:
 * the source had nothing; the chunk asked for is the next one handed out).
 */
export function stepper(source: Source, from: string | null): { next(waitMs?: number): Promise<SourceChunk | null>; stop(): void } {
  const demand = new Subject<void>();
  const arrived: SourceChunk[] = [];
  let waiting: ((chunk: SourceChunk) => void) | undefined;
  let asked: Promise<SourceChunk> | undefined;
  let started = false;
  const subscription = source.chunks(from, demand).subscribe((chunk) => {
    if (waiting) {
      const resolve = waiting;
      waiting = undefined;
      resolve(chunk);
    } else arrived.push(chunk);
  });
  return {
    async next(waitMs) {
      if (!asked) {
        // The first chunk comes unasked (the stream's startWith); each later one after a demand.
        if (started) demand.next();
        started = true;
        const ready = arrived.shift();
        asked = ready ? Promise.resolve(ready) : new Promise((resolve) => (waiting = resolve));
      }
      const chunk = await (waitMs === undefined ? asked : Promise.race([asked, new Promise<null>((r) => setTimeout(() => r(null), waitMs))]));
      if (chunk) asked = undefined;
      return chunk;
    },
    stop: () => subscription.unsubscribe(),
  };
}
