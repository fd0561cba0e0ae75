import { readFileSync } from 'node:fs';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../support/test-database.js';
import { runCli, runCliToEnd, waitFor, writeConfig, type CliProcess } from '../support/cli.js';

/**
 * The control API and the operator commands (`run --once`, `status`,
 * `retry-failed`, `reset`) through the real CLI, on private databases.
 */
let a: TestDatabase;
let b: TestDatabase;
let running: CliProcess[] = [];
const TOKEN = 'e2e-control-token';

const SCHEMA = `CREATE TABLE "tblItems" ("ItemID" int PRIMARY KEY, "Name" text NOT NULL);`;
const TARGET_SCHEMA = `CREATE TABLE items (item_id int PRIMARY KEY, name text NOT NULL, CONSTRAINT no_poison CHECK (name <> 'poison'));`;

function config(): string {
  return writeConfig(`
streams:
  - name: a-to-b
    source: { type: postgres-changelog, url: "\${SOURCE_URL}", idleIntervalMs: 100 }
    sink: { type: postgres, url: "\${SINK_URL}" }
    tables:
      - { source: public.tblItems, target: public.items, key: [ItemID] }
    batch: { maxSize: 50, maxWaitMs: 20 }
    retry: { attempts: 2, minDelayMs: 50, maxDelayMs: 200 }
http: { port: 0, host: 127.0.0.1, token: ${TOKEN} }
log: { level: info }
`);
}

const env = () => ({ SOURCE_URL: a.url, SINK_URL: b.url });
const cli = (args: string[]) => runCliToEnd(args, env());

function start(path: string): CliProcess {
  const process = runCli(['run', '--config', path], env());
  running.push(process);
  return process;
}

async function stop(process: CliProcess): Promise<number | null> {
  process.child.kill('SIGTERM');
  const code = await process.exited;
  running = running.filter((p) => p !== process);
  return code;
}

async function control(process: CliProcess, path: string, body?: unknown): Promise<Response> {
  return fetch(await process.url(path), {
    method: body === undefined ? 'GET' : 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
}

const targetNames = async () => (await b.query<{ item_id: number; name: string }>(`SELECT item_id, name FROM items ORDER BY item_id`)).map((r) => `${r.item_id}:${r.name}`);
const sourceNames = async () => (await a.query<{ id: number; name: string }>(`SELECT "ItemID" AS id, "Name" AS name FROM "tblItems" ORDER BY 1`)).map((r) => `${r.id}:${r.name}`);
const openLetters = async () => b.query<{ table_name: string; retried_at: Date | null }>(`SELECT table_name, retried_at FROM cdc_sync.dead_letters ORDER BY id`);

beforeAll(async () => {
  a = await createTestDatabase('e2e_control_a');
  b = await createTestDatabase('e2e_control_b');
  await a.query(SCHEMA);
  await b.query(TARGET_SCHEMA);
  const init = await cli(['init-sql', '--config', config()]);
  expect(init.code).toBe(0);
  await a.query(init.stdout);
});

afterEach(async () => {
  for (const process of running) process.child.kill('SIGKILL');
  await Promise.all(running.map((p) => p.exited));
  running = [];
});

afterAll(async () => {
  await a.drop();
  await b.drop();
});

beforeEach(async () => {
  await a.query(`TRUNCATE "tblItems"`);
  await a.query(`TRUNCATE cdc_sync.changes`);
  await b.query(`TRUNCATE items`);
  await b.query(`DROP SCHEMA IF EXISTS cdc_sync CASCADE`);
  await b.query(`ALTER TABLE items DROP CONSTRAINT IF EXISTS no_poison`);
  await b.query(`ALTER TABLE items ADD CONSTRAINT no_poison CHECK (name <> 'poison')`);
});

describe('cdc-sync run --once', () => {
  it('drains a backlog, exits 0 and leaves the target equal to the source', async () => {
    await a.query(`INSERT INTO "tblItems" SELECT g, 'item ' || g FROM generate_series(1, 300) g`);
    await a.query(`UPDATE "tblItems" SET "Name" = 'edited' WHERE "ItemID" % 5 = 0`);
    await a.query(`DELETE FROM "tblItems" WHERE "ItemID" % 7 = 0`);
    const path = config();
    const first = await cli(['run', '--once', '--config', path]);
    expect(first.code, first.stderr).toBe(0);
    expect(await targetNames()).toEqual(await sourceNames());

    // A second drain with nothing pending stops too.
    await a.query(`UPDATE "tblItems" SET "Name" = 'late' WHERE "ItemID" = 1`);
    const second = await cli(['run', '--once', '--config', path]);
    expect(second.code, second.stderr).toBe(0);
    expect(await targetNames()).toEqual(await sourceNames());
    const third = await cli(['run', '--once', '--config', path]);
    expect(third.code, third.stderr).toBe(0);
  }, 60_000);
});

describe('dead letters and retry-failed', () => {
  it('dead-letters a poison row and applies it through POST /api/sync/retry-failed once the CHECK is gone', async () => {
    const path = config();
    const process = start(path);
    await a.query(`INSERT INTO "tblItems" VALUES (1, 'ok'), (2, 'poison'), (3, 'fine')`);
    await waitFor(async () => (await targetNames()).length === 2 && (await b.query(`SELECT 1 FROM cdc_sync.dead_letters`)).length === 1, 30_000, () => process.stderr());
    expect(await openLetters()).toEqual([{ table_name: 'public.tblItems', retried_at: null }]);

    // Still failing: left open.
    const early = await control(process, '/api/sync/retry-failed', { stream: 'a-to-b' });
    expect(early.status).toBe(200);
    expect(await early.json()).toMatchObject({ retried: 0, stillFailing: 1 });

    await b.query(`ALTER TABLE items DROP CONSTRAINT no_poison`);
    const response = await control(process, '/api/sync/retry-failed', { stream: 'a-to-b', table: 'public.tblItems' });
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ retried: 1, stillFailing: 0 });
    expect(await targetNames()).toEqual(['1:ok', '2:poison', '3:fine']);
    expect((await openLetters())[0]!.retried_at).toBeInstanceOf(Date);

    // Logs show the batch with the failure; status shows the checkpoint.
    const logs = (await (await control(process, '/api/sync/logs?limit=10')).json()) as { batches: { stream: string; tables: Record<string, { applied: number; failed: number }> }[] };
    expect(logs.batches.some((batch) => batch.stream === 'a-to-b' && batch.tables['public.tblItems']?.failed === 1)).toBe(true);
    const status = (await (await control(process, '/api/sync/status')).json()) as { streams: { name: string; position: string | null; failed: number; applied: number }[] };
    expect(status.streams[0]).toMatchObject({ name: 'a-to-b', failed: 1 });
    expect(status.streams[0]!.position).not.toBeNull();

    // The older scripts' endpoints: their counts, checkpoints and trigger directions.
    const stats = (await (await control(process, '/api/sync/stats')).json()) as { streams: { stream: string; failed: number; tables: Record<string, { applied: number; failed: number }> }[] };
    // Applied counts every change the sink committed (the initial copy's rows and their logged inserts alike).
    const applied = status.streams[0]!.applied;
    expect(applied).toBeGreaterThanOrEqual(2);
    expect(stats.streams[0]).toMatchObject({ stream: 'a-to-b', applied, failed: 1, tables: { 'public.tblItems': { applied, failed: 1 } } });
    const checkpoints = (await (await control(process, '/api/sync/checkpoints')).json()) as { checkpoints: { stream: string; position: string | null }[] };
    expect(checkpoints.checkpoints).toEqual([expect.objectContaining({ stream: 'a-to-b', position: status.streams[0]!.position })]);
    const pull = await fetch(await process.url('/api/sync/trigger?direction=pull'), { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
    expect(await pull.json()).toEqual({ ok: true, success: true, triggered: ['a-to-b'] });
    const push = await fetch(await process.url('/api/sync/trigger?direction=push'), { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
    expect(await push.json()).toMatchObject({ triggered: [] });
    expect(await stop(process)).toBe(0);
  }, 60_000);

  it('cdc-sync retry-failed applies and marks dead letters directly when no process runs', async () => {
    const path = config();
    await a.query(`INSERT INTO "tblItems" VALUES (1, 'ok'), (2, 'poison')`);
    expect((await cli(['run', '--once', '--config', path])).code).toBe(0);
    expect(await targetNames()).toEqual(['1:ok']);
    expect(await openLetters()).toHaveLength(1);

    await b.query(`ALTER TABLE items DROP CONSTRAINT no_poison`);
    const retried = await cli(['retry-failed', '--config', path, '--stream', 'a-to-b']);
    expect(retried.code, retried.stderr).toBe(0);
    expect(JSON.parse(retried.stdout)).toMatchObject({ via: 'direct', retried: 1, stillFailing: 0 });
    expect(await targetNames()).toEqual(['1:ok', '2:poison']);
    expect((await openLetters())[0]!.retried_at).toBeInstanceOf(Date);

    // Nothing open any more.
    const again = await cli(['retry-failed', '--config', path]);
    expect(JSON.parse(again.stdout)).toMatchObject({ retried: 0, stillFailing: 0 });
    const unknown = await cli(['retry-failed', '--config', path, '--stream', 'nope']);
    expect(unknown.code).toBe(2);
  }, 60_000);
});

describe('cdc-sync status and reset', () => {
  it('status reads the checkpoint without a process and asks the running one otherwise', async () => {
    const path = config();
    await a.query(`INSERT INTO "tblItems" VALUES (1, 'one')`);
    expect((await cli(['run', '--once', '--config', path])).code).toBe(0);
    const offline = await cli(['status', '--config', path, '--json']);
    expect(offline.code, offline.stderr).toBe(0);
    const stored = JSON.parse(offline.stdout) as { running: boolean; streams: { name: string; state: string; position: string | null }[] };
    expect(stored.running).toBe(false);
    expect(stored.streams[0]).toMatchObject({ name: 'a-to-b', state: 'stopped' });
    expect(stored.streams[0]!.position).not.toBeNull();
    const table = await cli(['status', '--config', path]);
    expect(table.stdout).toMatch(/^name\s+direction/m);
    expect(table.stdout).toContain('a-to-b');

    const process = start(path);
    const url = (await process.url('')).replace(/\/$/, '');
    await waitFor(async () => ((await (await control(process, '/api/sync/status')).json()) as { streams: { state: string }[] }).streams[0]!.state === 'running', 20_000);
    const live = await cli(['status', '--config', path, '--url', url, '--json']);
    expect(live.code, live.stderr).toBe(0);
    const answer = JSON.parse(live.stdout) as { running: boolean; streams: { name: string; state: string; connected: boolean; position: string }[] };
    expect(answer.running).toBe(true);
    expect(answer.streams[0]).toMatchObject({ name: 'a-to-b', state: 'running', connected: true, position: stored.streams[0]!.position });
    const wrongToken = await cli(['status', '--config', path, '--url', url, '--token', 'wrong']);
    expect(wrongToken.code).toBe(1);
    expect(wrongToken.stderr).toContain('403');
    expect(await stop(process)).toBe(0);
  }, 60_000);

  it('status and retry-failed work against the databases when the running process has no http.token, and status counts the open dead letters of the store', async () => {
    const path = config();
    const noToken = writeConfig(readFileSync(path, 'utf8').replace(`, token: ${TOKEN}`, ''));
    await a.query(`INSERT INTO "tblItems" VALUES (1, 'ok'), (2, 'poison'), (3, 'poison')`);
    expect((await cli(['run', '--once', '--config', noToken])).code).toBe(0);
    const process = start(noToken);
    const url = (await process.url('')).replace(/\/$/, '');
    const status = await cli(['status', '--config', noToken, '--url', url, '--json']);
    expect(status.code, status.stderr).toBe(0);
    const shown = JSON.parse(status.stdout) as { running: boolean; streams: { name: string; deadLetters: number; position: string | null }[] };
    expect(shown.streams[0]).toMatchObject({ name: 'a-to-b', deadLetters: 2 });
    expect(shown.streams[0]!.position).not.toBeNull();
    const table = await cli(['status', '--config', noToken, '--url', url]);
    expect(table.stdout).toMatch(/without http\.token/);
    expect(table.stdout).toMatch(/^name\s+.*deadLetters/m);

    await b.query(`ALTER TABLE items DROP CONSTRAINT no_poison`);
    const retried = await cli(['retry-failed', '--config', noToken, '--url', url]);
    expect(retried.code, retried.stderr).toBe(0);
    expect(JSON.parse(retried.stdout)).toMatchObject({ via: 'direct', retried: 2, stillFailing: 0 });
    expect(await targetNames()).toEqual(['1:ok', '2:poison', '3:poison']);
    const after = JSON.parse((await cli(['status', '--config', noToken, '--url', url, '--json'])).stdout) as { streams: { deadLetters: number }[] };
    expect(after.streams[0]!.deadLetters).toBe(0);
    expect(await stop(process)).toBe(0);
  }, 60_000);

  it('reset refuses while a process runs and, when stopped, makes the next run read the change table again', async () => {
    const path = config();
    await a.query(`INSERT INTO "tblItems" VALUES (1, 'one'), (2, 'two')`);
    expect((await cli(['run', '--once', '--config', path])).code).toBe(0);

    const process = start(path);
    const url = (await process.url('')).replace(/\/$/, '');
    const refused = await cli(['reset', '--config', path, '--stream', 'a-to-b', '--url', url]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('running');
    expect(await stop(process)).toBe(0);
    expect(await b.query(`SELECT 1 FROM cdc_sync.checkpoints WHERE stream = 'a-to-b'`)).toHaveLength(1);

    // Target lost rows behind the stream's back: a reset brings them back.
    await b.query(`DELETE FROM items`);
    const reset = await cli(['reset', '--config', path, '--stream', 'a-to-b', '--url', url]);
    expect(reset.code, reset.stderr).toBe(0);
    expect(reset.stdout).toContain('reads the whole change table');
    expect(await b.query(`SELECT 1 FROM cdc_sync.checkpoints WHERE stream = 'a-to-b'`)).toHaveLength(0);
    expect((await cli(['run', '--once', '--config', path])).code).toBe(0);
    expect(await targetNames()).toEqual(['1:one', '2:two']);
  }, 60_000);
});
