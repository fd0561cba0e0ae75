import { describe, expect, it } from 'vitest';
import { Subject } from 'rxjs';
import { ReadGeneration } from '../../src/cdc/read-generation.js';

/** A reader whose read moves a shared cursor, as every polling source's does. */
function reader() {
  const generations = new ReadGeneration();
  const state = { cursor: 0, events: [] as string[] };
  let release: (() => void) | undefined;
  const subscribe = (from: number, name: string, slow = false) => {
    const demand = new Subject<void>();
    const chunks: number[] = [];
    const subscription = generations
      .chunks(
        demand,
        () => {
          state.events.push(`${name} starts at ${from}`);
          state.cursor = from;
        },
        async (stale, stop) => {
          if (stale()) return null;
          if (slow) await new Promise<void>((r) => (release = r));
          state.cursor += 1;
          state.events.push(`${name} read to ${state.cursor}`);
          if (stale()) return null;
          if (state.cursor > 3) {
            // Nothing more: an idle wait that a new subscription cuts short.
            await new Promise((r) => stop.addEventListener('abort', r));
            state.events.push(`${name} idle wait ended`);
            return null;
          }
          return state.cursor;
        },
      )
      .subscribe((chunk) => chunks.push(chunk));
    return { demand, chunks, subscription };
  };
  return { state, subscribe, release: () => release?.() };
}

const tick = () => new Promise((r) => setTimeout(r, 0));

describe('ReadGeneration', () => {
  it('starts a new subscription from its checkpoint only after the given-up one’s read in progress ended, whose chunk is never handed over', async () => {
    const { state, subscribe, release } = reader();
    const first = subscribe(0, 'first', true);
    await tick();
    // The stream gives the first subscription up while its read is in progress, and subscribes again from position 0.
    first.subscription.unsubscribe();
    const second = subscribe(0, 'second');
    await tick();
    expect(state.events).toEqual(['first starts at 0']);
    release();
    await tick();
    await tick();
    expect(state.events).toEqual(['first starts at 0', 'first read to 1', 'second starts at 0', 'second read to 1']);
    expect(first.chunks).toEqual([]);
    expect(second.chunks).toEqual([1]);
  });

  it('ends the given-up subscription’s idle wait at once, so the new one reads without waiting for it', async () => {
    const { state, subscribe } = reader();
    const first = subscribe(3, 'first');
    await tick();
    expect(state.events).toEqual(['first starts at 3', 'first read to 4']);
    first.subscription.unsubscribe();
    const second = subscribe(1, 'second');
    await tick();
    await tick();
    expect(state.events).toEqual(['first starts at 3', 'first read to 4', 'first idle wait ended', 'second starts at 1', 'second read to 2']);
    second.demand.next();
    await tick();
    expect(second.chunks).toEqual([2, 3]);
  });
});
