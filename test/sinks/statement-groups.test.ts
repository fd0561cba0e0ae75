import { describe, expect, it } from 'vitest';
import type { ChangeEvent, Row } from '../../src/core/change-event.js';
import { groupStatements } from '../../src/sinks/statement-groups.js';
import { CopyLines, TupleShape } from '../../src/cdc/postgres/wal-row-text.js';
import { rowText } from '../../src/core/row-text.js';
import { pgoutputInsert } from '../support/pg-messages.js';

const at = new Date(0);
const upsert = (table: string, row: Row): ChangeEvent => ({ table, op: 'update', key: { id: row.id ?? null }, row, position: '1', commitTime: at });
const remove = (table: string, id: number): ChangeEvent => ({ table, op: 'delete', key: { id }, row: null, position: '1', commitTime: at });

describe('groupStatements', () => {
  it('puts rows of one table and kind with the same columns in one group, whatever order they list them in', () => {
    const groups = groupStatements([upsert('a', { id: 1, x: 1 }), upsert('a', { x: 2, id: 2 }), upsert('a', { id: 3, x: 3 })]);
    expect(groups.map((g) => [g.table, g.op, g.columns, g.events.map((e) => e.key.id)])).toEqual([['a', 'upsert', ['id', 'x'], [1, 2, 3]]]);
  });

  it('groups text rows by their columns without decoding them, with plain rows of the same columns', () => {
    const shape = new TupleShape(
      [
        { name: 'x', typeOid: 25, key: false },
        { name: 'id', typeOid: 23, key: true },
      ],
      ['id'],
    );
    const lines = new CopyLines();
    const text = (id: number): ChangeEvent => {
      const row = shape.newTuple(pgoutputInsert(['v', String(id)]), 0, lines)!;
      const key = shape.key;
      return { table: 'a', op: 'insert', key, row, position: '1', commitTime: at };
    };
    const events = [text(1), upsert('a', { id: 2, x: 'p' }), text(3)];
    const groups = groupStatements(events);
    expect(groups.map((g) => [g.columns, g.events.map((e) => e.key.id)])).toEqual([[['id', 'x'], [1, 2, 3]]]);
    expect(rowText(events[0]!.row!)!.row).toBeUndefined();
    expect(rowText(events[2]!.row!)!.row).toBeUndefined();
  });

  it('splits rows whose columns differ, so a column one row lacks is never written as null', () => {
    const groups = groupStatements([upsert('a', { id: 1, x: 1 }), upsert('a', { id: 2 }), upsert('a', { id: 3, x: 3, y: 3 }), upsert('a', { id: 4, x: 4 })]);
    expect(groups.map((g) => [g.columns, g.events.map((e) => e.key.id)])).toEqual([
      [['id', 'x'], [1, 4]],
      [['id'], [2]],
      [['id', 'x', 'y'], [3]],
    ]);
  });

  it('starts new groups for each run of another table or kind, keeping the batch order', () => {
    const groups = groupStatements([remove('child', 1), remove('parent', 2), upsert('parent', { id: 3 }), upsert('child', { id: 4 }), upsert('parent', { id: 5 })]);
    expect(groups.map((g) => `${g.op} ${g.table} ${g.events.map((e) => e.key.id).join(',')} (${g.columns.join(',')})`)).toEqual([
      'delete child 1 (id)',
      'delete parent 2 (id)',
      'upsert parent 3 (id)',
      'upsert child 4 (id)',
      'upsert parent 5 (id)',
    ]);
  });
});
