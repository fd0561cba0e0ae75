import { describe, expect, it } from 'vitest';
import type { ChangeEvent, Op } from '../../src/core/change-event.js';
import { countByTableAndOp } from '../../src/core/change-counts.js';

const event = (table: string, op: Op, id: number): ChangeEvent => ({ table, op, key: { id }, row: null, position: '1', commitTime: new Date(0) });

describe('countByTableAndOp', () => {
  it('counts changes per table and op across runs and interleavings, leaving out what skip names', () => {
    const events = [
      event('a', 'insert', 1),
      event('a', 'insert', 2),
      event('b', 'insert', 3),
      event('a', 'insert', 4),
      event('a', 'update', 5),
      event('a', 'update', 6),
      event('b', 'delete', 7),
      event('a', 'insert', 8),
    ];
    expect(countByTableAndOp(events)).toEqual([
      { table: 'a', op: 'insert', count: 4 },
      { table: 'a', op: 'update', count: 2 },
      { table: 'b', op: 'insert', count: 1 },
      { table: 'b', op: 'delete', count: 1 },
    ]);
    expect(countByTableAndOp(events, (e) => e.key.id === 2 || e.key.id === 7)).toEqual([
      { table: 'a', op: 'insert', count: 3 },
      { table: 'a', op: 'update', count: 2 },
      { table: 'b', op: 'insert', count: 1 },
    ]);
    expect(countByTableAndOp([])).toEqual([]);
  });
});
