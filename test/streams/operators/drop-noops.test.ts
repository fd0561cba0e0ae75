import { describe, expect, it } from 'vitest';
import type { ChangeEvent, Op, Row } from '../../../src/core/change-event.js';
import { canonicalValue } from '../../../src/core/values.js';
import { dropNoops } from '../../../src/streams/operators/drop-noops.js';

const commitTime = new Date('2024-01-01T00:00:00Z');

function change(op: Op, row: Row | null, before?: Row | null): ChangeEvent {
  return { table: 'public.t', op, key: { id: 1 }, row, ...(before !== undefined ? { before } : {}), position: '1', commitTime };
}

describe('dropNoops', () => {
  it('drops an update whose before- and after-image are equal', () => {
    const noop = change('update', { id: 1, name: 'Ann', n: 2 }, { id: 1, name: 'Ann', n: 2 });
    expect(dropNoops([noop])).toEqual({ kept: [], noops: [noop] });
  });

  it('keeps an update that changes one column', () => {
    const real = change('update', { id: 1, name: 'Anne' }, { id: 1, name: 'Ann' });
    expect(dropNoops([real])).toEqual({ kept: [real], noops: [] });
  });

  it('keeps an update where a column appears only on one side', () => {
    const added = change('update', { id: 1, name: 'Ann', extra: 'x' }, { id: 1, name: 'Ann' });
    const removed = change('update', { id: 1 }, { id: 1, name: 'Ann' });
    expect(dropNoops([added, removed]).kept).toEqual([added, removed]);
  });

  it('ignores the column order of the images', () => {
    const noop = change('update', { b: 2, a: 1 }, { a: 1, b: 2 });
    expect(dropNoops([noop]).noops).toEqual([noop]);
  });

  it('compares a Date and its ISO text as equal, as canonicalValue does', () => {
    const at = new Date('2024-03-04T05:06:07.089Z');
    expect(canonicalValue(at)).toBe(canonicalValue('2024-03-04T05:06:07.089Z'));
    const noop = change('update', { id: 1, at: '2024-03-04T05:06:07.089Z' }, { id: 1, at });
    expect(dropNoops([noop]).noops).toEqual([noop]);
  });

  it('sees a different instant as a change', () => {
    const moved = change('update', { id: 1, at: '2024-03-04T05:06:08.089Z' }, { id: 1, at: new Date('2024-03-04T05:06:07.089Z') });
    expect(dropNoops([moved]).kept).toEqual([moved]);
  });

  it('compares a Buffer and its \\x-hex text as equal, as canonicalValue does', () => {
    const bytes = Buffer.from([0xde, 0xad, 0xbe, 0xef]);
    expect(canonicalValue(bytes)).toBe(canonicalValue('\\xdeadbeef'));
    const noop = change('update', { id: 1, data: '\\xdeadbeef' }, { id: 1, data: bytes });
    const changed = change('update', { id: 1, data: '\\xdeadbeee' }, { id: 1, data: bytes });
    expect(dropNoops([noop, changed])).toEqual({ kept: [changed], noops: [noop] });
  });

  it('compares a number with its decimal text and a bigint with its digits as equal', () => {
    const noop = change('update', { id: 1, price: '12.5', big: '9007199254740993' }, { id: 1, price: 12.5, big: 9007199254740993n });
    expect(dropNoops([noop]).noops).toEqual([noop]);
  });

  it('compares JSON objects regardless of key order, but not booleans with their text', () => {
    const sameJson = change('update', { id: 1, doc: { b: [1, 2], a: 'x' } }, { id: 1, doc: { a: 'x', b: [1, 2] } });
    const boolText = change('update', { id: 1, flag: 'true' }, { id: 1, flag: true });
    expect(dropNoops([sameJson, boolText])).toEqual({ kept: [boolText], noops: [sameJson] });
  });

  it('treats null and a missing column as equal', () => {
    const noop = change('update', { id: 1, note: null }, { id: 1 });
    expect(dropNoops([noop]).noops).toEqual([noop]);
  });

  it('keeps inserts and deletes even when their images are equal', () => {
    const insert = change('insert', { id: 1 }, { id: 1 });
    const del = change('delete', null, { id: 1 });
    expect(dropNoops([insert, del])).toEqual({ kept: [insert, del], noops: [] });
  });

  it('keeps updates without a before-image', () => {
    const noBefore = change('update', { id: 1, name: 'Ann' });
    const nullBefore = change('update', { id: 1, name: 'Ann' }, null);
    expect(dropNoops([noBefore, nullBefore])).toEqual({ kept: [noBefore, nullBefore], noops: [] });
  });

  it('keeps the order of the changes it keeps', () => {
    const a = change('insert', { id: 1 });
    const noop = change('update', { id: 1 }, { id: 1 });
    const b = change('update', { id: 2 }, { id: 1 });
    const c = change('delete', null);
    expect(dropNoops([a, noop, b, c]).kept).toEqual([a, b, c]);
  });
});
