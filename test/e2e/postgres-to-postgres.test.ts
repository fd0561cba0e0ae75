import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../support/test-database.js';
import { metricValue, runCli, runCliToEnd, waitFor, writeConfig, CliProcesses, type CliProcess } from '../support/cli.js';
import { expectItemCounters, writeItemChanges } from '../support/items-workload.js';

/**
 * A stream from database A to database B driven through the real entry
 * points: the config file, `cdc-sync init-sql`, `cdc-sync run`, HTTP.
 */
let a: TestDatabase;
let b: TestDatabase;
const processes = new CliProcesses();

const SCHEMA = `
  CREATE TABLE "tblParents" ("ParentID" int PRIMARY KEY, "Name" text NOT NULL);
  CREATE TABLE "tblItems" ("ItemID" bigint PRIMARY KEY, "ParentID" int REFERENCES "tblParents", "Name" text NOT NULL,
                           "Price" numeric(20,4), "RowVer" int DEFAULT 0);`;
const TARGET_SCHEMA = `
  CREATE TABLE parents (parent_id int PRIMARY KEY, name text NOT NULL);
  CREATE TABLE items (item_id bigint PRIMARY KEY, parent_id int REFERENCES parents, name text NOT NULL CHECK (name <> 'poison'),
                      price numeric(20,4));`;

function config(options: { sinkUrl?: string; maxSize?: number; extraTable?: string } = {}): string {
  return writeConfig(`
streams:
  - name: a-to-b
    # These tests count the change log's changes; the copy of existing rows has its own (snapshot.test.ts).
    source: { type: postgres-changelog, url: "\${SOURCE_URL}", idleIntervalMs: 100, snapshot: never }
    sink: { type: postgres, url: "${options.sinkUrl ?? '${SINK_URL}'}" }
    tables:
      - { source: public.tblParents, target: public.parents }
      - { source: public.tblItems, target: public.items, key: [ItemID], exclude: [RowVer] }
${options.extraTable ?? ''}
    batch: { maxSize: ${options.maxSize ?? 200}, maxWaitMs: 20 }
    retry: { attempts: 3, minDelayMs: 50, maxDelayMs: 500 }
http: { port: 0, host: 127.0.0.1 }
log: { level: info }
`);
}

function start(path: string): CliProcess {
  const cli = runCli(['run', '--config', path], { SOURCE_URL: a.url, SINK_URL: b.url });
  return processes.add(cli);
}

async function stop(cli: CliProcess, signal: NodeJS.Signals = 'SIGINT'): Promise<number | null> {
  return processes.stop(cli, signal);
}

async function snapshotA() {
  return {
    parents: await a.query(`SELECT "ParentID" AS parent_id, "Name" AS name FROM "tblParents" ORDER BY 1`),
    items: await a.query(`SELECT "ItemID"::text AS item_id, "ParentID" AS parent_id, "Name" AS name, "Price"::text AS price FROM "tblItems" ORDER BY "ItemID"`),
  };
}
async function snapshotB() {
  return {
    parents: await b.query(`SELECT parent_id, name FROM parents ORDER BY 1`),
    items: await b.query(`SELECT item_id::text, parent_id, name, price::text FROM items ORDER BY items.item_id`),
  };
}
let lastDifference = '';
async function inSync(): Promise<boolean> {
  const [left, right] = [await snapshotA(), await snapshotB()];
  const differing = (name: 'parents' | 'items') => {
    const r = new Set(right[name].map((x) => JSON.stringify(x)));
    return left[name].filter((x) => !r.has(JSON.stringify(x))).slice(0, 3).map((x) => JSON.stringify(x));
  };
  lastDifference = `A has ${left.items.length} items, B ${right.items.length}; only in A: ${differing('items').join(' ')} ${differing('parents').join(' ')}`;
  return JSON.stringify(left) === JSON.stringify(right);
}

beforeAll(async () => {
  a = await createTestDatabase('e2e_a');
  b = await createTestDatabase('e2e_b');
  await a.query(SCHEMA);
  await b.query(TARGET_SCHEMA);
  // The set-up comes from the real command, as an operator would apply it.
  const init = await runCliToEnd(['init-sql', '--config', config()], { SOURCE_URL: a.url, SINK_URL: b.url });
  expect(init.code).toBe(0);
  expect(init.stdout).toContain('CREATE TRIGGER cdc_sync_capture');
  await a.query(init.stdout);
});

afterEach(async () => {
  await processes.killAll();
});

afterAll(async () => {
  await a.drop();
  await b.drop();
});

beforeEach(async () => {
  await a.query(`TRUNCATE "tblItems", "tblParents" CASCADE`);
  await a.query(`TRUNCATE cdc_sync.changes`);
  await b.query(`TRUNCATE items, parents CASCADE`);
  await b.query(`DROP SCHEMA IF EXISTS cdc_sync CASCADE`);
});

describe('postgres-changelog → postgres through the CLI', () => {
  it('keeps B equal to A through inserts, updates, deletes and a restart', async () => {
    const cli = start(config());
    await writeItemChanges(a);
    await waitFor(inSync, 30_000, () => `${lastDifference}\n${cli.stderr()}`);

    // The target is equal before the excluded-column updates are read (they change nothing there): wait for them.
    await waitFor(async () => metricValue(await cli.metrics(), 'cdc_sync_events_suppressed_total', { stream: 'a-to-b', table: 'public.tblItems', reason: 'no-op' }) === 455, 30_000);
    const text = await cli.metrics();
    expectItemCounters(text, 'a-to-b');
    const labels = { stream: 'a-to-b', table: 'public.tblItems' };
    expect((await fetch(await cli.url('/healthz'))).status).toBe(200);
    expect((await fetch(await cli.url('/readyz'))).status).toBe(200);

    expect(await stop(cli)).toBe(0);
    // Changes made while the process is down arrive after the restart.
    await a.query(`UPDATE "tblParents" SET "Name" = 'renamed' WHERE "ParentID" = 3`);
    await a.query(`DELETE FROM "tblItems" WHERE "ItemID" <= 10`);
    await a.query(`INSERT INTO "tblItems" VALUES (1000, 2, 'late', 1)`);
    const again = start(config());
    await waitFor(inSync, 30_000, () => again.stderr());
    const after = await again.metrics();
    // Only the changes made while stopped were read again, nothing before the checkpoint.
    expect(metricValue(after, 'cdc_sync_events_captured_total', { ...labels, op: 'insert' })).toBe(1);
    expect(metricValue(after, 'cdc_sync_events_captured_total', { ...labels, op: 'delete' })).toBe(10);
    expect(await stop(again, 'SIGTERM')).toBe(0);
  });

  it('a key change moves the row: the old key is deleted on the target, also when two keys swap in one transaction', async () => {
    const cli = start(config());
    await a.query(`INSERT INTO "tblParents" VALUES (1, 'p')`);
    await a.query(`INSERT INTO "tblItems" SELECT g, 1, 'item ' || g, g FROM generate_series(1, 5) g`);
    await waitFor(async () => (await b.query('SELECT 1 FROM items')).length === 5, 30_000, () => cli.stderr());
    await a.query(`UPDATE "tblItems" SET "ItemID" = "ItemID" + 1000 WHERE "ItemID" = 1`);
    await a.query(`BEGIN;
      UPDATE "tblItems" SET "ItemID" = 99 WHERE "ItemID" = 2;
      UPDATE "tblItems" SET "ItemID" = 2 WHERE "ItemID" = 3;
      UPDATE "tblItems" SET "ItemID" = 3 WHERE "ItemID" = 99;
      COMMIT`);
    await waitFor(inSync, 30_000, () => `${lastDifference}\n${cli.stderr()}`);
    expect(await b.query(`SELECT item_id::int AS id, name FROM items ORDER BY item_id`)).toEqual([
      { id: 2, name: 'item 3' },
      { id: 3, name: 'item 2' },
      { id: 4, name: 'item 4' },
      { id: 5, name: 'item 5' },
      { id: 1001, name: 'item 1' },
    ]);
    // Four edits of keys, each captured once as an update; applied as a delete and an insert each.
    const labels = { stream: 'a-to-b', table: 'public.tblItems' };
    await waitFor(async () => metricValue(await cli.metrics(), 'cdc_sync_events_applied_total', { ...labels, op: 'delete' }) === 4, 10_000);
    const text = await cli.metrics();
    expect(metricValue(text, 'cdc_sync_events_captured_total', { ...labels, op: 'update' })).toBe(4);
    expect(metricValue(text, 'cdc_sync_events_captured_total', { ...labels, op: 'delete' }) ?? 0).toBe(0);
    expect(metricValue(text, 'cdc_sync_events_applied_total', { ...labels, op: 'insert' })).toBe(5 + 4);
    expect(await b.query('SELECT 1 FROM cdc_sync.dead_letters')).toEqual([]);
    expect(await stop(cli)).toBe(0);
  });

  it('sends a poison row to the dead letter and applies the rest of its batch', async () => {
    const cli = start(config());
    await a.query(`INSERT INTO "tblParents" VALUES (1, 'p')`);
    await a.query(`INSERT INTO "tblItems" SELECT g, 1, CASE WHEN g = 37 THEN 'poison' ELSE 'ok ' || g END, g FROM generate_series(1, 100) g`);
    await waitFor(async () => (await b.query('SELECT 1 FROM items')).length === 99, 30_000, () => cli.stderr());
    // The dead letter goes with the batch's checkpoint, in the transaction after its isolated parts.
    await waitFor(async () => (await b.query('SELECT 1 FROM cdc_sync.dead_letters')).length > 0, 30_000, () => cli.stderr());
    const letters = await b.query<{ table_name: string; key: unknown; reason: string; error: string; payload: string }>(
      'SELECT table_name, key, reason, error, payload FROM cdc_sync.dead_letters',
    );
    expect(letters).toHaveLength(1);
    expect(letters[0]).toMatchObject({ table_name: 'public.tblItems', key: { item_id: 37 }, reason: 'constraint' });
    expect(letters[0]!.error).toContain('items_name_check');
    expect(JSON.parse(letters[0]!.payload).row.name).toBe('poison');
    // Counters move just after the commit that made the rows visible.
    await waitFor(async () => metricValue(await cli.metrics(), 'cdc_sync_events_failed_total', { table: 'public.tblItems', reason: 'constraint' }) === 1, 10_000);
    // The stream goes on.
    await a.query(`INSERT INTO "tblItems" VALUES (101, 1, 'after', 1)`);
    await waitFor(async () => (await b.query('SELECT 1 FROM items WHERE item_id = 101')).length === 1);
    expect(await stop(cli)).toBe(0);
  });

  it('dead-letters a change row with malformed JSON and goes on', async () => {
    const cli = start(config());
    await a.query(`INSERT INTO "tblParents" VALUES (1, 'p')`);
    await a.query(`INSERT INTO cdc_sync.changes (table_name, op, row_data) VALUES ('public.tblParents', 'I', '{"ParentID": 2, ')`);
    await a.query(`INSERT INTO "tblParents" VALUES (3, 'q')`);
    await waitFor(async () => (await b.query('SELECT 1 FROM parents')).length === 2, 30_000, () => cli.stderr());
    await waitFor(async () => (await b.query(`SELECT 1 FROM cdc_sync.dead_letters WHERE reason = 'malformed'`)).length === 1);
    await waitFor(async () => metricValue(await cli.metrics(), 'cdc_sync_events_failed_total', { table: 'public.tblParents', reason: 'malformed' }) === 1, 10_000);
    expect(await stop(cli)).toBe(0);
  });

  it('ends with B equal to A after SIGKILL in the middle of a backlog', async () => {
    await a.query(`INSERT INTO "tblParents" SELECT g, 'p' || g FROM generate_series(1, 10) g`);
    // Thirty transactions: a transaction is applied whole, so the kill can only fall between them.
    for (let t = 0; t < 30; t += 1) {
      await a.query(`INSERT INTO "tblItems" SELECT g, 1 + g % 10, 'i' || g, g FROM generate_series($1::int, $2::int) g`, [t * 1000 + 1, t * 1000 + 1000]);
    }
    await a.query(`UPDATE "tblItems" SET "Price" = "Price" + 1 WHERE "ItemID" % 3 = 0`);
    await a.query(`DELETE FROM "tblItems" WHERE "ItemID" % 5 = 0`);
    const first = start(config({ maxSize: 100 }));
    await waitFor(async () => (await b.query<{ n: string }>('SELECT count(*) AS n FROM items'))[0]!.n > '0' , 30_000, () => first.stderr());
    await waitFor(async () => Number((await b.query<{ n: string }>('SELECT count(*) AS n FROM items'))[0]!.n) > 2000, 30_000);
    first.child.kill('SIGKILL');
    expect(await first.exited).toBeNull();
    processes.forget(first);
    const copied = Number((await b.query<{ n: string }>('SELECT count(*) AS n FROM items'))[0]!.n);
    expect(copied).toBeLessThan(24000); // it really was killed mid-way
    await a.query(`UPDATE "tblItems" SET "Name" = 'changed while down' WHERE "ItemID" % 1000 = 1`);
    const second = start(config({ maxSize: 1000 }));
    await waitFor(inSync, 60_000, () => second.stderr());
    expect(await stop(second)).toBe(0);
  });

  it('waits for an unreachable sink: retries with backoff, connected 0, /readyz 503, clean stop', async () => {
    const cli = start(config({ sinkUrl: 'postgres://postgres@127.0.0.1:1/nowhere' }));
    await waitFor(async () => metricValue(await cli.metrics(), 'cdc_sync_retries_total', { stream: 'a-to-b' })! >= 2, 20_000, () => cli.stderr());
    const text = await cli.metrics();
    expect(metricValue(text, 'cdc_sync_connected', { stream: 'a-to-b' })).toBe(0);
    const ready = await fetch(await cli.url('/readyz'));
    expect(ready.status).toBe(503);
    expect(JSON.stringify(await ready.json())).toContain('ECONNREFUSED');
    expect((await fetch(await cli.url('/healthz'))).status).toBe(200);
    expect(await stop(cli, 'SIGTERM')).toBe(0);
  });

  it('exits 2 naming the key path when a configured table or column does not exist', async () => {
    const noTable = await runCliToEnd(['run', '--config', config({ extraTable: '      - { source: public.tblItems, target: public.missing }' })], {
      SOURCE_URL: a.url,
      SINK_URL: b.url,
    });
    expect(noTable.code).toBe(2);
    expect(noTable.stderr).toContain('streams[0].tables[2].target: table public.missing does not exist');

    const noColumn = await runCliToEnd(
      ['run', '--config', config({ extraTable: '      - { source: public.tblItems, target: public.items, columns: { Name: title } }' })],
      { SOURCE_URL: a.url, SINK_URL: b.url },
    );
    expect(noColumn.code).toBe(2);
    expect(noColumn.stderr).toContain('streams[0].tables[2].columns.Name: target column \\"title\\" does not exist');
  });

  it('validate exits 2 with the key path of a bad setting and 0 for a good file', async () => {
    const bad = writeConfig(`streams:\n  - name: x\n    source: { type: postgres-changelog, url: a }\n    sink: { type: postgres, url: b }\n    tables: []\n`);
    const result = await runCliToEnd(['validate', '--config', bad]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('streams[0].tables');
    const missing = writeConfig(`streams:\n  - name: x\n    source: { type: postgres-changelog }\n    sink: { type: postgres, url: b }\n    tables: [{ source: public.a, target: public.a }]\n`);
    const told = await runCliToEnd(['validate', '--config', missing]);
    expect(told.code).toBe(2);
    expect(told.stderr).toContain('streams[0].source.url: missing; write url: "…" (the connection URL');
    const good = await runCliToEnd(['validate', '--config', config()], { SOURCE_URL: a.url, SINK_URL: b.url });
    expect(good.code, good.stderr).toBe(0);
    expect(good.stdout).toContain('valid, checked against the databases (a-to-b)');
  });

  it('validate runs the checks of a start against the databases, writes nothing to them, and --offline checks the file only', async () => {
    const env = { SOURCE_URL: a.url, SINK_URL: b.url };
    // A target table that does not exist, and an excluded column that does not.
    const noTable = await runCliToEnd(['validate', '--config', config({ extraTable: '      - { source: public.tblParents, target: public.no_such_table }' })], env);
    expect(noTable.code).toBe(2);
    expect(noTable.stderr).toContain('streams[0].tables[2].target: table public.no_such_table does not exist in the sink database');
    const noColumn = await runCliToEnd(['validate', '--config', config({ extraTable: '      - { source: public.tblParents, target: public.parents, exclude: [Nope] }' })], env);
    expect(noColumn.code).toBe(2);
    expect(noColumn.stderr).toMatch(/streams\[0\]\.tables\[2\]\.exclude\[0\]: column Nope does not exist/);
    expect((await runCliToEnd(['validate', '--offline', '--config', config({ extraTable: '      - { source: public.tblParents, target: public.no_such_table }' })], env)).code).toBe(0);
    // A database that does not answer: exit 1, saying which.
    const down = await runCliToEnd(['validate', '--config', config({ sinkUrl: 'postgres://nobody@127.0.0.1:1/none' })], env);
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(/ECONNREFUSED|connect/);
    // Nothing written: a sink database that never ran a stream still has no cdc_sync schema after validate.
    const fresh = await createTestDatabase('e2e_validate_fresh');
    try {
      await fresh.query(TARGET_SCHEMA);
      const checked = await runCliToEnd(['validate', '--config', config({ sinkUrl: fresh.url })], env);
      expect(checked.code, checked.stderr).toBe(0);
      expect(await fresh.query(`SELECT to_regnamespace('cdc_sync') AS schema`)).toEqual([{ schema: null }]);
    } finally {
      await fresh.drop();
    }
  });
  it('retry-failed never writes an older image: a dead letter whose key changed again since is superseded', async () => {
    const path = config();
    const cli = start(path);
    await a.query(`INSERT INTO "tblParents" VALUES (1, 'p') ON CONFLICT DO NOTHING`);
    await a.query(`INSERT INTO "tblItems" VALUES (9001, 1, 'poison', 1)`);
    const open = async () =>
      (await b.query<{ ok: boolean }>(`SELECT to_regclass('cdc_sync.dead_letters') IS NOT NULL AS ok`))[0]!.ok
        ? b.query(`SELECT error FROM cdc_sync.dead_letters WHERE key = '{"item_id": 9001}' AND retried_at IS NULL`)
        : [];
    await waitFor(async () => (await open()).length === 1, 30_000, () => cli.stderr());
    // The same key changes again, to a value the target takes: the newer change is applied.
    await a.query(`UPDATE "tblItems" SET "Name" = 'newer' WHERE "ItemID" = 9001`);
    await waitFor(async () => (await b.query(`SELECT name FROM items WHERE item_id = 9001`)).length === 1, 30_000, () => cli.stderr());
    expect(await open()).toEqual([]);
    // The log line arrives through the process's stderr, possibly after the row it describes is committed.
    await waitFor(() => cli.logs.some((l) => String(l.msg).startsWith('dead letters superseded')), 10_000, () => cli.stderr());
    expect(await stop(cli)).toBe(0);
    // Whatever made the old change fail is fixed now; retrying it would write 'poison' over 'newer'.
    await b.query(`ALTER TABLE items DROP CONSTRAINT items_name_check`);
    try {
      const retry = await runCliToEnd(['retry-failed', '--config', path, '--stream', 'a-to-b'], { SOURCE_URL: a.url, SINK_URL: b.url });
      expect(retry.code, retry.stderr).toBe(0);
      expect(await b.query(`SELECT name FROM items WHERE item_id = 9001`)).toEqual([{ name: 'newer' }]);
      const [letter] = await b.query<{ error: string }>(`SELECT error FROM cdc_sync.dead_letters WHERE key = '{"item_id": 9001}'`);
      expect(letter!.error).toContain('superseded by a later change of the key');
    } finally {
      await b.query(`ALTER TABLE items ADD CONSTRAINT items_name_check CHECK (name <> 'poison') NOT VALID`);
    }
  });
});
