import { describe, expect, it } from 'vitest';
import type { Row } from '../../src/core/change-event.js';
import { plainRow, RowText, rowText, textRow, type RowTextShape } from '../../src/core/row-text.js';

/** A shape whose lines are "a<TAB>b\n" of two text columns, counting its decodes. */
function shape(): RowTextShape & { decodes: number } {
  return {
    decodes: 0,
    columns: ['a', 'b'],
    types: ['text', 'text'],
    decode(bytes, start, end) {
      this.decodes += 1;
      const [a, b] = bytes.toString('utf8', start, end - 1).split('\t');
      return { a: a!, b: b === '\\N' ? null : b! };
    },
  };
}

const line = (text: string) => Buffer.from(`${text}\n`);

describe('text rows', () => {
  it('are found as text, undecoded, and plain rows are not', () => {
    const s = shape();
    const bytes = line('x\ty');
    const row = textRow(new RowText(s, bytes, 0, bytes.length));
    expect(rowText(row)?.bytes).toBe(bytes);
    expect(rowText({ a: 1 })).toBeUndefined();
    expect(s.decodes).toBe(0);
  });

  it('decode once, at the first look, and then read as the plain row they decoded to, every way a row is read', () => {
    const s = shape();
    const bytes = line('x\t\\N');
    const row = textRow(new RowText(s, bytes, 0, bytes.length));
    expect(row.a).toBe('x');
    expect(s.decodes).toBe(1);
    expect({ ...row }).toEqual({ a: 'x', b: null });
    expect(Object.keys(row)).toEqual(['a', 'b']);
    expect(Object.entries(row)).toEqual([
      ['a', 'x'],
      ['b', null],
    ]);
    const seen: string[] = [];
    for (const name in row) seen.push(name);
    expect(seen).toEqual(['a', 'b']);
    expect('b' in row && !('c' in row)).toBe(true);
    expect(JSON.stringify(row)).toBe('{"a":"x","b":null}');
    expect(Object.getPrototypeOf(row)).toBe(Object.prototype);
    row.c = 3;
    delete row.a;
    expect({ ...row }).toEqual({ b: null, c: 3 });
    expect(s.decodes).toBe(1);
  });

  it('give their decoded row itself as the plain row; a plain row is its own', () => {
    const s = shape();
    const bytes = line('x\ty');
    const row = textRow(new RowText(s, bytes, 0, bytes.length));
    const plain = plainRow(row);
    expect(rowText(plain)).toBeUndefined();
    expect(plain).toEqual({ a: 'x', b: 'y' });
    expect(plainRow(row)).toBe(plain);
    const other: Row = { a: 1 };
    expect(plainRow(other)).toBe(other);
  });
});
