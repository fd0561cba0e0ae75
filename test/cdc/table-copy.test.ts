import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { changelogSetupSql } from '../../src/cdc/postgres/changelog-setup.js';
import { ChangeLogSource } from '../../src/cdc/postgres/changelog-source.js';
import { applySqliteChangelogSetup } from '../../src/db/sqlite/changelog-setup.js';
import { SqliteChangeLogSource } from '../../src/cdc/sqlite/changelog-source.js';
import type { Source } from '../../src/cdc/source.js';
import { splitCopy } from '../../src/cdc/table-copy.js';
import { keyString, type ChangeEvent, type SourceChunk } from '../../src/core/change-event.js';
import type { TableConfig } from '../../src/core/mapping.js';
import { stepper } from '../support/pull.js';
import { testContext } from '../support/stream-context.js';
import { createTestDatabase, type TestDatabase } from '../support/test-database.js';

/**
 * The copy of existing rows that the change-log sources (SQLite and
 * PostgreSQL) make while they stream: the same behaviours, run against both.
 */

const TABLES: TableConfig[] = [
  { source: 'items', target: 'items' },
  { source: 'pairs', target: 'pairs' },
];
const SCHEMA = [
  `CREATE TABLE items (id integer PRIMARY KEY, name text)`,
  `CREATE TABLE pairs (a integer NOT NULL, b text NOT NULL, v text, PRIMARY KEY (a, b))`,
];

interface Harness {
  exec(sql: string): Promise<void>;
  /** Every row of a table, as JSON text per row, sorted. */
  rows(table: string): Promise<string[]>;
  open(readLimit: number, snapshot?: 'initial' | 'never'): Promise<{ source: Source; context: ReturnType<typeof testContext> }>;
  /** Empties both tables and the change log. */
  reset(): Promise<void>;
  /** Empties the change log: the rows there now are as old as the tables, older than cdc-sync. */
  forgetLog(): Promise<void>;
}

const opened: { source: Source; context: ReturnType<typeof testContext> }[] = [];
async function closeAll(): Promise<void> {
  for (const { source, context } of opened.splice(0)) {
    context.controller.abort();
    await source.close();
  }
}
const options = (readLimit: number, snapshot: 'initial' | 'never') => ({
  tables: TABLES,
  readLimit,
  pollIntervalMs: 1,
  idleIntervalMs: 20,
  retry: { attempts: 3, minDelayMs: 10, maxDelayMs: 50 },
  snapshot,
});

function sqliteHarness(): Harness & { close(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'cdc-copy-'));
  const path = join(dir, 'copy.db');
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  for (const sql of SCHEMA) db.exec(sql);
  applySqliteChangelogSetup(db, ['items', 'pairs']);
  return {
    exec: async (sql) => void db.exec(sql),
    rows: async (table) => (db.prepare(`SELECT * FROM ${table}`).all() as Record<string, unknown>[]).map((r) => JSON.stringify(r)).sort(),
    async open(readLimit, snapshot = 'initial') {
      const source = new SqliteChangeLogSource({ url: `sqlite:${path}`, ...options(readLimit, snapshot) });
      const context = testContext();
      opened.push({ source, context });
      await source.open(context);
      return { source, context };
    },
    reset: async () => void db.exec(`DELETE FROM items; DELETE FROM pairs; DELETE FROM cdc_sync_changes;`),
    forgetLog: async () => void db.exec(`DELETE FROM cdc_sync_changes`),
    close() {
      db.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function postgresHarness(db: TestDatabase): Harness {
  return {
    exec: async (sql) => void (await db.query(sql)),
    rows: async (table) => (await db.query<{ j: string }>(`SELECT row_to_json(t)::text AS j FROM ${table} t`)).map((r) => r.j).sort(),
    async open(readLimit, snapshot = 'initial') {
      const source = new ChangeLogSource({ url: db.url, ...options(readLimit, snapshot) });
      const context = testContext();
      opened.push({ source, context });
      await source.open(context);
      return { source, context };
    },
    reset: async () => void (await db.query(`TRUNCATE items, pairs, cdc_sync.changes`)),
    forgetLog: async () => void (await db.query(`TRUNCATE cdc_sync.changes`)),
  };
}

/** The rows the events leave when applied in order to empty tables, as JSON text per row, sorted. */
function applied(events: ChangeEvent[], table: string): string[] {
  const rows = new Map<string, unknown>();
  for (const e of events) {
    if (e.table !== table || e.op === 'truncate') continue;
    if (e.op === 'delete') rows.delete(keyString(e.key));
    else rows.set(keyString(e.key), e.row);
  }
  return [...rows.values()].map((r) => JSON.stringify(r)).sort();
}

/** The copy is done and the log was caught up when `chunk` was read. */
const done = (chunk: SourceChunk | undefined) => chunk !== undefined && chunk.caughtUp && splitCopy(chunk.position).copy === null;

/** Reads until the copy is done and the log caught up. */
async function drain(next: () => Promise<SourceChunk | null>, into: SourceChunk[]): Promise<void> {
  while (!done(into.at(-1))) into.push((await next())!);
}

/** Reads until the source has nothing more for `idleMs`. */
async function readAll(next: (waitMs: number) => Promise<SourceChunk | null>, into: SourceChunk[], idleMs: number): Promise<void> {
  for (let chunk = await next(idleMs); chunk; chunk = await next(idleMs)) into.push(chunk);
}

const values = (n: number) => Array.from({ length: n }, (_, i) => i);

const edit = fc.oneof(
  fc.record({ kind: fc.constant('upsert' as const), id: fc.integer({ min: 1, max: 40 }), name: fc.string({ maxLength: 3 }) }),
  fc.record({ kind: fc.constant('delete' as const), id: fc.integer({ min: 1, max: 40 }) }),
  fc.record({ kind: fc.constant('rekey' as const), id: fc.integer({ min: 1, max: 40 }), to: fc.integer({ min: 41, max: 80 }) }),
  fc.record({ kind: fc.constant('pair' as const), a: fc.integer({ min: 1, max: 4 }), b: fc.constantFrom('a', 'B', 'b', 'é', ''), v: fc.option(fc.string({ maxLength: 2 })) }),
);
type Edit = typeof edit extends fc.Arbitrary<infer T> ? T : never;

const literal = (s: string) => `'${s.replace(/'/g, "''")}'`;
function editSql(e: Edit): string {
  switch (e.kind) {
    case 'upsert':
      return `INSERT INTO items (id, name) VALUES (${e.id}, ${literal(e.name)}) ON CONFLICT (id) DO UPDATE SET name = excluded.name`;
    case 'delete':
      return `DELETE FROM items WHERE id = ${e.id}`;
    case 'rekey':
      return `UPDATE items SET id = ${e.to} WHERE id = ${e.id} AND NOT EXISTS (SELECT 1 FROM items WHERE id = ${e.to})`;
    case 'pair':
      return `INSERT INTO pairs (a, b, v) VALUES (${e.a}, ${literal(e.b)}, ${e.v === null ? 'NULL' : literal(e.v)}) ON CONFLICT (a, b) DO UPDATE SET v = excluded.v`;
  }
}

function behaviours(name: string, harness: () => Harness) {
  describe(`copy of existing rows: ${name}`, () => {
    it('copies the rows the tables hold at the first start, in chunks of readLimit in key order, then streams changes', async () => {
      const h = harness();
      await h.reset();
      await h.exec(`INSERT INTO items (id, name) VALUES ${values(7).map((i) => `(${i + 1}, 'n${i + 1}')`).join(', ')}`);
      await h.exec(`INSERT INTO pairs (a, b, v) VALUES (1, 'b', 'x'), (1, 'a', NULL), (0, 'z', 'y')`);
      await h.forgetLog();
      const { source, context } = await h.open(3);
      const reader = stepper(source, null);
      const chunks: SourceChunk[] = [];
      await drain(() => reader.next(), chunks);
      const copied = chunks.flatMap((c) => c.events);
      expect(copied.every((e) => e.copied === true && e.op === 'insert' && e.commitTime.getTime() === 0)).toBe(true);
      // Parents' order is the configuration's here (no order given): items, then pairs; each in key order.
      expect(copied.map((e) => e.key)).toEqual([
        ...values(7).map((i) => ({ id: i + 1 })),
        { a: 0, b: 'z' },
        { a: 1, b: 'a' },
        { a: 1, b: 'b' },
      ]);
      expect(chunks.slice(0, 3).map((c) => c.events.length)).toEqual([3, 3, 1]);
      expect(applied(copied, 'pairs')).toEqual(await h.rows('pairs'));
      const metrics = await context.metrics.registry.getSingleMetricAsString('cdc_sync_snapshot_rows_total');
      expect(metrics).toContain('table="items"} 7');
      expect(await context.metrics.registry.getSingleMetricAsString('cdc_sync_snapshot_progress_ratio')).toContain('table="items"} 1');
      await h.exec(`UPDATE items SET name = 'later' WHERE id = 2`);
      const next = (await reader.next())!;
      expect(next.events.map((e) => [e.op, e.key, e.row?.name, e.copied ?? false])).toEqual([['update', { id: 2 }, 'later', false]]);
      reader.stop();
      await closeAll();
    });

    it('copies nothing with snapshot: never', async () => {
      const h = harness();
      await h.reset();
      await h.exec(`INSERT INTO items (id, name) VALUES (1, 'old')`);
      await h.forgetLog();
      const { source } = await h.open(10, 'never');
      const reader = stepper(source, null);
      await h.exec(`INSERT INTO items (id, name) VALUES (2, 'new')`);
      const chunk = (await reader.next())!;
      expect(chunk.events.map((e) => e.key)).toEqual([{ id: 2 }]);
      reader.stop();
      await closeAll();
    });

    it('copies a table again on request (cdc-sync snapshot) from the checkpoint on, leaving the other table alone', async () => {
      const h = harness();
      await h.reset();
      await h.exec(`INSERT INTO items (id, name) VALUES (1, 'a'), (2, 'b')`);
      await h.exec(`INSERT INTO pairs (a, b, v) VALUES (1, 'a', 'v')`);
      const { source } = await h.open(10, 'never');
      const reader = stepper(source, null);
      const first = (await reader.next())!;
      expect(first.events).toHaveLength(3);
      reader.stop();
      await closeAll();
      const { source: again } = await h.open(10, 'never');
      const position = again.requestSnapshot!(first.position, ['pairs']);
      expect(() => again.requestSnapshot!(first.position, ['nope'])).toThrow(/not a table of this stream/);
      const chunks: SourceChunk[] = [];
      const rereader = stepper(again, position);
      await drain(() => rereader.next(), chunks);
      expect(chunks.flatMap((c) => c.events).map((e) => [e.table, e.copied ?? false])).toEqual([['pairs', true]]);
      rereader.stop();
      await closeAll();
    });

    it('copies only the rows a --where condition holds for, in chunks by key, and the next table whole', async () => {
      const h = harness();
      await h.reset();
      await h.exec(`INSERT INTO items (id, name) VALUES ${values(20).map((i) => `(${i + 1}, '${i % 2 ? 'odd' : 'even'}')`).join(', ')}`);
      await h.exec(`INSERT INTO pairs (a, b, v) VALUES (1, 'a', 'v'), (2, 'b', 'w')`);
      const { source } = await h.open(3, 'never');
      const reader = stepper(source, null);
      const first = (await reader.next())!;
      reader.stop();
      await closeAll();
      const { source: again } = await h.open(3, 'never');
      // Only the rows named 'even' of items; a copy of pairs waiting behind it is whole.
      const position = again.requestSnapshot!(again.requestSnapshot!(first.position, ['pairs']), ['items'], "name = 'even' AND id > 4");
      const chunks: SourceChunk[] = [];
      const rereader = stepper(again, position);
      await drain(() => rereader.next(), chunks);
      const copied = chunks.flatMap((c) => c.events).filter((e) => e.copied);
      expect(copied.filter((e) => e.table === 'items').map((e) => e.key.id)).toEqual([5, 7, 9, 11, 13, 15, 17, 19]);
      expect(copied.filter((e) => e.table === 'pairs')).toHaveLength(2);
      expect(splitCopy(chunks[0]!.position).copy).toMatchObject({ tables: ['items', 'pairs'], where: "name = 'even' AND id > 4" });
      rereader.stop();
      await closeAll();
    });

    it('no chunk takes a row back to an older state while a writer changes random rows during the whole copy', async () => {
      const h = harness();
      await h.reset();
      const n = 2000;
      for (let i = 0; i < n; i += 500) {
        await h.exec(`INSERT INTO items (id, name) VALUES ${values(500).map((j) => `(${i + j + 1}, 'old')`).join(', ')}`);
      }
      await h.forgetLog();
      const { source } = await h.open(10);
      const reader = stepper(source, null);
      let writing = true;
      let edits = 0;
      // Deliberately racing the chunk reads: each statement commits while the reader may be between two of its own.
      const writer = (async () => {
        let seed = 7;
        const random = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
        while (writing) {
          const id = 1 + Math.floor(random() * (n + 100));
          const r = random();
          await h.exec(
            r < 0.6
              ? `INSERT INTO items (id, name) VALUES (${id}, 'w${edits}') ON CONFLICT (id) DO UPDATE SET name = excluded.name`
              : r < 0.85
                ? `DELETE FROM items WHERE id = ${id}`
                : `UPDATE items SET id = ${n + 100 + edits} WHERE id = ${id}`,
          );
          edits += 1;
          // A microtask turn: SQLite's reads never wait for I/O, so the reader would never let a timer-paced writer in.
          await Promise.resolve();
        }
      })();
      const chunks: SourceChunk[] = [];
      while (splitCopy(chunks.at(-1)?.position ?? '{"copy":{}}').copy !== null) chunks.push((await reader.next())!);
      writing = false;
      await writer;
      await readAll((ms) => reader.next(ms), chunks, 300);
      reader.stop();
      await closeAll();
      expect(edits).toBeGreaterThan(20);
      expect(applied(chunks.flatMap((c) => c.events), 'items')).toEqual(await h.rows('items'));
    }, 60_000);

    it('applied in order, copy and changes leave the tables as they are, whatever is edited between chunks and however often the reader restarts from its checkpoint; no chunk is copied twice', async () => {
      const h = harness();
      await fc.assert(
        fc.asyncProperty(
          fc.uniqueArray(fc.integer({ min: 1, max: 40 }), { maxLength: 25 }),
          fc.integer({ min: 1, max: 6 }),
          fc.array(fc.record({ edits: fc.array(edit, { maxLength: 3 }), restart: fc.boolean() }), { maxLength: 12 }),
          async (ids, readLimit, steps) => {
            await h.reset();
            if (ids.length > 0) await h.exec(`INSERT INTO items (id, name) VALUES ${ids.map((i) => `(${i}, 'i${i}')`).join(', ')}`);
            await h.exec(`INSERT INTO pairs (a, b, v) VALUES (2, 'b', 'p'), (2, 'B', NULL), (3, 'é', 'q')`);
            await h.forgetLog();
            let { source } = await h.open(readLimit);
            let reader = stepper(source, null);
            const chunks: SourceChunk[] = [];
            for (const step of steps) {
              for (const e of step.edits) await h.exec(editSql(e));
              // Caught up, a reader waits for the next change: not for long here.
              const chunk = await reader.next(100);
              if (!chunk) continue;
              chunks.push(chunk);
              if (step.restart) {
                reader.stop();
                await closeAll();
                ({ source } = await h.open(readLimit));
                reader = stepper(source, chunk.position);
              }
            }
            await readAll((ms) => reader.next(ms), chunks, 300);
            expect(splitCopy(chunks.at(-1)?.position ?? null).copy).toBeNull();
            reader.stop();
            await closeAll();
            const events = chunks.flatMap((c) => c.events);
            expect(applied(events, 'items')).toEqual(await h.rows('items'));
            expect(applied(events, 'pairs')).toEqual(await h.rows('pairs'));
            const copiedItems = events.filter((e) => e.copied && e.table === 'items').map((e) => e.key.id as number);
            expect(copiedItems).toEqual([...copiedItems].sort((x, y) => x - y));
            expect(new Set(copiedItems).size).toBe(copiedItems.length);
          },
        ),
        { numRuns: 25 },
      );
    }, 120_000);
  });
}

let sqlite: ReturnType<typeof sqliteHarness>;
let pgDb: TestDatabase;

beforeAll(async () => {
  sqlite = sqliteHarness();
  pgDb = await createTestDatabase('copy');
  for (const sql of SCHEMA) await pgDb.query(sql);
  await pgDb.query(changelogSetupSql(['public.items', 'public.pairs']));
});

afterAll(async () => {
  await closeAll();
  sqlite.close();
  await pgDb.drop();
});

behaviours('sqlite-changelog', () => sqlite);
behaviours('postgres-changelog', () => postgresHarness(pgDb));
