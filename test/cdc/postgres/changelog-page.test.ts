import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { changelogSetupSql } from '../../../src/cdc/postgres/changelog-setup.js';
import { ChangeLogSource } from '../../../src/cdc/postgres/changelog-source.js';
import { NEXT_RANGE_SQL, RANGE_BOUNDS_SQL, READ_PAGE_SQL, TRANSACTIONS_END_SQL } from '../../../src/cdc/postgres/changelog-queries.js';
import type { SourceChunk } from '../../../src/core/change-event.js';
import { createPool } from '../../../src/db/postgres/connection.js';
import type { Pool } from '../../../src/db/postgres/pool.js';
import { createTestDatabase, type TestDatabase } from '../../support/test-database.js';
import { testContext } from '../../support/stream-context.js';
import { stepper } from '../../support/pull.js';

/**
 * The change-log reads must cost what they return, whatever the planner
 * knows: a burst is read before autovacuum has analyzed it, and an idle
 * stream looks for a new range at every poll while the log still retains
 * every change it already applied. Each statement the source sent is run
 * again under EXPLAIN ANALYZE and the rows its scans of the change log
 * touched are counted.
 */

const BURST = 20_000;
const TRANSACTION = 10;
const READ_LIMIT = 1000;

interface Backend {
  url: string;
  query<T>(sql: string, params?: unknown[]): Promise<T[]>;
  /** Records the statements the source sends, with their parameters. */
  record(): { sql: string; params: unknown[] }[];
}

const backends: Record<string, Backend> = {};
let db: TestDatabase | undefined;
let pglite: Pool | undefined;
const pgliteDir = mkdtempSync(join(tmpdir(), 'cdc-sync-page-'));

const SET_UP = `
  CREATE TABLE items (id bigint PRIMARY KEY, name text);
  ${changelogSetupSql(['public.items'])};
  -- As a burst right after it was written: no statistics, and none gathered meanwhile.
  ALTER TABLE cdc_sync.changes SET (autovacuum_enabled = false)`;

const BURST_SQL = `DO $$ BEGIN
  FOR t IN 0 .. ${BURST / TRANSACTION - 1} LOOP
    INSERT INTO items SELECT g, 'n' || g FROM generate_series(t * ${TRANSACTION} + 1, (t + 1) * ${TRANSACTION}) g;
    COMMIT;
  END LOOP;
END $$`;

beforeAll(async () => {
  db = await createTestDatabase('changelog_page');
  await db.query(SET_UP);
  await db.query(BURST_SQL);
  backends.PostgreSQL = { url: db.url, query: db.query, record: () => recordStatements(pg.Client.prototype) };
  const url = `pglite:${pgliteDir}`;
  pglite = createPool(url);
  await pglite.query(SET_UP);
  await pglite.query(BURST_SQL);
  const p = pglite;
  backends.PGlite = { url, query: async (sql, params) => (await p.query(sql, params)).rows as never, record: () => recordStatements(PGlite.prototype) };
}, 120_000);

afterAll(async () => {
  await db?.drop();
  await pglite?.end();
  rmSync(pgliteDir, { recursive: true, force: true });
});

afterEach(() => {
  vi.restoreAllMocks();
});

interface PlanNode {
  'Relation Name'?: string;
  'Actual Rows'?: number;
  'Actual Loops'?: number;
  'Rows Removed by Filter'?: number;
  'Rows Removed by Index Recheck'?: number;
  Plans?: PlanNode[];
}

/** Change-log rows the statement's scans read: returned by the scan or removed by its filter (both given per loop). */
async function rowsRead(backend: Backend, sql: string, params: unknown[]): Promise<number> {
  const [row] = await backend.query<{ 'QUERY PLAN': [{ Plan: PlanNode }] }>(`EXPLAIN (ANALYZE, FORMAT JSON) ${sql}`, params);
  const walk = (node: PlanNode): number =>
    (node['Relation Name'] === 'changes'
      ? ((node['Actual Rows'] ?? 0) + (node['Rows Removed by Filter'] ?? 0) + (node['Rows Removed by Index Recheck'] ?? 0)) * (node['Actual Loops'] ?? 1)
      : 0) + (node.Plans ?? []).reduce((sum, child) => sum + walk(child), 0);
  return walk(row!['QUERY PLAN'][0].Plan);
}

/** The statements sent through a client class's `query` (every pg client's, every PGlite's), with their parameters. */
function recordStatements(prototype: { query: (...args: never[]) => unknown }): { sql: string; params: unknown[] }[] {
  const sent: { sql: string; params: unknown[] }[] = [];
  const query = prototype.query;
  vi.spyOn(prototype, 'query').mockImplementation(function (this: unknown, ...args: unknown[]) {
    if (typeof args[0] === 'string' && Array.isArray(args[1])) sent.push({ sql: args[0], params: args[1] as unknown[] });
    return (query as (...a: unknown[]) => unknown).apply(this, args);
  } as never);
  return sent;
}

async function openSource(backend: Backend, idleIntervalMs: number): Promise<{ source: ChangeLogSource; context: ReturnType<typeof testContext> }> {
  const context = testContext();
  const source = new ChangeLogSource({
    url: backend.url,
    tables: [{ source: 'items', target: 'items' }],
    readLimit: READ_LIMIT,
    pollIntervalMs: 0,
    idleIntervalMs,
    retry: { attempts: 3, minDelayMs: 10, maxDelayMs: 50 },
    snapshot: 'never',
  });
  await source.open(context);
  return { source, context };
}

describe.each(['PostgreSQL', 'PGlite'])('change-log reads without statistics on %s', (name) => {
  it('read a burst page by page, each read touching about a page of changes, and find a new range past the retained ones touching only its own', async () => {
    const backend = backends[name]!;
    const sent = backend.record();
    const { source, context } = await openSource(backend, 20);
    const steps = stepper(source, null);
    const chunks: SourceChunk[] = [];
    try {
      for (;;) {
        const chunk = await steps.next(20_000);
        if (!chunk) throw new Error(`no chunk within 20 s after ${chunks.length}`);
        chunks.push(chunk);
        if (chunks.flatMap((c) => c.events).length >= BURST) break;
      }
      // Idle: every change of the burst is applied but kept; a few more arrive.
      await backend.query(`UPDATE items SET name = 'changed' WHERE id <= 3`);
      chunks.push((await steps.next(10_000))!);
    } finally {
      steps.stop();
      context.controller.abort();
      await source.close();
    }
    vi.restoreAllMocks();

    expect(chunks.flatMap((c) => c.events).length).toBe(BURST + 3);
    expect(chunks.at(-1)!.events.map((e) => e.key.id)).toEqual([1, 2, 3]);

    const pages = sent.filter((s) => s.sql === READ_PAGE_SQL);
    expect(pages.length).toBeGreaterThanOrEqual(BURST / READ_LIMIT);
    const pageReads = await Promise.all(pages.map((s) => rowsRead(backend, s.sql, s.params)));
    // A page's id window (readLimit) plus the rest of the transaction it ends in.
    expect(Math.max(...pageReads)).toBeLessThanOrEqual(READ_LIMIT + TRANSACTION);

    // Reading on to the end of the page's transactions: its own rows, not the log (a page of 1,000 changes holds
    // 100 transactions; PostgreSQL without statistics took `xid = ANY` of 100 for half the table and scanned it all).
    const ends = sent.filter((s) => s.sql === TRANSACTIONS_END_SQL);
    expect(ends.length).toBeGreaterThan(0);
    const endReads = await Promise.all(ends.map((s) => rowsRead(backend, s.sql, s.params)));
    expect(Math.max(...endReads)).toBeLessThanOrEqual(READ_LIMIT + TRANSACTION);

    const bounds = sent.filter((s) => (s.sql === RANGE_BOUNDS_SQL || s.sql === NEXT_RANGE_SQL) && s.params[0] !== null);
    expect(bounds.length).toBeGreaterThan(0);
    const boundReads = await Promise.all(bounds.map((s) => rowsRead(backend, s.sql, s.params)));
    // The range of the three updates: its own rows, not the 20,000 retained before it.
    expect(Math.max(...boundReads)).toBeLessThanOrEqual(10);
  }, 60_000);

  it('poll an idle log with one statement a poll, which reads the new range, not the retained log', async () => {
    const backend = backends[name]!;
    const { source, context } = await openSource(backend, 50);
    // From the log's end: a caught-up stream with the whole burst retained behind it.
    const [{ at, end }] = (await backend.query<{ at: string; end: string }>(`SELECT pg_current_snapshot()::text AS at, max(id)::text AS end FROM cdc_sync.changes`)) as [{ at: string; end: string }];
    const steps = stepper(source, `${at}||${end}`);
    try {
      await steps.next(300);
      const sent = backend.record();
      await new Promise((resolve) => setTimeout(resolve, 600));
      vi.restoreAllMocks();
      const polls = sent.filter((s) => s.sql === NEXT_RANGE_SQL);
      expect(polls.length).toBeGreaterThanOrEqual(3);
      expect(sent.map((s) => s.sql).filter((sql) => sql !== NEXT_RANGE_SQL)).toEqual([]);
      const reads = await Promise.all(polls.map((s) => rowsRead(backend, s.sql, s.params)));
      expect(Math.max(...reads)).toBeLessThanOrEqual(10);
    } finally {
      steps.stop();
      context.controller.abort();
      await source.close();
    }
  });
});
