import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { applySqliteChangelogSetup, sqliteChangelogSetupSql } from '../../../src/db/sqlite/changelog-setup.js';
import { SqliteChangeLogSource } from '../../../src/cdc/sqlite/changelog-source.js';
import { READ_PAGE_SQL } from '../../../src/cdc/sqlite/changelog-queries.js';
import { ConfigError } from '../../../src/core/errors.js';
import type { ChangeEvent } from '../../../src/core/change-event.js';
import type { TableConfig } from '../../../src/core/mapping.js';
import { SqliteSink } from '../../../src/sinks/sqlite/sqlite-sink.js';
import { TableMapping } from '../../../src/core/mapping.js';
import { testContext } from '../../support/stream-context.js';
import { pull } from '../../support/pull.js';

let dir: string;
let path: string;
let db: Database.Database;
const sources: SqliteChangeLogSource[] = [];
const contexts: ReturnType<typeof testContext>[] = [];
const TABLES: TableConfig[] = [{ source: 'items', target: 'items' }];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'cdc-sqlite-source-'));
  path = join(dir, 'pos.db');
  db = new Database(path);
  db.exec(`CREATE TABLE items (id TEXT PRIMARY KEY, name TEXT, qty INTEGER, photo BLOB, total REAL GENERATED ALWAYS AS (qty * 2) VIRTUAL)`);
  db.exec(`CREATE TABLE other (id INTEGER PRIMARY KEY)`);
  applySqliteChangelogSetup(db, ['items']);
});

afterEach(async () => {
  for (const c of contexts.splice(0)) c.controller.abort();
  await Promise.all(sources.splice(0).map((s) => s.close()));
  db.close();
  rmSync(dir, { recursive: true, force: true });
});

async function openSource(readLimit = 100, tables = TABLES): Promise<SqliteChangeLogSource> {
  const source = new SqliteChangeLogSource({
    url: `sqlite:${path}`,
    tables,
    readLimit,
    pollIntervalMs: 5,
    idleIntervalMs: 20,
    retry: { attempts: 3, minDelayMs: 10, maxDelayMs: 50 },
    // These tests read the change log; the copy of existing rows has its own (test/cdc/table-copy.test.ts).
    snapshot: 'never',
  });
  const context = testContext();
  sources.push(source);
  contexts.push(context);
  await source.open(context);
  return source;
}

/** The context of the source opened last. */
const lastContext = () => contexts.at(-1)!;

describe('sqlite-changelog source', () => {
  it('reads a page by seeking the change log\'s rowid, with or without statistics, so a read costs its page and not the backlog', () => {
    db.exec(`WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < 5000)
             INSERT INTO items (id, name, qty) SELECT 'k' || i, 'n', i FROM g`);
    const plan = () =>
      (db.prepare(`EXPLAIN QUERY PLAN ${READ_PAGE_SQL}`).all({ tables: '["items"]', after: 2500, limit: 100 }) as { detail: string }[])
        .map((row) => row.detail)
        .filter((detail) => detail.includes('cdc_sync_changes'));
    // SQLite's own words for a seek of the rowid range (https://sqlite.org/eqp.html).
    const seek = ['SEARCH cdc_sync_changes USING INTEGER PRIMARY KEY (rowid>?)'];
    expect(plan()).toEqual(seek);
    db.exec('ANALYZE');
    expect(plan()).toEqual(seek);
  });

  it('reads inserts, updates and deletes in commit order with keys and row images, in pages of readLimit', async () => {
    db.prepare(`INSERT INTO items (id, name, qty, photo) VALUES ('a', 'apple', 1, x'cafe')`).run();
    db.prepare(`INSERT INTO other (id) VALUES (1)`).run();
    db.prepare(`UPDATE items SET qty = 3 WHERE id = 'a'`).run();
    db.prepare(`INSERT INTO items (id, name, qty) VALUES ('b', 'pear', 2)`).run();
    db.prepare(`DELETE FROM items WHERE id = 'a'`).run();
    const source = await openSource(3);
    const chunks = await pull(source, null, 2);
    const events = chunks.flatMap((c) => c.events);
    expect(events.map((e) => [e.op, e.key])).toEqual([
      ['insert', { id: 'a' }],
      ['update', { id: 'a' }],
      ['insert', { id: 'b' }],
      ['delete', { id: 'a' }],
    ]);
    expect(events[0]!.row).toEqual({ id: 'a', name: 'apple', qty: 1, photo: '\\xcafe', total: 2 });
    expect(events[1]!.before).toMatchObject({ qty: 1 });
    expect(events[1]!.row).toMatchObject({ qty: 3, total: 6 });
    expect(events[3]!.row).toBeNull();
    expect(events[3]!.before).toMatchObject({ id: 'a', qty: 3 });
    expect(chunks.map((c) => c.events.length)).toEqual([3, 1]);
    expect(chunks[0]!.caughtUp).toBe(false);
    expect(chunks[1]!.caughtUp).toBe(true);
    // Position is the last change id read; a restart from it reads nothing again.
    expect(chunks[1]!.position).toBe('4');
    db.prepare(`UPDATE items SET name = 'pear!' WHERE id = 'b'`).run();
    const [next] = await pull(await openSource(), chunks[1]!.position, 1);
    expect(next!.events.map((e) => [e.op, e.row?.name])).toEqual([['update', 'pear!']]);
  });

  it('a key change moves the row: a delete of the old key, then an insert of the new key, with the change\'s own position, in one chunk', async () => {
    db.exec(`CREATE TABLE parts (id INTEGER PRIMARY KEY, name TEXT, photo BLOB)`);
    applySqliteChangelogSetup(db, ['parts']);
    db.prepare(`INSERT INTO parts VALUES (1, 'bolt', x'cafe'), (2, 'nut', NULL)`).run();
    db.prepare(`UPDATE parts SET id = id + 1000 WHERE id = 1`).run();
    db.prepare(`UPDATE parts SET name = 'nut!' WHERE id = 2`).run();
    // Pages of one change: the key change's two events still come together, in the page of their change.
    const source = await openSource(1, [{ source: 'parts', target: 'parts' }]);
    const chunks = await pull(source, null, 3);
    expect(chunks.map((c) => c.events.map((e) => [e.op, e.key, e.position]))).toEqual([
      [['insert', { id: 1 }, '1']],
      [['insert', { id: 2 }, '2']],
      [
        ['delete', { id: 1 }, '3'],
        ['insert', { id: 1001 }, '3'],
      ],
    ]);
    const [moved, arrived] = chunks[2]!.events as [ChangeEvent, ChangeEvent];
    expect(chunks[2]!.position).toBe('3');
    expect(moved.before).toEqual({ id: 1, name: 'bolt', photo: '\\xcafe' });
    expect(arrived.row).toEqual({ id: 1001, name: 'bolt', photo: '\\xcafe' });
    expect(arrived.commitTime).toEqual(moved.commitTime);
    const [next] = await pull(source, '3', 1);
    expect(next!.events.map((e) => [e.op, e.key])).toEqual([['update', { id: 2 }]]);
    // One user edit, counted once: as the update it was.
    const captured = (await lastContext().metrics.captured.get()).values.map((v) => [v.labels.op, v.value]);
    expect(Object.fromEntries(captured)).toEqual({ insert: 2, update: 2 });
  });

  it('does not capture updates that change nothing', async () => {
    db.prepare(`INSERT INTO items (id, name, qty) VALUES ('a', 'apple', 1)`).run();
    db.prepare(`UPDATE items SET name = 'apple', qty = 1 WHERE id = 'a'`).run();
    expect((db.prepare(`SELECT count(*) AS n FROM cdc_sync_changes`).get() as { n: number }).n).toBe(1);
  });

  it("does not capture the sink's own writes, but captures the application's writes made right after", async () => {
    const sink = new SqliteSink(`sqlite:${path}`);
    const context = testContext('pg-to-sqlite');
    const [target] = await sink.open(context, TABLES);
    sink.bind([new TableMapping(TABLES[0]!, target!, 'tables[0]', () => {})]);
    await sink.apply({
      changes: [{ table: 'items', op: 'insert', key: { id: 'x' }, row: { id: 'x', name: 'from cloud', qty: 5 }, position: '1', commitTime: new Date() }],
      deadLetters: [],
      checkpoint: { stream: 'pg-to-sqlite', position: '1' },
    });
    await sink.close();
    expect(db.prepare(`SELECT name FROM items WHERE id = 'x'`).get()).toEqual({ name: 'from cloud' });
    expect(db.prepare(`SELECT count(*) AS n FROM cdc_sync_origin`).get()).toEqual({ n: 0 });
    db.prepare(`UPDATE items SET name = 'local edit' WHERE id = 'x'`).run();
    const [chunk] = await pull(await openSource(), null, 1);
    expect(chunk!.events.map((e) => [e.op, e.row?.name])).toEqual([['update', 'local edit']]);
  });

  it('hands malformed change rows to the dead letter with their payload and goes on', async () => {
    db.prepare(`INSERT INTO cdc_sync_changes (table_name, op, row_data) VALUES ('items', 'I', '{not json')`).run();
    db.prepare(`INSERT INTO items (id, name, qty) VALUES ('ok', 'fine', 1)`).run();
    const [chunk] = await pull(await openSource(), null, 1);
    expect(chunk!.rejected).toHaveLength(1);
    expect(chunk!.rejected[0]!.payload).toBe('{not json');
    expect(chunk!.rejected[0]!.error.message).toMatch(/malformed change 1/);
    expect(chunk!.events.map((e) => e.key)).toEqual([{ id: 'ok' }]);
  });

  it('refuses a table without capture triggers and prints triggers that list its columns', async () => {
    await expect(openSource(10, [{ source: 'other', target: 'other' }])).rejects.toThrow(ConfigError);
    const sql = sqliteChangelogSetupSql(db, ['items']);
    expect(sql).toContain(`CREATE TRIGGER "cdc_sync_items_update" AFTER UPDATE ON "items"`);
    expect(sql).toContain(`(SELECT origin FROM cdc_sync_origin) IS NULL`);
    expect(sql).toContain(`OLD."qty" IS NOT NEW."qty"`);
    // The generated column is in the images but not among the compared columns.
    expect(sql).not.toContain(`OLD."total" IS NOT`);
  });

  it('skips, counts and logs once the changes of a captured table the stream does not name', async () => {
    applySqliteChangelogSetup(db, ['other']);
    for (let id = 1; id <= 3; id += 1) db.prepare(`INSERT INTO other (id) VALUES (?)`).run(id);
    db.prepare(`INSERT INTO items (id, name, qty) VALUES ('a', 'apple', 1)`).run();
    const source = await openSource(2);
    const chunks = await pull(source, null, 1);
    expect(chunks.flatMap((c) => c.events.map((e) => e.table))).toEqual(['items']);
    const suppressed = (await lastContext().metrics.suppressed.get()).values.find((v) => v.labels.table === 'other' && v.labels.reason === 'unknown-table');
    expect(suppressed?.value).toBe(3);
  });
});
