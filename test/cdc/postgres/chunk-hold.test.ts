import { describe, expect, it } from 'vitest';
import { holdChunk, type HoldState } from '../../../src/cdc/postgres/chunk-hold.js';

/** Mid-backlog: a chunk not yet full, the server still sending, a message a moment ago. */
const streaming: HoldState = { full: false, serverIdle: false, undecoded: false, sinceLastXLogData: 2, sinceHeld: 20, holdMs: 100 };

describe('holdChunk', () => {
  it('holds a chunk that is not full back while the server is still sending', () => {
    expect(holdChunk(streaming)).toBe(true);
    // Messages received and not decoded yet are more of the same.
    expect(holdChunk({ ...streaming, undecoded: true, sinceLastXLogData: 500 })).toBe(true);
  });

  it('lets a full chunk go at once', () => {
    expect(holdChunk({ ...streaming, full: true })).toBe(false);
  });

  it('lets a chunk go once the server said with a keepalive that it has sent all it has, and all of that is decoded', () => {
    expect(holdChunk({ ...streaming, serverIdle: true })).toBe(false);
    expect(holdChunk({ ...streaming, serverIdle: true, undecoded: true })).toBe(true);
  });

  it('lets a chunk go when no message came for holdMs (a walsender busy with other WAL sends no keepalive)', () => {
    expect(holdChunk({ ...streaming, sinceLastXLogData: 99 })).toBe(true);
    expect(holdChunk({ ...streaming, sinceLastXLogData: 100 })).toBe(false);
  });

  it('holds a chunk no longer than ten times holdMs in all, however steadily messages trickle in', () => {
    expect(holdChunk({ ...streaming, sinceHeld: 999 })).toBe(true);
    expect(holdChunk({ ...streaming, sinceHeld: 1000 })).toBe(false);
    expect(holdChunk({ ...streaming, undecoded: true, sinceHeld: 1000 })).toBe(false);
  });
});
