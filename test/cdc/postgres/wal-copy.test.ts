import { describe, expect, it } from 'vitest';
import { WalCopier, visibleIn, type WalCopyItem, type WalTable } from '../../../src/cdc/postgres/wal-copy.js';
import type { ChangeEvent, Row } from '../../../src/core/change-event.js';
import { testContext } from '../../support/stream-context.js';

// The copy's window logic against a reader whose answer the test holds back, so the race between a chunk read and
// the transactions streamed meanwhile is built exactly (DBLog, https://arxiv.org/abs/2010.12597, section 3).
const items: WalTable = { source: 'items', key: ['id'], columns: ['id', 'name', 'big'], types: [23, 25, 25] };

function change(op: ChangeEvent['op'], id: number, row: Row | null): ChangeEvent {
  return { table: 'items', op, key: { id }, row, before: null, position: '', commitTime: new Date() };
}

function copier(answer: Promise<{ marker: string; snapshot: string; rows: (string | null)[][] }>, sentThrough = 0n) {
  const pushed: WalCopyItem[] = [];
  const failures: unknown[] = [];
  const copy = new WalCopier(testContext(), {
    table: () => items,
    reader: { chunk: () => answer, estimate: async () => 4 },
    limit: 4,
    sentThrough: () => sentThrough,
    push: (item) => pushed.push(item),
    fail: (error) => failures.push(error),
  });
  return { copy, pushed, failures };
}

const settle = () => new Promise((r) => setTimeout(r, 0));

describe('WalCopier', () => {
  it('drops the rows of keys that transactions the chunk did not see changed, keeps those it saw, and merges an update without its TOAST value', async () => {
    let answer!: (value: { marker: string; snapshot: string; rows: (string | null)[][] }) => void;
    const { copy, pushed } = copier(new Promise((r) => (answer = r)));
    copy.start({ tables: ['items'], after: null });
    copy.readNext(0);
    // Streamed while the read runs. Snapshot 10:12:11 saw 9 and 10, not 11 (running) or 12 (started after it).
    copy.seen({ endLsn: 0x50n, xid: 9, events: [change('update', 1, { id: 1, name: 'seen', big: 'x' })] });
    copy.seen({ endLsn: 0x60n, xid: 11, events: [change('update', 2, { id: 2, name: 'newer', big: 'y' })] });
    copy.seen({ endLsn: 0x70n, xid: 12, events: [change('delete', 3, null)] });
    // Unchanged TOAST value left out (REPLICA IDENTITY DEFAULT): the copied row takes the new name, keeps its `big`.
    copy.seen({ endLsn: 0x80n, xid: 13, events: [change('update', 4, { id: 4, name: 'renamed' })] });
    answer({
      marker: '0/90',
      snapshot: '10:12:11',
      rows: [
        ['1', 'seen', 'x'],
        ['2', 'older', 'y'],
        ['3', 'gone', 'z'],
        ['4', 'before', 'huge'],
      ],
    });
    await settle();
    // The watermark is not passed yet: nothing goes down the stream.
    expect(pushed).toEqual([]);
    copy.seen({ endLsn: 0x85n, xid: 14, events: [change('insert', 3, { id: 3, name: 'back', big: 'z' })] });
    copy.seen({ endLsn: 0xa0n, xid: 15, events: [] }); // the watermark's own transaction ends past it
    expect(pushed).toHaveLength(1);
    expect(pushed[0]!.events.map((e) => [e.key, e.row, e.copied, e.commitTime.getTime()])).toEqual([
      [{ id: 1 }, { id: 1, name: 'seen', big: 'x' }, true, 0],
      [{ id: 4 }, { id: 4, name: 'renamed', big: 'huge' }, true, 0],
    ]);
    // Four rows, as many as a chunk holds: the copy goes on after the last key read (4), not the last one kept.
    expect(pushed[0]!.after).toEqual({ tables: ['items'], after: { id: 4 } });
  });

  it('hands the chunk on at once when the stream passed its watermark before the read answered, and ends the copy on a short chunk', async () => {
    const { copy, pushed } = copier(Promise.resolve({ marker: '0/90', snapshot: '20:20:', rows: [['1', 'a', null]] }), 0x100n);
    copy.start({ tables: ['items'], after: null });
    copy.readNext(0);
    await settle();
    expect(pushed.map((p) => [p.events.map((e) => e.key), p.after])).toEqual([[[{ id: 1 }], null]]);
    expect(copy.active).toBe(false);
  });

  it('waits for a keepalive past the watermark when no transaction follows it', async () => {
    const { copy, pushed } = copier(Promise.resolve({ marker: '0/90', snapshot: '20:20:', rows: [['1', 'a', null]] }));
    copy.start({ tables: ['items'], after: null });
    copy.readNext(0);
    await settle();
    copy.passed(0x8fn);
    expect(pushed).toEqual([]);
    copy.passed(0x90n);
    expect(pushed).toHaveLength(1);
  });

  it('reads no chunk while the queue is full, and reads the lost chunk again after a reconnect dropped it undelivered', async () => {
    let reads = 0;
    const pushed: WalCopyItem[] = [];
    const copy = new WalCopier(testContext(), {
      table: () => items,
      reader: {
        chunk: async () => {
          reads += 1;
          return { marker: '0/10', snapshot: '5:5:', rows: [['1', 'a', null], ['2', 'b', null], ['3', 'c', null], ['4', 'd', null]] };
        },
        estimate: async () => null,
      },
      limit: 4,
      sentThrough: () => 0x20n,
      push: (item) => pushed.push(item),
      fail: () => {},
    });
    copy.start({ tables: ['items'], after: null });
    copy.readNext(4);
    await settle();
    expect(reads).toBe(0);
    copy.readNext(0);
    await settle();
    expect(pushed).toHaveLength(1);
    // The connection dropped before the chunk was delivered: the copy starts again where the last delivered one left it.
    copy.reset();
    copy.readNext(0);
    await settle();
    expect(reads).toBe(2);
    expect(pushed[1]!.events.map((e) => e.key.id)).toEqual([1, 2, 3, 4]);
    copy.deliveredChunk(pushed[1]!.after);
    expect(copy.current).toEqual({ tables: ['items'], after: { id: 4 } });
  });

  it('reads snapshot visibility as PostgreSQL does, modulo 2^32 across an epoch', () => {
    const visible = visibleIn('4294967300:4294967310:4294967301');
    // 64-bit ids 4294967300… are 32-bit 4…: 3 ended before xmin, 5 was running (xip), 9 is below xmax, 14 started after.
    expect([3, 4, 5, 9, 14].map(visible)).toEqual([true, true, false, true, false]);
    const wrapped = visibleIn(`${2 ** 32 - 2}:${2 ** 32 + 2}:`);
    expect([2 ** 32 - 3, 2 ** 32 - 1, 0, 1, 2].map(wrapped)).toEqual([true, true, true, true, false]);
  });
});
