import { throwError } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import { describe, expect, it } from 'vitest';
import type { ChangeEvent, RejectedChange, SourceChunk } from '../../../src/core/change-event.js';
import { batchChunks, type Batch, type BatchOptions } from '../../../src/streams/operators/batch-chunks.js';

const commitTime = new Date('2024-01-01T00:00:00Z');

/** `count` inserts whose ids start at `first`; the chunk's position is the last id. */
function chunk(first: number, count: number, caughtUp = false, rejected: RejectedChange[] = []): SourceChunk {
  const events: ChangeEvent[] = [];
  for (let id = first; id < first + count; id++) {
    events.push({ table: 'dbo.t', op: 'insert', key: { id }, row: { id }, position: String(id), commitTime });
  }
  return { events, rejected, position: String(first + count - 1), caughtUp };
}

/** The batch made of whole chunks, in order; caught up when its last chunk was. */
function batchOf(...chunks: SourceChunk[]): Batch {
  return {
    events: chunks.flatMap((c) => c.events),
    rejected: chunks.flatMap((c) => c.rejected),
    position: chunks.at(-1)!.position,
    caughtUp: chunks.at(-1)!.caughtUp,
  };
}

function scheduler(): TestScheduler {
  return new TestScheduler((actual, expected) => expect(actual).toEqual(expected));
}

describe('batchChunks', () => {
  it('closes a batch as soon as it holds maxSize changes', () => {
    const ts = scheduler();
    ts.run(({ cold, expectObservable }) => {
      const a = chunk(1, 2);
      const b = chunk(3, 2);
      const c = chunk(5, 1);
      const source = cold('a-b-c-|', { a, b, c });
      const options: BatchOptions = { maxSize: 4, maxWaitMs: 1000, scheduler: ts };
      // a+b reach 4 at frame 2; c stays open until completion at frame 6.
      expectObservable(source.pipe(batchChunks(options))).toBe('--x---(y|)', { x: batchOf(a, b), y: batchOf(c) });
    });
  });

  it('counts rejected changes towards maxSize', () => {
    const ts = scheduler();
    ts.run(({ cold, expectObservable }) => {
      const rejected: RejectedChange = { table: 'dbo.t', key: null, payload: '{', error: new Error('bad json'), position: '2' };
      const a = chunk(1, 1, false, [rejected]);
      const source = cold('a----|', { a });
      expectObservable(source.pipe(batchChunks({ maxSize: 2, maxWaitMs: 1000, scheduler: ts }))).toBe('x----|', { x: batchOf(a) });
    });
  });

  it('closes the batch at once when the source says it is caught up', () => {
    const ts = scheduler();
    ts.run(({ cold, expectObservable }) => {
      const a = chunk(1, 1);
      const b = chunk(2, 1, true);
      const c = chunk(3, 1, true);
      const source = cold('a-b--c---|', { a, b, c });
      expectObservable(source.pipe(batchChunks({ maxSize: 100, maxWaitMs: 1000, scheduler: ts }))).toBe('--x--y---|', {
        x: batchOf(a, b),
        y: batchOf(c),
      });
    });
  });

  it('closes maxWaitMs after the first chunk of the batch, not after the last', () => {
    const ts = scheduler();
    ts.run(({ cold, expectObservable }) => {
      const a = chunk(1, 1);
      const b = chunk(2, 1);
      const c = chunk(3, 1);
      // a at 0, b at 3, c at 7 (after the timer of a+b fired at 5), complete at 30.
      const source = cold('a 2ms b 3ms c 22ms |', { a, b, c });
      expectObservable(source.pipe(batchChunks({ maxSize: 100, maxWaitMs: 5, scheduler: ts }))).toBe('5ms x 6ms y 17ms |', {
        x: batchOf(a, b),
        y: batchOf(c),
      });
    });
  });

  it('emits nothing while no chunk arrives (the timer starts with the first chunk)', () => {
    const ts = scheduler();
    ts.run(({ cold, expectObservable }) => {
      const a = chunk(1, 1);
      const source = cold('20ms a 20ms |', { a });
      expectObservable(source.pipe(batchChunks({ maxSize: 100, maxWaitMs: 5, scheduler: ts }))).toBe('25ms x 15ms |', { x: batchOf(a) });
    });
  });

  it('never splits a chunk: a chunk larger than maxSize passes whole', () => {
    const ts = scheduler();
    ts.run(({ cold, expectObservable }) => {
      const big = chunk(1, 7);
      const small = chunk(8, 1);
      const source = cold('a-b-|', { a: small, b: big });
      expectObservable(source.pipe(batchChunks({ maxSize: 3, maxWaitMs: 1000, scheduler: ts }))).toBe('--x-|', { x: batchOf(small, big) });
    });
    const emitted: Batch[] = [];
    const ts2 = scheduler();
    ts2.run(({ cold }) => {
      cold('a|', { a: chunk(1, 7) })
        .pipe(batchChunks({ maxSize: 3, maxWaitMs: 1000, scheduler: ts2 }))
        .subscribe((b) => emitted.push(b));
    });
    expect(emitted).toHaveLength(1);
    expect(emitted[0]!.events.map((e) => e.key.id)).toEqual([1, 2, 3, 4, 5, 6, 7]);
  });

  it('emits the open batch when the source completes', () => {
    const ts = scheduler();
    ts.run(({ cold, expectObservable }) => {
      const a = chunk(1, 1);
      const b = chunk(2, 2);
      const source = cold('a-b|', { a, b });
      expectObservable(source.pipe(batchChunks({ maxSize: 100, maxWaitMs: 1000, scheduler: ts }))).toBe('---(x|)', { x: batchOf(a, b) });
    });
  });

  it('completes without a batch when nothing was read', () => {
    const ts = scheduler();
    ts.run(({ cold, expectObservable }) => {
      expectObservable(cold<SourceChunk>('---|').pipe(batchChunks({ maxSize: 10, maxWaitMs: 5, scheduler: ts }))).toBe('---|');
    });
  });

  it('propagates a source error and drops the open batch', () => {
    const ts = scheduler();
    ts.run(({ cold, expectObservable }) => {
      const a = chunk(1, 1);
      const b = chunk(2, 1);
      const failure = new Error('connection lost');
      const source = cold('a-b--#', { a, b }, failure);
      // The batch a+b is open when the error arrives: it is not emitted, not even later.
      expectObservable(source.pipe(batchChunks({ maxSize: 100, maxWaitMs: 10, scheduler: ts }))).toBe('-----#', undefined, failure);
    });
  });

  it('keeps closed batches that were emitted before the error', () => {
    const ts = scheduler();
    ts.run(({ cold, expectObservable }) => {
      const a = chunk(1, 2);
      const b = chunk(3, 1);
      const failure = new Error('boom');
      const source = cold('a-b-#', { a, b }, failure);
      expectObservable(source.pipe(batchChunks({ maxSize: 2, maxWaitMs: 10, scheduler: ts }))).toBe('x---#', { x: batchOf(a) }, failure);
    });
  });

  it('errors at once when the source fails before any chunk', () => {
    const ts = scheduler();
    ts.run(({ expectObservable }) => {
      const failure = new Error('cannot connect');
      expectObservable(throwError(() => failure).pipe(batchChunks({ maxSize: 10, maxWaitMs: 5, scheduler: ts }))).toBe('#', undefined, failure);
    });
  });

  it('calls onAbsorbed only when a chunk was taken in without closing the batch', () => {
    const ts = scheduler();
    const absorbedAt: number[] = [];
    ts.run(({ cold, expectObservable, flush }) => {
      const a = chunk(1, 1); // absorbed (1 < 3)
      const b = chunk(2, 2); // closes at maxSize (3)
      const c = chunk(4, 1, true); // closes: caught up
      const d = chunk(5, 1); // absorbed, then closed by the timer
      const source = cold('a-b-c-d 9ms |', { a, b, c, d });
      const options: BatchOptions = { maxSize: 3, maxWaitMs: 5, scheduler: ts, onAbsorbed: () => absorbedAt.push(ts.now()) };
      expectObservable(source.pipe(batchChunks(options))).toBe('--x-y 6ms z 4ms |', {
        x: batchOf(a, b),
        y: batchOf(c),
        z: batchOf(d),
      });
      flush();
    });
    expect(absorbedAt).toEqual([0, 6]);
  });

  it('does not call onAbsorbed when maxWaitMs is 0 (every chunk is its own batch)', () => {
    const ts = scheduler();
    let absorbed = 0;
    ts.run(({ cold, expectObservable }) => {
      const a = chunk(1, 1);
      const b = chunk(2, 1);
      expectObservable(
        cold('a-b|', { a, b }).pipe(batchChunks({ maxSize: 100, maxWaitMs: 0, scheduler: ts, onAbsorbed: () => absorbed++ })),
      ).toBe('x-y|', { x: batchOf(a), y: batchOf(b) });
    });
    expect(absorbed).toBe(0);
  });

  it('subscribes to the source exactly once and unsubscribes when it completes', () => {
    const ts = scheduler();
    ts.run(({ cold, expectObservable, expectSubscriptions }) => {
      const a = chunk(1, 2);
      const b = chunk(3, 2);
      const c = chunk(5, 1);
      const source = cold('a-b-c 5ms |', { a, b, c });
      expectObservable(source.pipe(batchChunks({ maxSize: 4, maxWaitMs: 100, scheduler: ts }))).toBe('--x 7ms (y|)', {
        x: batchOf(a, b),
        y: batchOf(c),
      });
      expectSubscriptions(source.subscriptions).toBe('^ 9ms !');
    });
  });

  it('unsubscribes from the source and cancels the timer when the consumer unsubscribes', () => {
    const ts = scheduler();
    ts.run(({ cold, expectObservable, expectSubscriptions }) => {
      const a = chunk(1, 1);
      const source = cold('a 20ms |', { a });
      // Unsubscribed at frame 3, before the timer (frame 5) would have emitted.
      expectObservable(source.pipe(batchChunks({ maxSize: 10, maxWaitMs: 5, scheduler: ts })), '^--!').toBe('----');
      expectSubscriptions(source.subscriptions).toBe('^--!');
    });
  });

  it('does not mutate the chunks it joins', () => {
    const ts = scheduler();
    const a = chunk(1, 1);
    const b = chunk(2, 1);
    ts.run(({ cold }) => {
      cold('ab|', { a, b }).pipe(batchChunks({ maxSize: 10, maxWaitMs: 5, scheduler: ts })).subscribe();
    });
    expect(a.events).toHaveLength(1);
    expect(b.events).toHaveLength(1);
  });
});
