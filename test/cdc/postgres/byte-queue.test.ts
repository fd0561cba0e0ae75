import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ByteQueue } from '../../../src/cdc/postgres/byte-queue.js';
import { backendMessage } from '../../support/pg-messages.js';

/** A CopyData message: 'd', its length, the payload. */
const copyData = (payload: string) => backendMessage('d', Buffer.from(payload, 'utf8'));

function drain(queue: ByteQueue): string[] {
  const out: string[] = [];
  while (queue.next()) out.push(queue.bytes.toString('utf8', queue.start, queue.end));
  return out;
}

describe('ByteQueue', () => {
  it('gives back the payloads of queued CopyData runs in order, byte for byte, an empty one included', () => {
    const queue = new ByteQueue();
    const first = Buffer.concat([Buffer.from('xx'), copyData('wa'), copyData(''), copyData('w' + 'é'.repeat(40)), Buffer.from('yy')]);
    queue.push(first, 2, first.length - 2, 3);
    const second = copyData('wz');
    queue.push(second, 0, second.length, 1);
    expect(queue.length).toBe(4);
    expect(drain(queue)).toEqual(['wa', '', 'w' + 'é'.repeat(40), 'wz']);
    expect(queue.length).toBe(0);
    expect(queue.next()).toBe(false);
  });

  it('takes new runs after being emptied, keeps order over thousands of runs, and forgets everything on clear', () => {
    const queue = new ByteQueue();
    const one = copyData('one');
    queue.push(one, 0, one.length, 1);
    expect(drain(queue)).toEqual(['one']);
    const expected: string[] = [];
    for (let i = 0; i < 3000; i += 1) {
      const message = copyData(`m${i}`);
      queue.push(message, 0, message.length, 1);
      expected.push(`m${i}`);
      // Never quite empty: one read per two pushed.
      if (i % 2 === 0) expect(queue.next()).toBe(true);
    }
    expect(drain(queue)).toEqual(expected.slice(1500));
    queue.push(one, 0, one.length, 1);
    queue.clear();
    expect(queue.length).toBe(0);
    expect(queue.next()).toBe(false);
  });

  it('copies what it queues, so the buffer a run arrived in may change (or be collected) at once', () => {
    const queue = new ByteQueue();
    const read = Buffer.concat([copyData('wone'), copyData('wtwo')]);
    queue.push(read, 0, read.length, 2);
    read.fill(0);
    expect(drain(queue)).toEqual(['wone', 'wtwo']);
  });

  it('uses its memory again: once read, the same slab takes the next runs', () => {
    const queue = new ByteQueue();
    const first = copyData('wfirst');
    queue.push(first, 0, first.length, 1);
    expect(queue.next()).toBe(true);
    const slab = queue.bytes;
    expect(queue.next()).toBe(false);
    const second = copyData('wsecond');
    queue.push(second, 0, second.length, 1);
    expect(queue.next()).toBe(true);
    expect(queue.bytes).toBe(slab);
    expect(queue.bytes.toString('utf8', queue.start, queue.end)).toBe('wsecond');
  });

  it('keeps a message larger than a slab whole, between smaller ones', () => {
    const queue = new ByteQueue();
    const large = 'w' + 'x'.repeat(300 * 1024);
    for (const payload of ['wa', large, 'wb']) {
      const message = copyData(payload);
      queue.push(message, 0, message.length, 1);
    }
    expect(queue.byteLength).toBe(3 * 5 + 2 + large.length + 2);
    expect(drain(queue)).toEqual(['wa', large, 'wb']);
  });

  it('reads back any interleaving of pushed runs and reads in order, byte for byte', () => {
    // Runs of up to four messages, of sizes across the slab's edge (256 KiB), pushed and read in random turns.
    const run = fc.array(fc.oneof(fc.integer({ min: 0, max: 70_000 }), fc.integer({ min: 200_000, max: 300_000 })), { minLength: 1, maxLength: 4 });
    const step = fc.oneof(run.map((sizes) => ({ push: sizes })), fc.integer({ min: 1, max: 6 }).map((reads) => ({ reads })));
    fc.assert(
      fc.property(fc.array(step, { maxLength: 30 }), (steps) => {
        const queue = new ByteQueue();
        const sent: string[] = [];
        const got: string[] = [];
        let id = 0;
        for (const s of steps) {
          if ('push' in s) {
            const payloads = s.push.map((size) => `w${id++}:`.padEnd(size + 1, String.fromCharCode(97 + (id % 26))));
            const bytes = Buffer.concat([Buffer.from('pre'), ...payloads.map(copyData), Buffer.from('post')]);
            queue.push(bytes, 3, bytes.length - 4, payloads.length);
            // A run that fits a slab is copied; a larger one is kept (a socket read is at most 64 KiB, so only a single large message is).
            if (bytes.length - 7 <= 256 * 1024) bytes.fill(0);
            sent.push(...payloads);
          } else {
            for (let i = 0; i < s.reads && queue.next(); i += 1) got.push(queue.bytes.toString('utf8', queue.start, queue.end));
          }
        }
        got.push(...drain(queue));
        // Compared one by one: a diff of texts this long overflows the stack.
        expect(got.length).toBe(sent.length);
        expect(got.findIndex((g, i) => g !== sent[i])).toBe(-1);
        expect(queue.length).toBe(0);
        expect(queue.byteLength).toBe(0);
      }),
      { numRuns: 200 },
    );
  });
});
