import { describe, expect, it } from 'vitest';
import { ByteQueue } from '../../../src/cdc/postgres/byte-queue.js';

describe('ByteQueue', () => {
  it('gives messages back in order, byte for byte, across blocks and for messages larger than a block', () => {
    const queue = new ByteQueue(64);
    const messages = [Buffer.from('a'), Buffer.alloc(0), Buffer.from('x'.repeat(40)), Buffer.from('y'.repeat(200)), Buffer.from('z')];
    for (const m of messages) queue.push(m);
    expect(queue.length).toBe(5);
    const out: string[] = [];
    while (queue.next()) out.push(queue.bytes.toString('utf8', queue.start, queue.end));
    expect(out).toEqual(messages.map((m) => m.toString()));
    expect(queue.length).toBe(0);
  });

  it('keeps its own copy: the buffer a message came in may be reused', () => {
    const queue = new ByteQueue();
    const incoming = Buffer.from('first');
    queue.push(incoming);
    incoming.write('XXXXX');
    expect(queue.next()).toBe(true);
    expect(queue.bytes.toString('utf8', queue.start, queue.end)).toBe('first');
  });

  it('takes new messages after being emptied, and forgets everything on clear', () => {
    const queue = new ByteQueue(16);
    queue.push(Buffer.from('one'));
    queue.next();
    queue.push(Buffer.from('the second, longer than what is left of the block'));
    expect(queue.next()).toBe(true);
    expect(queue.bytes.toString('utf8', queue.start, queue.end)).toBe('the second, longer than what is left of the block');
    queue.push(Buffer.from('three'));
    queue.clear();
    expect(queue.length).toBe(0);
    expect(queue.next()).toBe(false);
  });
});
