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
});
