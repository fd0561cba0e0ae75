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
