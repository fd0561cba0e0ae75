import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { FileDeadLetterStore } from '../../src/dead-letters/file-dead-letter-store.js';
import { metricValue, runCli, runCliToEnd, waitFor, writeConfig, CliProcesses, type CliProcess } from '../support/cli.js';
import { expectItemCounters, writeItemChanges } from '../support/items-workload.js';
import { startPostgrest, type PostgrestStandIn } from '../support/postgrest/server.js';
import { createTestDatabase, type TestDatabase } from '../support/test-database.js';

/**
 * A stream from PostgreSQL (change-log triggers) into "Supabase": the real CLI
 * and the real supabase-js client against the PostgREST stand-in, whose
 * database is B. Checkpoints and dead letters go to files.
 */
let a: TestDatabase;
let b: TestDatabase;
let api: PostgrestStandIn;
let dir: string;
const processes = new CliProcesses();

const SCHEMA = `
  CREATE TABLE "tblParents" ("ParentID" int PRIMARY KEY, "Name" text NOT NULL);
  CREATE TABLE "tblItems" ("ItemID" bigint PRIMARY KEY, "ParentID" int REFERENCES "tblParents", "Name" text NOT NULL,
                           "Price" numeric(20,4), "RowVer" int DEFAULT 0);`;
const TARGET_SCHEMA = `
  CREATE TABLE parents (parent_id int PRIMARY KEY, name text NOT NULL);
  CREATE TABLE items (item_id bigint PRIMARY KEY, parent_id int REFERENCES parents, name text NOT NULL CHECK (name <> 'poison'),
                      price numeric(20,4),
                      origin text DEFAULT current_setting('request.headers', true)::json->>'x-cdc-sync-origin');`;

function config(): string {
  return writeConfig(`
streams:
  - name: a-to-supabase
    # These tests count the change log's changes; the copy of existing rows has its own (snapshot.test.ts).
    source: { type: postgres-changelog, url: "\${SOURCE_URL}", idleIntervalMs: 100, snapshot: never }
    sink: { type: supabase, url: "\${SUPABASE_URL}", key: "\${SUPABASE_SERVICE_ROLE_KEY}" }
    tables:
      - { source: public.tblParents, target: public.parents }
      - { source: public.tblItems, target: public.items, key: [ItemID], exclude: [RowVer] }
    batch: { maxSize: 200, maxWaitMs: 20 }
    retry: { attempts: 3, minDelayMs: 50, maxDelayMs: 500 }
checkpoints: { path: "\${STATE_DIR}/checkpoints.json" }
deadLetters: { path: "\${STATE_DIR}/dead-letters.jsonl" }
http: { port: 0, host: 127.0.0.1 }
log: { level: info }
`);
}

const env = () => ({ SOURCE_URL: a.url, SUPABASE_URL: api.url, SUPABASE_SERVICE_ROLE_KEY: api.key, STATE_DIR: dir });

function start(): CliProcess {
  const cli = runCli(['run', '--config', config()], env());
  return processes.add(cli);
}

async function stop(cli: CliProcess): Promise<number | null> {
  return processes.stop(cli, 'SIGINT');
}

async function snapshots() {
  const source = {
    parents: await a.query(`SELECT "ParentID" AS parent_id, "Name" AS name FROM "tblParents" ORDER BY 1`),
    items: await a.query(`SELECT "ItemID"::text AS item_id, "ParentID" AS parent_id, "Name" AS name, "Price"::text AS price FROM "tblItems" ORDER BY "ItemID"`),
  };
  const target = {
    parents: await b.query(`SELECT parent_id, name FROM parents ORDER BY 1`),
    items: await b.query(`SELECT item_id::text, parent_id, name, price::text FROM items ORDER BY items.item_id`),
  };
  return { source, target };
}
let lastDifference = '';
async function inSync(): Promise<boolean> {
  const { source, target } = await snapshots();
  const only = (left: unknown[], right: unknown[]) => {
    const other = new Set(right.map((x) => JSON.stringify(x)));
    return left.map((x) => JSON.stringify(x)).filter((x) => !other.has(x)).slice(0, 3);
  };
  lastDifference = `source has ${source.items.length} items / ${source.parents.length} parents, target ${target.items.length} / ${target.parents.length}; only in source: ${only(source.items, target.items)} ${only(source.parents, target.parents)}; only in target: ${only(target.items, source.items)}`;
  return JSON.stringify(source) === JSON.stringify(target);
}

beforeAll(async () => {
  a = await createTestDatabase('e2e_sb_a');
  b = await createTestDatabase('e2e_sb_b');
  await a.query(SCHEMA);
  await b.query(TARGET_SCHEMA);
  api = await startPostgrest({ databaseUrl: b.url });
  // One script from the real command, in two parts: the source's and Supabase's.
  dir = mkdtempSync(join(tmpdir(), 'cdc-sync-e2e-supabase-'));
  const init = await runCliToEnd(['init-sql', '--config', config()], env());
  expect(init.code).toBe(0);
  const split = init.stdout.indexOf('-- stream "a-to-supabase": run on the Supabase');
  expect(split).toBeGreaterThan(0);
  expect(init.stdout.slice(split)).toContain('CREATE TRIGGER cdc_sync_skip_noop BEFORE UPDATE ON "public"."items"');
  await a.query(init.stdout.slice(0, split));
  await b.query(init.stdout.slice(split));
  rmSync(dir, { recursive: true, force: true });
});

afterEach(async () => {
  await processes.killAll();
  rmSync(dir, { recursive: true, force: true });
});

afterAll(async () => {
  await api.close();
  await a.drop();
  await b.drop();
});

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cdc-sync-e2e-supabase-'));
  api.reset();
  await a.query(`TRUNCATE "tblItems", "tblParents" CASCADE`);
  await a.query(`TRUNCATE cdc_sync.changes`);
  await b.query(`TRUNCATE items, parents CASCADE`);
});

describe('postgres-changelog → supabase through the CLI', () => {
  it('keeps the Supabase table equal to the source through inserts, updates, deletes and a restart, with checkpoints in the file', async () => {
    const cli = start();
    await writeItemChanges(a);
    await waitFor(inSync, 30_000, () => `${lastDifference}\n${cli.stderr()}`);

    // The target is equal before the excluded-column updates are read (they change nothing there): wait for them.
    await waitFor(async () => metricValue(await cli.metrics(), 'cdc_sync_events_suppressed_total', { stream: 'a-to-supabase', table: 'public.tblItems', reason: 'no-op' }) === 455, 30_000);
    const text = await cli.metrics();
    expectItemCounters(text, 'a-to-supabase');
    const labels = { stream: 'a-to-supabase', table: 'public.tblItems' };
    expect((await fetch(await cli.url('/readyz'))).status).toBe(200);
    // Batches, not rows: a few hundred changes in a handful of requests.
    expect(api.count({ method: 'POST', table: 'items' })).toBeLessThan(25);
    expect(await b.query(`SELECT DISTINCT origin FROM items`)).toEqual([{ origin: 'a-to-supabase' }]);

    expect(await stop(cli)).toBe(0);
    const saved = JSON.parse(readFileSync(join(dir, 'checkpoints.json'), 'utf8')) as { streams: Record<string, { position: string }> };
    expect(saved.streams['a-to-supabase']!.position).toBeTruthy();
    // Changes made while the process is down arrive after the restart, and only they are read again.
    await a.query(`UPDATE "tblParents" SET "Name" = 'renamed' WHERE "ParentID" = 3`);
    await a.query(`DELETE FROM "tblItems" WHERE "ItemID" <= 10`);
    await a.query(`INSERT INTO "tblItems" VALUES (1000, 2, 'late', 1)`);
    const again = start();
    await waitFor(inSync, 30_000, () => `${lastDifference}\n${again.stderr()}`);
    const after = await again.metrics();
    expect(metricValue(after, 'cdc_sync_events_captured_total', { ...labels, op: 'insert' })).toBe(1);
    expect(metricValue(after, 'cdc_sync_events_captured_total', { ...labels, op: 'delete' })).toBe(10);
    expect(await stop(again)).toBe(0);
  });

  it('retries through a burst of 503s and 429s and loses nothing', async () => {
    api.fail(4, 'pgrst-503', { method: 'POST' });
    api.fail(2, '429', { method: 'POST' });
    api.fail(2, 'gateway-503', { method: 'DELETE' });
    api.fail(1, 'gateway-504', { method: 'POST' });
    const cli = start();
    await a.query(`INSERT INTO "tblParents" SELECT g, 'p' || g FROM generate_series(1, 5) g`);
    await a.query(`INSERT INTO "tblItems" SELECT g, 1 + g % 5, 'i' || g, g FROM generate_series(1, 300) g`);
    await a.query(`DELETE FROM "tblItems" WHERE "ItemID" % 3 = 0`);
    await a.query(`UPDATE "tblItems" SET "Price" = "Price" * 2 WHERE "ItemID" % 5 = 0`);
    await waitFor(inSync, 60_000, () => `${lastDifference}\n${cli.stderr()}`);
    const text = await cli.metrics();
    expect(metricValue(text, 'cdc_sync_retries_total', { stream: 'a-to-supabase' })).toBeGreaterThanOrEqual(9);
    expect(metricValue(text, 'cdc_sync_events_failed_total', { table: 'public.tblItems', reason: 'other' })).toBe(0);
    expect(api.requests.filter((r) => r.status === 503 || r.status === 429 || r.status === 504)).toHaveLength(9);
    expect(await new FileDeadLetterStore(join(dir, 'dead-letters.jsonl')).read()).toEqual([]);
    expect(await stop(cli)).toBe(0);
  });

  it('isolates a row that violates a CHECK on the target: the rest applied, the bad one in the dead-letter file', async () => {
    const cli = start();
    await a.query(`INSERT INTO "tblParents" VALUES (1, 'p')`);
    await a.query(`INSERT INTO "tblItems" SELECT g, 1, CASE WHEN g = 37 THEN 'poison' ELSE 'ok ' || g END, g FROM generate_series(1, 100) g`);
    await waitFor(async () => (await b.query('SELECT 1 FROM items')).length === 99, 30_000, () => cli.stderr());
    const store = new FileDeadLetterStore(join(dir, 'dead-letters.jsonl'));
    await waitFor(async () => (await store.read()).length > 0);
    const letters = await store.read();
    expect(letters).toHaveLength(1);
    expect(letters[0]).toMatchObject({ stream: 'a-to-supabase', table: 'public.tblItems', key: { item_id: 37 }, reason: 'constraint' });
    expect(letters[0]!.error).toContain('items_name_check');
    expect(letters[0]!.error).toContain('code=23514');
    expect(JSON.parse(letters[0]!.payload).row.name).toBe('poison');
    // The dead letter is written before the batch's checkpoint and counters: wait for those.
    await waitFor(async () => metricValue(await cli.metrics(), 'cdc_sync_events_applied_total', { table: 'public.tblItems', op: 'insert' }) === 99);
    const text = await cli.metrics();
    expect(metricValue(text, 'cdc_sync_events_failed_total', { table: 'public.tblItems', reason: 'constraint' })).toBe(1);
    expect(metricValue(text, 'cdc_sync_events_applied_total', { table: 'public.tblItems', op: 'insert' })).toBe(99);
    // The stream goes on, and its checkpoint is past the bad row.
    await a.query(`INSERT INTO "tblItems" VALUES (101, 1, 'after', 1)`);
    await waitFor(async () => (await b.query('SELECT 1 FROM items WHERE item_id = 101')).length === 1);
    expect(await stop(cli)).toBe(0);
    expect(JSON.parse(readFileSync(join(dir, 'checkpoints.json'), 'utf8')).streams['a-to-supabase'].position).toBeTruthy();
    expect(await store.read()).toHaveLength(1);
  });

  it('validate exits 2 naming sink.key when the supabase sink has no key', async () => {
    const path = writeConfig(`streams:
  - name: x
    source: { type: postgres-changelog, url: a }
    sink: { type: supabase, url: https://example.supabase.co }
    tables: [{ source: public.a, target: public.a }]
`);
    const result = await runCliToEnd(['validate', '--config', path]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('streams[0].sink.key');
  });

  it('finds a target left out among the tables the REST API exposes (ignoring case and underscores), or says none is named like the source', async () => {
    const write = (source: string) =>
      writeConfig(`streams:
  - name: x
    source: { type: postgres-changelog, url: "\${SOURCE_URL}" }
    sink: { type: supabase, url: "\${SUPABASE_URL}", key: "\${SUPABASE_SERVICE_ROLE_KEY}" }
    tables: [{ source: ${source} }]
`);
    // The sink finds public.parents for a source named Parents; the check then stops at the source, which has no such table.
    const found = await runCliToEnd(['validate', '--config', write('public.Parents')], env());
    expect(found.code).toBe(2);
    expect(found.stderr).toContain('streams[0].tables[0].source: table public.Parents does not exist in the source database');
    const none = await runCliToEnd(['validate', '--config', write('public.tblParents')], env());
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('streams[0].tables[0].target: no table of the sink database is named like public.tblParents');
  });
});
