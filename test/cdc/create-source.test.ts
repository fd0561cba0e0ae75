import { describe, expect, it } from 'vitest';
import { walBufferSize } from '../../src/cdc/index.js';

describe('walBufferSize', () => {
  it('holds one read by default, at least 10,000 changes, so the walsender is not paused every small batch', () => {
    expect(walBufferSize(undefined, 500)).toBe(10_000);
    expect(walBufferSize(undefined, 10_000)).toBe(10_000);
    expect(walBufferSize(undefined, 25_000)).toBe(25_000);
  });

  it('takes the configured size as it is', () => {
    expect(walBufferSize(1000, 10_000)).toBe(1000);
  });
});
