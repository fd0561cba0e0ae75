import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { ChangeEvent, Op, Row } from '../../../src/core/change-event.js';
import { keyChange } from '../../../src/cdc/key-change.js';
import { coalesce } from '../../../src/streams/operators/coalesce.js';

const commitTime = new Date('2024-01-01T00:00:00Z');
let position = 0;

function change(table: string, op: Op, key: Row, row: Row | null = op === 'delete' ? null : { ...key }): ChangeEvent {
  position += 1;
  return { table, op, key, row, position: String(position), commitTime };
}

/** Tables parents first: orders reference customers, lines reference orders. */
const ORDER = ['customers', 'orders', 'lines'];

const brief = (events: ChangeEvent[]) => events.map((e) => `${e.op} ${e.table} ${JSON.stringify(e.key)}`);

describe('coalesce', () => {
  it('keeps the last change of a key: insert then update becomes one insert with the last row (the row is new)', () => {
    const insert = change('customers', 'insert', { id: 1 }, { id: 1, name: 'Ann' });
    const update = change('customers', 'update', { id: 1 }, { id: 1, name: 'Anne' });
    const result = coalesce([insert, update], ORDER);
    expect(result).toEqual([{ ...update, op: 'insert' }]);
    // A copy: the source's event is not changed.
    expect(update.op).toBe('update');
  });

  it('keeps the columns an update left out (an unchanged TOAST value, not sent) from the earlier image of its key in the batch', () => {
    const insert = change('customers', 'insert', { id: 1 }, { id: 1, name: 'Ann', notes: 'x'.repeat(9000) });
    // pgoutput leaves an unchanged TOAST value out of the new tuple: the row lacks the column.
    const update = change('customers', 'update', { id: 1 }, { id: 1, name: 'Anne' });
    const again = change('customers', 'update', { id: 1 }, { id: 1, name: 'Annie' });
    expect(coalesce([insert, update, again], ORDER)).toEqual([{ ...again, op: 'insert', row: { id: 1, name: 'Annie', notes: 'x'.repeat(9000) } }]);
    // Across a delete the earlier image is gone: the new row is what the insert says.
    const deleted = change('customers', 'delete', { id: 1 });
    const fresh = change('customers', 'insert', { id: 1 }, { id: 1, name: 'Bo' });
    expect(coalesce([insert, deleted, fresh], ORDER)).toEqual([fresh]);
    expect(update.row).toEqual({ id: 1, name: 'Anne' });
  });

  it('update then delete becomes the delete', () => {
    const update = change('customers', 'update', { id: 1 }, { id: 1, name: 'B' });
    const del = change('customers', 'delete', { id: 1 });
    expect(coalesce([update, del], ORDER)).toEqual([del]);
  });

  it('delete then insert becomes an update with the inserted row (the row existed before the batch)', () => {
    const del = change('customers', 'delete', { id: 1 });
    const insert = change('customers', 'insert', { id: 1 }, { id: 1, name: 'again' });
    expect(coalesce([del, insert], ORDER)).toEqual([{ ...insert, op: 'update' }]);
    const update = change('customers', 'update', { id: 2 }, { id: 2, name: 'x' });
    const [del2, insert2] = [change('customers', 'delete', { id: 2 }), change('customers', 'insert', { id: 2 }, { id: 2, name: 'y' })];
    expect(coalesce([update, del2, insert2], ORDER)).toEqual([{ ...insert2, op: 'update' }]);
  });

  it('insert, delete, insert stays an insert; a lone change or a repeated update is passed on as it is', () => {
    const [a, b, c] = [change('customers', 'insert', { id: 1 }), change('customers', 'delete', { id: 1 }), change('customers', 'insert', { id: 1 }, { id: 1, v: 2 })];
    const [u1, u2] = [change('customers', 'update', { id: 2 }), change('customers', 'update', { id: 2 }, { id: 2, v: 3 })];
    const lone = change('customers', 'insert', { id: 3 });
    const result = coalesce([a, b, c, u1, u2, lone], ORDER);
    expect(result[0]).toEqual(c);
    expect(result[1]).toBe(u2);
    expect(result[2]).toBe(lone);
  });

  it('keeps one change per key and different keys apart', () => {
    const events = [
      change('customers', 'insert', { id: 1 }),
      change('customers', 'insert', { id: 2 }),
      change('customers', 'update', { id: 1 }, { id: 1, name: 'x' }),
      change('customers', 'update', { id: 2 }, { id: 2, name: 'y' }),
      change('customers', 'update', { id: 1 }, { id: 1, name: 'z' }),
    ];
    const result = coalesce(events, ORDER);
    expect(result.map((e) => e.row)).toEqual([
      { id: 2, name: 'y' },
      { id: 1, name: 'z' },
    ]);
  });

  it('does not merge equal keys of different tables', () => {
    const a = change('customers', 'insert', { id: 1 });
    const b = change('orders', 'insert', { id: 1 });
    expect(coalesce([a, b], ORDER)).toEqual([a, b]);
  });

  it('puts deletes first, children before parents (reverse table order)', () => {
    const events = [
      change('customers', 'delete', { id: 1 }),
      change('orders', 'delete', { id: 10 }),
      change('lines', 'delete', { id: 100 }),
      change('customers', 'insert', { id: 2 }),
    ];
    expect(brief(coalesce(events, ORDER))).toEqual([
      'delete lines {"id":100}',
      'delete orders {"id":10}',
      'delete customers {"id":1}',
      'insert customers {"id":2}',
    ]);
  });

  it('puts upserts after deletes, parents first (table order)', () => {
    const events = [
      change('lines', 'insert', { id: 100 }),
      change('orders', 'update', { id: 10 }),
      change('customers', 'delete', { id: 3 }),
      change('customers', 'insert', { id: 1 }),
      change('lines', 'delete', { id: 101 }),
    ];
    expect(brief(coalesce(events, ORDER))).toEqual([
      'delete lines {"id":101}',
      'delete customers {"id":3}',
      'insert customers {"id":1}',
      'update orders {"id":10}',
      'insert lines {"id":100}',
    ]);
  });

  it('keeps source order (of the newest change) inside one table', () => {
    const events = [
      change('orders', 'insert', { id: 1 }),
      change('orders', 'insert', { id: 2 }),
      change('orders', 'insert', { id: 3 }),
      change('orders', 'update', { id: 1 }),
    ];
    expect(coalesce(events, ORDER).map((e) => e.key.id)).toEqual([2, 3, 1]);
  });

  it('places tables missing from the order after the known ones', () => {
    const events = [change('audit', 'insert', { id: 1 }), change('customers', 'insert', { id: 1 })];
    expect(coalesce(events, ORDER).map((e) => e.table)).toEqual(['customers', 'audit']);
  });

  it('treats composite keys as one key only when every column matches', () => {
    const events = [
      change('lines', 'insert', { order_id: 1, line_no: 1 }, { order_id: 1, line_no: 1, qty: 1 }),
      change('lines', 'insert', { order_id: 1, line_no: 2 }, { order_id: 1, line_no: 2, qty: 1 }),
      change('lines', 'insert', { order_id: 2, line_no: 1 }, { order_id: 2, line_no: 1, qty: 1 }),
      change('lines', 'update', { order_id: 1, line_no: 2 }, { order_id: 1, line_no: 2, qty: 5 }),
    ];
    const result = coalesce(events, ORDER);
    expect(result.map((e) => e.row)).toEqual([
      { order_id: 1, line_no: 1, qty: 1 },
      { order_id: 2, line_no: 1, qty: 1 },
      { order_id: 1, line_no: 2, qty: 5 },
    ]);
  });

  it('treats keys as equal regardless of key-column order', () => {
    const insert = change('lines', 'insert', { order_id: 7, line_no: 3 }, { order_id: 7, line_no: 3, qty: 1 });
    const del = change('lines', 'delete', { line_no: 3, order_id: 7 });
    expect(coalesce([insert, del], ORDER)).toEqual([del]);
  });

  it('treats a Date key and the same instant as equal keys', () => {
    const a = change('orders', 'insert', { at: new Date('2024-05-01T10:00:00Z') });
    const b = change('orders', 'update', { at: new Date('2024-05-01T10:00:00.000Z') });
    expect(coalesce([a, b], ORDER)).toEqual([{ ...b, op: 'insert' }]);
  });

  it('a row copied after a logged change of its key keeps that change\'s time (the copy holds the change, and must not lose as the epoch would)', () => {
    const logged = { ...change('orders', 'insert', { id: 1 }), commitTime: new Date('2024-05-01T10:00:00.558Z') };
    const copied = { ...change('orders', 'insert', { id: 1 }), commitTime: new Date(0), copied: true };
    const later = { ...change('orders', 'update', { id: 1 }), commitTime: new Date('2024-05-01T10:00:01Z') };
    const [merged] = coalesce([logged, copied], ORDER);
    expect(merged!.commitTime).toEqual(logged.commitTime);
    expect(merged!.row).toBe(copied.row);
    // Two copies in a row (a copy again on request) still carry the logged change's time.
    expect(coalesce([logged, copied, { ...copied }], ORDER)[0]!.commitTime).toEqual(logged.commitTime);
    // A copy alone keeps the epoch; a logged change after a copy is itself.
    expect(coalesce([copied], ORDER)[0]!.commitTime).toEqual(new Date(0));
    expect(coalesce([copied, later], ORDER)[0]!.commitTime).toEqual(later.commitTime);
  });

  it('returns nothing for no changes', () => {
    expect(coalesce([], ORDER)).toEqual([]);
  });

  it('a TRUNCATE drops the earlier changes of its table and comes first (children first); later changes follow it', () => {
    const before = change('orders', 'insert', { id: 1 });
    const other = change('customers', 'update', { id: 7 });
    const truncateLines = change('lines', 'truncate', {}, null);
    const truncateOrders = change('orders', 'truncate', {}, null);
    const after = change('orders', 'insert', { id: 2 });
    const gone = change('orders', 'delete', { id: 3 });
    expect(brief(coalesce([before, other, truncateLines, truncateOrders, after, gone], ORDER))).toEqual([
      'truncate lines {}',
      'truncate orders {}',
      'delete orders {"id":3}',
      'update customers {"id":7}',
      'insert orders {"id":2}',
    ]);
  });

  it('keys of one column keep text and numbers apart, and composite keys match whatever their column order', () => {
    const text = change('customers', 'insert', { id: '1' });
    const number = change('customers', 'insert', { id: 1 });
    const ab = change('lines', 'insert', { a: 1, b: 2 });
    const ba = change('lines', 'update', { b: 2, a: 1 });
    expect(coalesce([text, number, ab, ba], ORDER)).toEqual([text, number, { ...ba, op: 'insert' }]);
  });
});

/**
 * What coalesce promises, said as plainly as possible: per table, a TRUNCATE
 * forgets the changes before it; per key (a text and a number apart, a
 * composite whatever its column order) the newest change stays, an insert if
 * the key's first change inserted it, else an update (deletes stay deletes);
 * TRUNCATEs, then deletes, children first, then upserts, parents first, each
 * in source order.
 */
function coalesceModel(events: ChangeEvent[], order: string[]): ChangeEvent[] {
  const rank = (table: string) => (order.includes(table) ? order.indexOf(table) : order.length);
  const identity = (key: Row) => JSON.stringify(Object.keys(key).sort().map((c) => [c, typeof key[c], key[c]]));
  const perTable = new Map<string, Map<string, { index: number; firstOp: Op }>>();
  const truncates = new Map<string, number>();
  events.forEach((e, index) => {
    if (e.op === 'truncate') {
      perTable.set(e.table, new Map());
      truncates.set(e.table, index);
      return;
    }
    const keys = perTable.get(e.table) ?? new Map<string, { index: number; firstOp: Op }>();
    perTable.set(e.table, keys);
    const id = identity(e.key);
    keys.set(id, { index, firstOp: keys.get(id)?.firstOp ?? e.op });
  });
  const kept = [...truncates.values()].map((index) => ({ index, e: events[index]! }));
  for (const keys of perTable.values()) {
    for (const { index, firstOp } of keys.values()) {
      const e = events[index]!;
      const op: Op = e.op === 'delete' ? 'delete' : firstOp === 'insert' ? 'insert' : 'update';
      kept.push({ index, e: op === e.op ? e : { ...e, op } });
    }
  }
  const part = (wanted: (op: Op) => boolean, direction: number) =>
    kept
      .filter(({ e }) => wanted(e.op))
      .sort((x, y) => direction * (rank(x.e.table) - rank(y.e.table)) || x.index - y.index)
      .map(({ e }) => e);
  return [...part((op) => op === 'truncate', -1), ...part((op) => op === 'delete', -1), ...part((op) => op === 'insert' || op === 'update', 1)];
}

describe('coalesce, against its model', () => {
  it('gives what the model gives for random batches: text, number and composite keys, repeats, TRUNCATEs, unknown tables (property)', () => {
    const keyOf = (table: string, n: number, flip: boolean): Row =>
      table === 'orders' ? { id: n } : table === 'lines' ? (flip ? { b: n % 3, a: Math.floor(n / 3) } : { a: Math.floor(n / 3), b: n % 3 }) : { id: n % 4 === 0 ? n : String(n) };
    const arbitraryChange = fc.record({
      table: fc.constantFrom('customers', 'orders', 'lines', 'other'),
      op: fc.constantFrom<Op>('insert', 'update', 'delete', 'insert', 'update', 'delete', 'truncate'),
      n: fc.integer({ min: 0, max: 15 }),
      flip: fc.boolean(),
    });
    fc.assert(
      fc.property(fc.array(arbitraryChange, { maxLength: 300, size: 'max' }), (changes) => {
        const events = changes.map(({ table, op, n, flip }) => (op === 'truncate' ? change(table, 'truncate', {}, null) : change(table, op, keyOf(table, n, flip))));
        expect(coalesce(events, ORDER)).toEqual(coalesceModel(events, ORDER));
      }),
      { numRuns: 300 },
    );
  });

  it('keeps every key of a batch of thousands of new text keys, and the newest change of each key changed twice or three times', () => {
    const events = Array.from({ length: 5000 }, (_, i) => change('customers', 'insert', { id: `k${i}` }));
    events.push(...Array.from({ length: 2500 }, (_, i) => change('customers', 'update', { id: `k${i * 2}` })));
    events.push(...Array.from({ length: 1250 }, (_, i) => change('customers', 'delete', { id: `k${i * 4}` })));
    expect(coalesce(events, ORDER)).toEqual(coalesceModel(events, ORDER));
  });
});

/**
 * Key changes as the sources emit them (keyChange: delete of the old key, then
 * insert of the new one), coalesced, applied to a model of the target that
 * refuses an insert of a key it holds (as the PostgreSQL sink's COPY would):
 * the target ends equal to the source, and `insert` is only said of new rows.
 */
describe('coalesce of key changes', () => {
  type Rows = Map<number, Row>;

  /** A source table of rows { id, name } that records the changes its statements make. */
  function sourceTable(rows: Row[]) {
    const state: Rows = new Map(rows.map((r) => [r.id as number, r]));
    const events: ChangeEvent[] = [];
    return {
      state,
      events,
      /** UPDATE t SET id = to WHERE id = from */
      move(from: number, to: number) {
        const before = state.get(from)!;
        const row = { ...before, id: to };
        state.delete(from);
        state.set(to, row);
        position += 1;
        const update: ChangeEvent = { table: 'customers', op: 'update', key: { id: to }, row, before, position: String(position), commitTime };
        events.push(...keyChange(update, { id: from }));
      },
      insert(row: Row) {
        state.set(row.id as number, row);
        events.push(change('customers', 'insert', { id: row.id! }, row));
      },
    };
  }

  function applyTo(target: Rows, changes: ChangeEvent[]): Rows {
    for (const e of changes) {
      const id = e.key.id as number;
      if (e.op === 'delete') target.delete(id);
      else if (e.op === 'insert' && target.has(id)) throw new Error(`insert of key ${id}, which the target holds`);
      else target.set(id, e.row!);
    }
    return target;
  }

  const start = () => [
    { id: 1, name: 'Ann' },
    { id: 2, name: 'Bo' },
  ];
  const sorted = (rows: Rows) => [...rows.values()].sort((a, b) => (a.id as number) - (b.id as number));

  it('a key change moves the row: the old key is deleted, then the new key inserted', () => {
    const source = sourceTable(start());
    source.move(1, 1001);
    const result = coalesce(source.events, ORDER);
    expect(brief(result)).toEqual(['delete customers {"id":1}', 'insert customers {"id":1001}']);
    expect(sorted(applyTo(new Map(start().map((r) => [r.id, r])), result))).toEqual(sorted(source.state));
  });

  it('a swap of two keys through a third (A → tmp, B → A, tmp → B) ends with the rows swapped, as updates', () => {
    const source = sourceTable(start());
    source.move(1, 99);
    source.move(2, 1);
    source.move(99, 2);
    const result = coalesce(source.events, ORDER);
    expect(brief(result)).toEqual(['delete customers {"id":99}', 'update customers {"id":1}', 'update customers {"id":2}']);
    const target = applyTo(new Map(start().map((r) => [r.id, r])), result);
    expect(sorted(target)).toEqual([
      { id: 1, name: 'Bo' },
      { id: 2, name: 'Ann' },
    ]);
    expect(sorted(target)).toEqual(sorted(source.state));
  });

  it('a key change, then a new row under the old key: both rows end right', () => {
    const source = sourceTable(start());
    source.move(1, 1001);
    source.insert({ id: 1, name: 'new Ann' });
    const result = coalesce(source.events, ORDER);
    expect(brief(result)).toEqual(['insert customers {"id":1001}', 'update customers {"id":1}']);
    expect(sorted(applyTo(new Map(start().map((r) => [r.id, r])), result))).toEqual(sorted(source.state));
  });

  it('a key changed and changed back (A → B → A) leaves the row under A and nothing under B', () => {
    const source = sourceTable(start());
    source.move(1, 1001);
    source.move(1001, 1);
    const result = coalesce(source.events, ORDER);
    expect(brief(result)).toEqual(['delete customers {"id":1001}', 'update customers {"id":1}']);
    expect(sorted(applyTo(new Map(start().map((r) => [r.id, r])), result))).toEqual(sorted(source.state));
  });

  it('key changes split over batches end right too, whichever batch each lands in', () => {
    const source = sourceTable(start());
    source.move(1, 99);
    source.move(2, 1);
    source.move(99, 2);
    source.move(2, 1001);
    // Sources never split a key change's two events (one chunk); batches are cut between key changes.
    for (let cut = 0; cut <= source.events.length; cut += 2) {
      const target = new Map(start().map((r) => [r.id, r]));
      applyTo(target, coalesce(source.events.slice(0, cut), ORDER));
      applyTo(target, coalesce(source.events.slice(cut), ORDER));
      expect(sorted(target)).toEqual(sorted(source.state));
    }
  });
});
