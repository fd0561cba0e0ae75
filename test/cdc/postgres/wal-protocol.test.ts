import { describe, expect, it } from 'vitest';
import { decodePgOutput, insertRow, type RelationColumn } from '../../../src/cdc/postgres/wal-protocol.js';

/** pgoutput Insert ('I', relation id, 'N', tuple): https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html */
function insert(columns: (string | null | 'unchanged')[]): Buffer {
  const parts: Buffer[] = [Buffer.from('I'), Buffer.alloc(4), Buffer.from('N'), Buffer.alloc(2)];
  parts[1]!.writeUInt32BE(16384);
  parts[3]!.writeInt16BE(columns.length);
  for (const column of columns) {
    if (column === null) parts.push(Buffer.from('n'));
    else if (column === 'unchanged') parts.push(Buffer.from('u'));
    else {
      const bytes = Buffer.from(column, 'utf8');
      const length = Buffer.alloc(4);
      length.writeInt32BE(bytes.length);
      parts.push(Buffer.from('t'), length, bytes);
    }
  }
  return Buffer.concat(parts);
}

const COLUMNS: RelationColumn[] = [
  { name: 'id', typeOid: 20, key: true },
  { name: 'name', typeOid: 25, key: false },
  { name: 'qty', typeOid: 23, key: false },
];
const TEMPLATE = { id: null, name: null, qty: null };
const convert = (typeOid: number, text: string) => (typeOid === 23 ? Number(text) : text);

describe('insertRow', () => {
  it('reads an Insert straight into a row with every column, nulls included, as decodePgOutput would', () => {
    const message = Buffer.concat([Buffer.from('prefix'), insert(['42', 'Zoë ✓', null])]);
    expect(insertRow(message, 6, COLUMNS, TEMPLATE, convert)).toEqual({ id: '42', name: 'Zoë ✓', qty: null });
    expect(decodePgOutput(message, 6)).toEqual({ tag: 'insert', relationId: 16384, newTuple: ['42', 'Zoë ✓', null] });
    expect(TEMPLATE).toEqual({ id: null, name: null, qty: null });
  });

  it('declines what it does not read, for decodePgOutput to take: an unchanged TOAST column, another column count, not an Insert', () => {
    expect(insertRow(insert(['1', 'unchanged', '3']), 0, COLUMNS, TEMPLATE, convert)).toBeUndefined();
    expect(insertRow(insert(['1', 'a']), 0, COLUMNS, TEMPLATE, convert)).toBeUndefined();
    const update = insert(['1', 'a', '3']);
    update[0] = 0x55; // 'U'
    expect(insertRow(update, 0, COLUMNS, TEMPLATE, convert)).toBeUndefined();
  });
});
