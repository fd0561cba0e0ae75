import { readFileSync, writeFileSync } from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startPostgrest, type PostgrestStandIn } from '../support/postgrest/server.js';
import { publishTables, startRealtimeServer, type RealtimeServer } from '../support/realtime/index.js';
import { createTestDatabase, type TestDatabase } from '../support/test-database.js';
import { metricValue, runCli, runCliToEnd, waitFor, CliProcesses, type CliProcess } from '../support/cli.js';
import { reverseConfig } from '../support/supabase-config.js';

/**
 * The reverse direction, Supabase → clinic, through the real CLI: the
 * supabase-realtime source with the real supabase-js/realtime-js clients
 * against the PostgREST and Realtime stand-ins over a real PostgreSQL. Each
 * test names a way Realtime loses changes; the catch-up reads must recover
 * every one, and the clinic table must end equal to the portal's.
 */
const SECRET = 'webhook-secret-for-the-tests';
let cloud: TestDatabase;
let clinic: TestDatabase;
let rest: PostgrestStandIn;
let realtime: RealtimeServer;
let configPath: string;
const processes = new CliProcesses();

beforeAll(async () => {
  cloud = await createTestDatabase('cloud');
  clinic = await createTestDatabase('clinic');
  await cloud.query(`CREATE TABLE aligner_notes (id bigint PRIMARY KEY, note text NOT NULL, updated_at timestamptz)`);
  await clinic.query(`CREATE TABLE notes (id bigint PRIMARY KEY, note text NOT NULL, updated_at timestamptz)`);
  rest = await startPostgrest({ databaseUrl: cloud.url });
  realtime = await startRealtimeServer({ databaseUrl: cloud.url, forwardHttpTo: rest.url });
  configPath = reverseConfig({
    url: realtime.url,
    key: rest.key,
    sinkUrl: clinic.url,
    tables: [['public.aligner_notes', 'public.notes']],
    source: 'tombstones: true, catchUp: { intervalMinutes: 0.05, maxRecords: 20, marginSeconds: 0 }',
    stream: ['batch: { maxSize: 100, maxWaitMs: 20 }', 'retry: { attempts: 3, minDelayMs: 50, maxDelayMs: 500 }'],
    webhookSecret: SECRET,
  });
  const init = await runCliToEnd(['init-sql', '--config', configPath]);
  expect(init.code).toBe(0);
  await cloud.query(init.stdout);
  await publishTables(cloud.url, ['public.aligner_notes'], { replicaIdentityFull: true });
  await rest.reloadSchema();
});

afterEach(async () => {
  await processes.killAll();
});

afterAll(async () => {
  await realtime?.close();
  await rest?.close();
  await cloud.drop();
  await clinic.drop();
});

function start(): CliProcess {
  const cli = runCli(['run', '--config', configPath]);
  return processes.add(cli);
}

async function stop(cli: CliProcess): Promise<number | null> {
  return processes.stop(cli, 'SIGTERM');
}

interface Note {
  id: number;
  note: string;
  updated_at: Date | null;
}
const portal = () => cloud.query<Note>(`SELECT id::int, note, updated_at FROM aligner_notes ORDER BY id`);
const local = () => clinic.query<Note>(`SELECT id::int, note, updated_at FROM notes ORDER BY id`);
let lastDifference = '';
async function inSync(): Promise<boolean> {
  const [a, b] = [await portal(), await local()];
  // Said when the wait fails: which rows differ, not only that they do.
  const clinicRows = new Map(b.map((r) => [r.id, JSON.stringify(r)]));
  const differing = a.filter((r) => clinicRows.get(r.id) !== JSON.stringify(r)).map((r) => `portal ${JSON.stringify(r)} clinic ${clinicRows.get(r.id) ?? 'missing'}`);
  const extra = b.filter((r) => !a.some((x) => x.id === r.id)).map((r) => `clinic only ${JSON.stringify(r)}`);
  lastDifference = [...differing, ...extra].slice(0, 10).join('\n');
  return JSON.stringify(a) === JSON.stringify(b);
}

describe('supabase-realtime → postgres through the CLI', () => {
  it('applies live inserts, updates and deletes from Realtime', async () => {
    const cli = start();
    await waitFor(async () => metricValue(await cli.metrics(), 'cdc_sync_connected', { stream: 'cloud-to-clinic' }) === 1, 30_000, () => cli.stderr());
    await cloud.query(`INSERT INTO aligner_notes (id, note) SELECT g, 'note ' || g FROM generate_series(1, 30) g`);
    await cloud.query(`UPDATE aligner_notes SET note = 'edited by the doctor' WHERE id <= 5`);
    await cloud.query(`DELETE FROM aligner_notes WHERE id = 30`);
    await waitFor(inSync, 30_000, () => `${lastDifference}\n${cli.stderr()}`);
    expect(await stop(cli)).toBe(0);
  });

  it('recovers changes lost while the connection was down', async () => {
    const cli = start();
    await waitFor(async () => metricValue(await cli.metrics(), 'cdc_sync_connected', { stream: 'cloud-to-clinic' }) === 1, 30_000, () => cli.stderr());
    realtime.pause();
    realtime.dropConnections();
    await cloud.query(`UPDATE aligner_notes SET note = 'changed during the drop' WHERE id BETWEEN 6 AND 10`);
    await cloud.query(`DELETE FROM aligner_notes WHERE id = 29`);
    await cloud.query(`INSERT INTO aligner_notes (id, note) VALUES (100, 'new during the drop')`);
    realtime.resume();
    await waitFor(inSync, 30_000, () => `${lastDifference}\n${cli.stderr()}`);
    const text = await cli.metrics();
    expect(metricValue(text, 'cdc_sync_catchup_runs_total', { stream: 'cloud-to-clinic' })).toBeGreaterThanOrEqual(2);
    expect(await stop(cli)).toBe(0);
  });

  it('recovers events Realtime dropped (rate limit) through the periodic catch-up', async () => {
    const cli = start();
    await waitFor(async () => metricValue(await cli.metrics(), 'cdc_sync_connected', { stream: 'cloud-to-clinic' }) === 1, 30_000, () => cli.stderr());
    realtime.dropNextEvents(1_000);
    await cloud.query(`UPDATE aligner_notes SET note = 'dropped by realtime' WHERE id BETWEEN 11 AND 15`);
    await waitFor(inSync, 30_000, () => `${lastDifference}\n${cli.stderr()}`);
    const text = await cli.metrics();
    expect(metricValue(text, 'cdc_sync_catchup_rows_total', { table: 'public.aligner_notes' })).toBeGreaterThanOrEqual(5);
    realtime.dropNextEvents(0);
    expect(await stop(cli)).toBe(0);
  });

  it('recovers changes made before "Subscribed to PostgreSQL" and while the process was stopped', async () => {
    await cloud.query(`UPDATE aligner_notes SET note = 'while stopped' WHERE id BETWEEN 16 AND 20`);
    await cloud.query(`DELETE FROM aligner_notes WHERE id = 28`);
    realtime.delaySystemMessage(1500);
    const cli = start();
    await new Promise((r) => setTimeout(r, 300));
    await cloud.query(`UPDATE aligner_notes SET note = 'before subscribed' WHERE id = 21`);
    await waitFor(inSync, 30_000, () => `${lastDifference}\n${cli.stderr()}`);
    realtime.delaySystemMessage(0);
    expect(await stop(cli)).toBe(0);
  });

  it('takes Database Webhook payloads into the same stream, with the secret', async () => {
    const cli = start();
    await waitFor(async () => metricValue(await cli.metrics(), 'cdc_sync_connected', { stream: 'cloud-to-clinic' }) === 1, 30_000, () => cli.stderr());
    realtime.pause();
    const record = { id: 500, note: 'from the webhook', updated_at: '2030-01-01T00:00:00+00:00' };
    // The row exists only in the payload: it can reach the clinic through the webhook alone.
    const post = async (secret?: string) =>
      fetch(await cli.url('/api/sync/webhook'), {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(secret ? { 'x-webhook-secret': secret } : {}) },
        body: JSON.stringify({ type: 'INSERT', table: 'aligner_notes', schema: 'public', record, old_record: null }),
      });
    expect((await post()).status).toBe(401);
    expect((await post('wrong-secret-wrong-secret-wrong')).status).toBe(403);
    expect((await post(SECRET)).status).toBe(202);
    await waitFor(async () => (await clinic.query(`SELECT note FROM notes WHERE id = 500`)).length === 1, 30_000, () => cli.stderr());
    realtime.resume();
    expect(await stop(cli)).toBe(0);
  });

  it('copies again, through `cdc-sync snapshot --where`, only the rows PostgREST filters hold for; refuses a SQL condition', async () => {
    // The control API needs a token.
    const live = configPath.replace(/\.ya?ml$/, '-token.yaml');
    writeFileSync(live, readFileSync(configPath, 'utf8').replace('http: { port: 0, host: 127.0.0.1', 'http: { port: 0, host: 127.0.0.1, token: snapshot-token'));
    const cli = processes.add(runCli(['run', '--config', live]));
    // Rows 1–7 in sync (the webhook test left a row of its own on the clinic side).
    const first = async () => JSON.stringify((await portal()).filter((r) => r.id <= 7)) === JSON.stringify((await local()).filter((r) => r.id <= 7));
    await waitFor(first, 30_000, cli.stderr);
    // A start reads again, now and once more a second after the margin (0 here), what changed since the last catch-up:
    // drift made before that second read would be put right by it, not by the copy.
    await new Promise((r) => setTimeout(r, 2500));
    // Drift on the clinic side, as a manual edit makes it: the copy puts right only the rows it is asked for.
    await clinic.query(`UPDATE notes SET note = 'drift' WHERE id <= 6`);
    const url = (await cli.url('')).replace(/\/$/, '');
    const sql = await runCliToEnd(['snapshot', '--config', live, '--stream', 'cloud-to-clinic', '--table', 'public.aligner_notes', '--where', 'id <= 3', '--url', url]);
    expect(sql.code).not.toBe(0);
    expect(sql.stderr, sql.stderr).toContain('PostgREST');
    const asked = await runCliToEnd(['snapshot', '--config', live, '--stream', 'cloud-to-clinic', '--table', 'public.aligner_notes', '--where', 'id.lte.3', '--wait', '--url', url]);
    expect(asked.code, asked.stderr).toBe(0);
    await waitFor(async () => (await clinic.query(`SELECT 1 FROM notes WHERE id <= 3 AND note = 'drift'`)).length === 0, 30_000, cli.stderr);
    expect((await clinic.query<{ id: number }>(`SELECT id::int FROM notes WHERE note = 'drift' ORDER BY id`)).map((r) => r.id)).toEqual([4, 5, 6]);
    // Live changes go on after the copy.
    await cloud.query(`UPDATE aligner_notes SET note = 'after the copy' WHERE id = 7`);
    await waitFor(async () => (await clinic.query(`SELECT 1 FROM notes WHERE id = 7 AND note = 'after the copy'`)).length === 1, 30_000, cli.stderr);
    // The drift left on purpose is put back, so that later tests start in sync.
    for (const row of (await portal()).filter((r) => r.id >= 4 && r.id <= 6)) await clinic.query(`UPDATE notes SET note = $1 WHERE id = $2`, [row.note, row.id]);
    expect(await stop(cli)).toBe(0);
  });
});
