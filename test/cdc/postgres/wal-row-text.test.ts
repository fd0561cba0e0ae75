import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { pgoutputInsert, UNCHANGED } from '../../support/pg-messages.js';
import { CopyLines, TupleShape } from '../../../src/cdc/postgres/wal-row-text.js';
import { decodePgOutput, type RelationColumn } from '../../../src/cdc/postgres/wal-protocol.js';
import { fromText } from '../../../src/cdc/postgres/wal-values.js';
import { rowText } from '../../../src/core/row-text.js';
import { JsonText } from '../../../src/core/json.js';


const COLUMNS: RelationColumn[] = [
  { name: 'id', typeOid: 20, key: true },
  { name: 'name', typeOid: 25, key: false },
  { name: 'qty', typeOid: 23, key: false },
  { name: 'doc', typeOid: 3802, key: false },
  { name: 'tags', typeOid: 1009, key: false }, // text[]: no logical type reads it unchanged
];

/** The row decodePgOutput's tuple gives, read with fromText: what the WAL source made of every Insert before text rows. */
function decodedAtOnce(message: Buffer, offset = 0): Record<string, unknown> {
  const decoded = decodePgOutput(message, offset);
  if (decoded.tag !== 'insert') throw new Error('not an insert');
  return Object.fromEntries(COLUMNS.map((c, i) => [c.name, decoded.newTuple[i] === null ? null : fromText(c.typeOid, decoded.newTuple[i]!)]));
}

describe('TupleShape.newTuple', () => {
  it('keeps an Insert as a text row that reads as the row decodePgOutput gives, with its key read at once', () => {
    const shape = new TupleShape(COLUMNS, ['id']);
    const message = Buffer.concat([Buffer.from('prefix'), pgoutputInsert(['42', 'Zoë ✓\ttab', null, '{"a": 2.50}', '{x,"y z"}'])]);
    const inserted = { row: shape.newTuple(message, 6, new CopyLines())!, key: shape.key };
    expect(inserted.key).toEqual({ id: '42' });
    const text = rowText(inserted.row)!;
    expect(text.columns).toEqual(['id', 'name', 'qty', 'doc', 'tags']);
    expect(text.shape.types).toEqual(['integer', 'text', 'integer', 'json', undefined]);
    // The line COPY reads: tab-separated, \N for NULL, the tab inside a value escaped.
    expect(text.bytes.toString('utf8', text.start, text.end)).toBe('42\tZoë ✓\\ttab\t\\N\t{"a": 2.50}\t{x,"y z"}\n');
    // Not decoded until read.
    expect(text.row).toBeUndefined();
    expect({ ...inserted.row }).toEqual(decodedAtOnce(message, 6));
    expect((inserted.row.doc as JsonText).text).toBe('{"a": 2.50}');
    expect(text.row).toBeDefined();
  });

  it('answers every way a plain row does once read: keys in order, in, JSON, spread, assignment', () => {
    const shape = new TupleShape(COLUMNS, ['id']);
    const row = shape.newTuple(pgoutputInsert(['7', 'seven', '3', null, null]), 0, new CopyLines())!;
    expect(Object.keys(row)).toEqual(['id', 'name', 'qty', 'doc', 'tags']);
    const names: string[] = [];
    for (const name in row) names.push(name);
    expect(names).toEqual(Object.keys(row));
    expect('qty' in row && !('other' in row)).toBe(true);
    expect(JSON.parse(JSON.stringify(row))).toEqual({ id: '7', name: 'seven', qty: 3, doc: null, tags: null });
    expect(Object.prototype.hasOwnProperty.call(row, 'name')).toBe(true);
    row.qty = 4;
    expect(row.qty).toBe(4);
    expect(Object.getPrototypeOf(row)).toBe(Object.prototype);
  });

  it('reads a key of several columns, in the configured order, and a configured key column the relation lacks as null', () => {
    const shape = new TupleShape(COLUMNS, ['qty', 'id', 'missing']);
    shape.newTuple(pgoutputInsert(['1', 'a', '5', null, null]), 0, new CopyLines());
    expect(shape.key).toEqual({ qty: 5, id: '1', missing: null });
  });

  it('keeps the new tuple of an Update without old tuple (its key unchanged) as a text row too', () => {
    const shape = new TupleShape(COLUMNS, ['id']);
    // 'U', relation id, 'N', the new tuple: the Insert's layout with another tag.
    const update = pgoutputInsert(['9', 'nine', '4', null, null]);
    update[0] = 0x55;
    const row = shape.newTuple(update, 0, new CopyLines())!;
    expect(shape.key).toEqual({ id: '9' });
    const text = rowText(row)!;
    expect(text.bytes.toString('utf8', text.start, text.end)).toBe('9\tnine\t4\t\\N\t\\N\n');
    expect({ ...row }).toEqual({ id: '9', name: 'nine', qty: 4, doc: null, tags: null });
  });

  it('declines what it does not read, for decodePgOutput to take: an unchanged TOAST column, another column count, an Update with an old tuple, a Delete', () => {
    const shape = new TupleShape(COLUMNS, ['id']);
    expect(shape.newTuple(pgoutputInsert(['1', UNCHANGED, '3', null, null]), 0, new CopyLines())).toBeUndefined();
    expect(shape.newTuple(pgoutputInsert(['1', 'a']), 0, new CopyLines())).toBeUndefined();
    // An Update whose key changed: 'U', relation id, 'K' and the old key's tuple, then 'N' and the new tuple.
    const oldKey = pgoutputInsert(['1', null, null, null, null]);
    const newTuple = pgoutputInsert(['2', 'a', '3', null, null]);
    const keyChanged = Buffer.concat([Buffer.from('U'), oldKey.subarray(1, 5), Buffer.from('K'), oldKey.subarray(6), newTuple.subarray(5)]);
    expect(decodePgOutput(keyChanged)).toMatchObject({ tag: 'update', oldKind: 'K', newTuple: ['2', 'a', '3', null, null] });
    expect(shape.newTuple(keyChanged, 0, new CopyLines())).toBeUndefined();
    const deleted = Buffer.from(oldKey);
    deleted[0] = 0x44; // 'D'
    deleted[5] = 0x4b; // 'K'
    expect(shape.newTuple(deleted, 0, new CopyLines())).toBeUndefined();
  });

  it('writes a line COPY reads as the values, and decodes back to the row decodePgOutput gives, for any text (property)', () => {
    const value = fc.option(fc.string({ unit: 'binary', maxLength: 40 }), { nil: null });
    const shape = new TupleShape(COLUMNS.map((c) => ({ ...c, typeOid: 25 })), ['id']);
    const lines = new CopyLines();
    fc.assert(
      fc.property(fc.tuple(value, value, value, value, value), (values) => {
        const message = pgoutputInsert(values);
        const text = rowText(shape.newTuple(message, 0, lines)!)!;
        // COPY's text format, read as the server reads it: split on tabs, \N is NULL, then the four escapes.
        const line = text.bytes.toString('latin1', text.start, text.end);
        expect(line.endsWith('\n')).toBe(true);
        const fields = line.slice(0, -1).split('\t').map((f) => (f === '\\N' ? null : Buffer.from(f.replace(/\\(.)/g, (_, c: string) => ({ n: '\n', r: '\r', t: '\t' })[c] ?? c), 'latin1').toString('utf8')));
        expect(fields).toEqual(values);
        expect(text.shape.decode(text.bytes, text.start, text.end)).toEqual(Object.fromEntries(COLUMNS.map((c, i) => [c.name, values[i]])));
      }),
    );
  });

  it('writes the lines of consecutive inserts one after the other in one buffer, a new buffer when one is full', () => {
    const shape = new TupleShape(COLUMNS, ['id']);
    const lines = new CopyLines();
    const texts = Array.from({ length: 3000 }, (_, i) => rowText(shape.newTuple(pgoutputInsert([String(i), 'x'.repeat(100), null, null, null]), 0, lines)!)!);
    let follows = 0;
    for (let i = 1; i < texts.length; i += 1) if (texts[i]!.bytes === texts[i - 1]!.bytes && texts[i]!.start === texts[i - 1]!.end) follows += 1;
    // 3000 lines of ~110 bytes in 256 KiB buffers: two buffers, one break.
    expect(follows).toBe(texts.length - 2);
    expect(texts.map((t) => t.bytes.toString('utf8', t.start, t.end))).toEqual(texts.map((_, i) => `${i}\t${'x'.repeat(100)}\t\\N\t\\N\t\\N\n`));
  });
});
