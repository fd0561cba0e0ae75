import pg from 'pg';
import { pino } from 'pino';
import { Subject } from 'rxjs';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { changelogSetupSql } from '../../../src/cdc/postgres/changelog-setup.js';
import { ChangeLogSource } from '../../../src/cdc/postgres/changelog-source.js';
import { ConfigError } from '../../../src/core/errors.js';
import type { ChangeEvent } from '../../../src/core/change-event.js';
import type { TableConfig } from '../../../src/core/mapping.js';
import { createTestDatabase, type TestDatabase } from '../../support/test-database.js';
import { testContext } from '../../support/stream-context.js';
import { pull } from '../../support/pull.js';

let db: TestDatabase;
const sources: ChangeLogSource[] = [];
const contexts: ReturnType<typeof testContext>[] = [];
const TABLES: TableConfig[] = [{ source: 'items', target: 'items' }];

beforeAll(async () => {
  db = await createTestDatabase('changelog');
  await db.query(`CREATE TABLE items (id bigint PRIMARY KEY, name text, amount numeric(40,10), note text)`);
  await db.query(`CREATE TABLE uncaptured (id int PRIMARY KEY)`);
  await db.query(`CREATE TABLE left_over (id int PRIMARY KEY, secret text)`);
  await db.query(changelogSetupSql(['public.items', 'public.left_over']));
});

afterAll(async () => {
  await db.drop();
});

beforeEach(async () => {
  await db.query('TRUNCATE items, left_over, cdc_sync.changes');
});

afterEach(async () => {
  for (const c of contexts.splice(0)) c.controller.abort();
  await Promise.all(sources.splice(0).map((s) => s.close()));
});

async function openSource(readLimit = 100, tables = TABLES, context = testContext()): Promise<ChangeLogSource> {
  const source = new ChangeLogSource({
    url: db.url,
    tables,
    readLimit,
    pollIntervalMs: 10,
    idleIntervalMs: 20,
    retry: { attempts: 3, minDelayMs: 10, maxDelayMs: 50 },
    // These tests read the change log; the copy of existing rows has its own (test/cdc/table-copy.test.ts).
    snapshot: 'never',
  });
  sources.push(source);
  contexts.push(context);
  await source.open(context);
  return source;
}

describe('ChangeLogSource', () => {
  it('emits inserts, updates and deletes in order with keys, images and exact numbers', async () => {
    await db.query(`INSERT INTO items VALUES (1, 'a', 12345678901234567890.0123456789, 'n')`);
    await db.query(`UPDATE items SET name = 'b' WHERE id = 1`);
    await db.query(`DELETE FROM items WHERE id = 1`);
    const [chunk] = await pull(await openSource(), null, 1);
    expect(chunk!.caughtUp).toBe(true);
    expect(chunk!.events.map((e) => [e.op, e.key, e.row?.name ?? null, e.before?.name ?? null])).toEqual([
      ['insert', { id: 1 }, 'a', null],
      ['update', { id: 1 }, 'b', 'a'],
      ['delete', { id: 1 }, null, 'b'],
    ]);
    expect(chunk!.events[0]!.row!.amount).toBe('12345678901234567890.0123456789');
    expect(chunk!.events[0]!.table).toBe('items');
  });

  it('a key change moves the row: a delete of the old key, then an insert of the new key, in one chunk with one position, time and origin', async () => {
    await db.query(`INSERT INTO items VALUES (1, 'a', 1, 'n'), (2, 'b', 2, 'n')`);
    const writer = new pg.Client({ connectionString: db.url, application_name: 'till-7' });
    await writer.connect();
    await writer.query(`UPDATE items SET id = id + 1000 WHERE id = 1`);
    await writer.end();
    await db.query(`UPDATE items SET name = 'b2' WHERE id = 2`);
    const context = testContext();
    const [chunk] = await pull(await openSource(100, TABLES, context), null, 1);
    expect(chunk!.events.map((e) => [e.op, e.key, e.row?.name ?? null])).toEqual([
      ['insert', { id: 1 }, 'a'],
      ['insert', { id: 2 }, 'b'],
      ['delete', { id: 1 }, null],
      ['insert', { id: 1001 }, 'a'],
      ['update', { id: 2 }, 'b2'],
    ]);
    const [moved, arrived] = chunk!.events.slice(2, 4) as [ChangeEvent, ChangeEvent];
    expect(moved.before).toMatchObject({ id: 1, name: 'a' });
    expect(arrived.row).toEqual({ id: 1001, name: 'a', amount: 1, note: 'n' });
    expect(arrived.before).toEqual(moved.before);
    for (const e of [moved, arrived]) {
      expect(e).toMatchObject({ table: 'items', position: chunk!.position, origin: 'till-7' });
      expect(e.commitTime).toEqual(moved.commitTime);
    }
    // One user edit, counted once: as the update it was.
    const captured = (await context.metrics.captured.get()).values.map((v) => [v.labels.op, v.value]);
    expect(Object.fromEntries(captured)).toEqual({ insert: 2, update: 2 });
  });

  it('an update of one column of a composite key is a key change too; the same key written another way (numeric 1 → 1.0) is not', async () => {
    await db.query(`CREATE TABLE IF NOT EXISTS lines (order_id int, line_no int, qty int, PRIMARY KEY (order_id, line_no))`);
    await db.query(`CREATE TABLE IF NOT EXISTS prices (amount numeric PRIMARY KEY, label text)`);
    await db.query(changelogSetupSql(['public.lines', 'public.prices']));
    await db.query(`TRUNCATE lines, prices`);
    await db.query(`INSERT INTO lines VALUES (1, 1, 1), (1, 2, 1)`);
    await db.query(`INSERT INTO prices VALUES (1, 'one')`);
    await db.query(`TRUNCATE cdc_sync.changes`);
    await db.query(`UPDATE lines SET line_no = line_no + 1000 WHERE order_id = 1 AND line_no = 1`);
    await db.query(`UPDATE lines SET qty = 5 WHERE line_no = 2`);
    await db.query(`UPDATE prices SET amount = 1.0 WHERE amount = 1`);
    const tables = [{ source: 'lines', target: 'lines' }, { source: 'prices', target: 'prices' }];
    const [chunk] = await pull(await openSource(100, tables), null, 1);
    expect(chunk!.events.map((e) => [e.op, e.key])).toEqual([
      ['delete', { order_id: 1, line_no: 1 }],
      ['insert', { order_id: 1, line_no: 1001 }],
      ['update', { order_id: 1, line_no: 2 }],
      ['update', { amount: 1 }],
    ]);
  });

  it('pages a backlog by readLimit and resumes from a stored position without repeating or skipping', async () => {
    // Five transactions: a page holds whole transactions.
    for (let g = 1; g <= 5; g += 1) await db.query(`INSERT INTO items VALUES ($1::int, 'n' || $1::int)`, [g]);
    const chunks = await pull(await openSource(2), null, 2);
    expect(chunks.map((c) => c.events.map((e) => e.key.id))).toEqual([[1, 2], [3, 4]]);
    expect(chunks.map((c) => c.caughtUp)).toEqual([false, false]);
    // A restart from the second chunk's position continues with id 5 only.
    const [rest] = await pull(await openSource(2), chunks[1]!.position, 1);
    expect(rest!.events.map((e) => e.key.id)).toEqual([5]);
    expect(rest!.caughtUp).toBe(true);
  });

  it('reads a page on to the end of its transactions, so a transaction larger than readLimit arrives in one chunk', async () => {
    await db.query(`INSERT INTO items SELECT g, 'n' || g FROM generate_series(1, 5) g`);
    await db.query(`INSERT INTO items VALUES (6, 'n6')`);
    const chunks = await pull(await openSource(2), null, 2);
    expect(chunks.map((c) => c.events.map((e) => e.key.id))).toEqual([[1, 2, 3, 4, 5], [6]]);
    expect(chunks.map((c) => c.caughtUp)).toEqual([false, true]);
  });

  it('does not skip a change whose transaction commits after a later-numbered one was read', async () => {
    const slow = new pg.Client({ connectionString: db.url });
    await slow.connect();
    try {
      await slow.query('BEGIN');
      await slow.query(`INSERT INTO items VALUES (1, 'slow')`); // takes the lower change id
      await db.query(`INSERT INTO items VALUES (2, 'fast')`); // commits first
      const source = await openSource();
      const demand = new Subject<void>();
      const seen: number[] = [];
      const done = new Promise<void>((resolve) => {
        const sub = source.chunks(null, demand).subscribe((chunk) => {
          seen.push(...chunk.events.map((e) => e.key.id as number));
          if (seen.length === 1) {
            void slow.query('COMMIT').then(() => demand.next());
          } else {
            sub.unsubscribe();
            resolve();
          }
        });
      });
      await done;
      expect(seen).toEqual([2, 1]);
    } finally {
      await slow.end();
    }
  });

  it('hands malformed change rows over as rejected, with the raw payload, and goes on', async () => {
    await db.query(`INSERT INTO items VALUES (1, 'ok')`);
    await db.query(`INSERT INTO cdc_sync.changes (table_name, op, row_data) VALUES ('public.items', 'I', '{"id": 2, "name": ')`);
    await db.query(`INSERT INTO items VALUES (3, 'ok')`);
    const [chunk] = await pull(await openSource(), null, 1);
    expect(chunk!.events.map((e) => e.key.id)).toEqual([1, 3]);
    expect(chunk!.rejected).toHaveLength(1);
    expect(chunk!.rejected[0]!.payload).toBe('{"id": 2, "name": ');
    expect(chunk!.rejected[0]!.error.message).toMatch(/malformed change/);
    expect((chunk!.rejected[0]!.error as ConfigError).reason).toBe('malformed');
  });

  it('does not capture rows written by cdc-sync itself (cdc_sync.origin set)', async () => {
    const own = new pg.Client({ connectionString: db.url, options: '-c cdc_sync.origin=other-stream' });
    await own.connect();
    await own.query(`INSERT INTO items VALUES (10, 'echo')`);
    await own.end();
    await db.query(`UPDATE items SET name = 'echo' WHERE id = 10`); // no real change: not captured either
    await db.query(`INSERT INTO items VALUES (11, 'user')`);
    const [chunk] = await pull(await openSource(), null, 1);
    expect(chunk!.events.map((e) => e.key.id)).toEqual([11]);
  });

  it('refuses tables that do not exist, have no capture trigger, or lack a configured column', async () => {
    const cases: [TableConfig, RegExp][] = [
      [{ source: 'public.nope', target: 'x' }, /tables\[0\]\.source: table public\.nope does not exist/],
      [{ source: 'uncaptured', target: 'x' }, /no cdc-sync capture trigger.*init-sql/],
      [{ source: 'items', target: 'x', key: ['missing'] }, /tables\[0\]\.key\[0\]: column missing does not exist/],
      [{ source: 'items', target: 'x', columns: { Nope: 'nope' } }, /tables\[0\]\.columns\.Nope: column Nope does not exist in items/],
      [{ source: 'items', target: 'x', exclude: ['name', 'Nope'] }, /tables\[0\]\.exclude\[1\]: column Nope does not exist in items/],
    ];
    for (const [table, message] of cases) {
      const error = await openSource(10, [table]).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as Error).message).toMatch(message);
    }
  });

  it('skips changes of a captured table the stream does not name, counting them and logging the table once, without reading its rows', async () => {
    // Pages of two: the first two pages hold only the other table's changes, and the reader goes on past them.
    await db.query(`INSERT INTO left_over VALUES (1, 'x'), (2, 'y')`);
    await db.query(`UPDATE left_over SET secret = 'z'`);
    await db.query(`INSERT INTO items VALUES (1, 'a', 1, 'n')`);
    const lines: unknown[] = [];
    const context = testContext();
    context.log = pino({ level: 'warn' }, { write: (line: string) => lines.push(line) });
    const chunks = await pull(await openSource(2, TABLES, context), null, 1);
    expect(chunks.flatMap((c) => c.events.map((e) => [e.table, e.key]))).toEqual([['items', { id: 1 }]]);
    const suppressed = (await context.metrics.suppressed.get()).values.find((v) => v.labels.table === 'public.left_over' && v.labels.reason === 'unknown-table');
    expect(suppressed?.value).toBe(4);
    expect(lines).toHaveLength(1);
    expect(JSON.stringify(lines)).toContain('public.left_over');
    expect(JSON.stringify(lines)).not.toContain('secret');
  });
});
