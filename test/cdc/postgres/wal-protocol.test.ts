import { describe, expect, it } from 'vitest';
import { pgoutputInsert, UNCHANGED } from '../../support/pg-messages.js';
import { decodePgOutput, insertRow, type RelationColumn } from '../../../src/cdc/postgres/wal-protocol.js';


const COLUMNS: RelationColumn[] = [
  { name: 'id', typeOid: 20, key: true },
  { name: 'name', typeOid: 25, key: false },
  { name: 'qty', typeOid: 23, key: false },
];
const TEMPLATE = { id: null, name: null, qty: null };
const convert = (typeOid: number, text: string) => (typeOid === 23 ? Number(text) : text);

describe('insertRow', () => {
  it('reads an Insert straight into a row with every column, nulls included, as decodePgOutput would', () => {
    const message = Buffer.concat([Buffer.from('prefix'), pgoutputInsert(['42', 'Zoë ✓', null])]);
    expect(insertRow(message, 6, COLUMNS, TEMPLATE, convert)).toEqual({ id: '42', name: 'Zoë ✓', qty: null });
    expect(decodePgOutput(message, 6)).toEqual({ tag: 'insert', relationId: 16384, newTuple: ['42', 'Zoë ✓', null] });
    expect(TEMPLATE).toEqual({ id: null, name: null, qty: null });
  });

  it('declines what it does not read, for decodePgOutput to take: an unchanged TOAST column, another column count, not an Insert', () => {
    expect(insertRow(pgoutputInsert(['1', UNCHANGED, '3']), 0, COLUMNS, TEMPLATE, convert)).toBeUndefined();
    expect(insertRow(pgoutputInsert(['1', 'a']), 0, COLUMNS, TEMPLATE, convert)).toBeUndefined();
    const update = pgoutputInsert(['1', 'a', '3']);
    update[0] = 0x55; // 'U'
    expect(insertRow(update, 0, COLUMNS, TEMPLATE, convert)).toBeUndefined();
  });
});
