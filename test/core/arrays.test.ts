import { describe, expect, it } from 'vitest';
import { append } from '../../src/core/arrays.js';

describe('append', () => {
  it('appends more items than a spread push can pass as arguments (one large source transaction)', () => {
    const many = Array.from({ length: 300_000 }, (_, i) => i);
    expect(() => [0].push(...many)).toThrow(RangeError);
    const target = [-1];
    expect(append(target, many)).toBe(target);
    expect(target).toHaveLength(300_001);
    expect(target.at(-1)).toBe(299_999);
  });
});
