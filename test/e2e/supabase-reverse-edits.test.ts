import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startPostgrest, type PostgrestStandIn } from '../support/postgrest/server.js';
import { publishTables, startRealtimeServer, type RealtimeServer } from '../support/realtime/index.js';
import { createTestDatabase, type TestDatabase } from '../support/test-database.js';
import { metricValue, runCli, runCliToEnd, waitFor, CliProcesses, type CliProcess } from '../support/cli.js';
import { reverseConfig } from '../support/supabase-config.js';

/**
 * Edits made in the portal that the reverse stream must never lose,
 * resurrect or corrupt, with the README's catch-up defaults (30 s margin,
 * 60 min interval): a record Realtime cut down for size, an edit whose
 * updated_at is behind a forward write's (two clocks), a late webhook after
 * a delete, a short Realtime outage, and numbers JSON.parse would change.
 */
const SECRET = 'webhook-secret-for-the-edit-tests';
let cloud: TestDatabase;
let clinic: TestDatabase;
let rest: PostgrestStandIn;
let realtime: RealtimeServer;
let configPath: string;
const processes = new CliProcesses();

beforeAll(async () => {
  cloud = await createTestDatabase('cloud');
  clinic = await createTestDatabase('clinic');
  const columns = `id bigint PRIMARY KEY, note text NOT NULL, amount numeric(30,10), scan bytea, updated_at timestamptz NOT NULL DEFAULT now()`;
  await cloud.query(`CREATE TABLE visits (${columns})`);
  await clinic.query(`CREATE TABLE visits (${columns})`);
  rest = await startPostgrest({ databaseUrl: cloud.url });
  // Supabase's default poll_max_record_bytes: 1 MiB, the old image included (REPLICA IDENTITY FULL).
  realtime = await startRealtimeServer({ databaseUrl: cloud.url, forwardHttpTo: rest.url });
  configPath = reverseConfig({ url: realtime.url, key: rest.key, sinkUrl: clinic.url, tables: [['public.visits', 'public.visits']], webhookSecret: SECRET });
  const init = await runCliToEnd(['init-sql', '--config', configPath]);
  expect(init.code).toBe(0);
  await cloud.query(init.stdout);
  await publishTables(cloud.url, ['public.visits'], { replicaIdentityFull: true });
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

async function started(): Promise<CliProcess> {
  const cli = processes.add(runCli(['run', '--config', configPath]));
  await waitFor(async () => metricValue(await cli.metrics(), 'cdc_sync_connected', { stream: 'cloud-to-clinic' }) === 1, 30_000, () => cli.stderr());
  // Listening: the server holds the subscription (it sent "Subscribed to PostgreSQL"), and the stream has begun its
  // catch-up reads. Changes made before would only come with the catch-up after the margin. (Not "two catch-ups
  // ran": a subscription confirmed before the stream's first read is caught up by that read alone.)
  await waitFor(
    async () => realtime.stats().activeSubscriptions > 0 && (metricValue(await cli.metrics(), 'cdc_sync_catchup_runs_total', { stream: 'cloud-to-clinic' }) ?? 0) >= 1,
    30_000,
    () => cli.stderr(),
  );
  return cli;
}

const clinicRow = async (id: string) => (await clinic.query<{ note: string; amount: string | null }>(`SELECT note, amount::text AS amount FROM visits WHERE id = $1`, [id]))[0];

describe('supabase-realtime: portal edits with the default catch-up settings', () => {
  it('brings a 600 kB note whole when it is updated, though Realtime cut the record down (Error 413: with the old image over 1 MiB)', async () => {
    const cli = await started();
    await cloud.query(`INSERT INTO visits (id, note) VALUES (1, $1)`, ['o'.repeat(600_000)]);
    await waitFor(async () => (await clinicRow('1'))?.note.length === 600_000, 15_000, () => cli.stderr());
    const long = 'n'.repeat(600_000);
    await cloud.query(`UPDATE visits SET note = $1 WHERE id = 1`, [long]);
    await waitFor(async () => (await clinicRow('1'))?.note.startsWith('n') === true, 15_000, () => cli.stderr());
    expect((await clinicRow('1'))!.note).toBe(long);
  }, 60_000);

  it("applies a doctor's edit made 2 s after a forward write stamped by a clinic clock 20 s ahead", async () => {
    const cli = await started();
    // What the forward stream writes: the clinic's updated_at, 20 s ahead of Supabase's clock (its writes keep it: cdc_sync.origin).
    await cloud.query(`BEGIN; SET LOCAL cdc_sync.origin = 'clinic-to-cloud';
      INSERT INTO visits (id, note, updated_at) VALUES (2, 'from the clinic', now() + interval '20 seconds'); COMMIT`);
    await waitFor(async () => (await clinicRow('2'))?.note === 'from the clinic', 15_000, () => cli.stderr());
    await new Promise((r) => setTimeout(r, 2000));
    await cloud.query(`UPDATE visits SET note = 'edited by the doctor' WHERE id = 2`); // the portal's trigger stamps Supabase's now()
    await waitFor(async () => (await clinicRow('2'))?.note === 'edited by the doctor', 15_000, () => cli.stderr());
  }, 60_000);

  it('moves a row whose key the portal changed: the clinic has the new key and not the old one', async () => {
    const cli = await started();
    await cloud.query(`INSERT INTO visits (id, note) VALUES (10, 'moving')`);
    await waitFor(async () => (await clinicRow('10'))?.note === 'moving', 15_000, () => cli.stderr());
    await cloud.query(`UPDATE visits SET id = 11 WHERE id = 10`);
    await waitFor(async () => (await clinicRow('11'))?.note === 'moving' && (await clinicRow('10')) === undefined, 15_000, () => cli.stderr());
  }, 60_000);

  it('keeps a row deleted in the portal deleted when a late webhook brings its older image', async () => {
    const cli = await started();
    await cloud.query(`INSERT INTO visits (id, note) VALUES (3, 'soon gone')`);
    await waitFor(async () => (await clinicRow('3'))?.note === 'soon gone', 15_000, () => cli.stderr());
    const [image] = await cloud.query<Record<string, unknown>>(`SELECT id, note, amount, updated_at FROM visits WHERE id = 3`);
    await cloud.query(`DELETE FROM visits WHERE id = 3`);
    await waitFor(async () => (await clinicRow('3')) === undefined, 15_000, () => cli.stderr());
    // pg_net sends Database Webhooks concurrently, without order: the insert's arrives last.
    const response = await fetch(await cli.url('/api/sync/webhook'), {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-webhook-secret': SECRET },
      body: JSON.stringify({ type: 'INSERT', table: 'visits', schema: 'public', record: image, old_record: null }),
    });
    expect(response.status).toBe(202);
    await new Promise((r) => setTimeout(r, 3000));
    expect(await clinicRow('3')).toBeUndefined();
    expect(metricValue(await cli.metrics(), 'cdc_sync_events_suppressed_total', { table: 'public.visits', reason: 'stale' })).toBe(1);
  }, 60_000);

  it('has the edits of a 2 s Realtime outage within the margin and a few seconds', async () => {
    const cli = await started();
    await cloud.query(`INSERT INTO visits (id, note) VALUES (4, 'before'), (5, 'before')`);
    await waitFor(async () => (await clinicRow('5'))?.note === 'before', 15_000, () => cli.stderr());
    realtime.pause();
    realtime.dropConnections();
    const lost = Date.now();
    await cloud.query(`UPDATE visits SET note = 'during the outage' WHERE id IN (4, 5)`);
    await new Promise((r) => setTimeout(r, 2000));
    realtime.resume();
    await waitFor(async () => (await clinicRow('4'))?.note === 'during the outage' && (await clinicRow('5'))?.note === 'during the outage', 45_000, () => cli.stderr());
    expect(Date.now() - lost).toBeLessThan(30_000 + 10_000);
  }, 90_000);

  it('brings bytea values exact and writes them once, though Realtime sends them as hex without \\x (wal2json)', async () => {
    const cli = await started();
    await cloud.query(`INSERT INTO visits (id, note, scan) VALUES (30, 'a', '\\x00'), (31, 'b', '\\x41ff'), (32, 'c', '\\x'), (33, 'd', NULL)`);
    const scans = () => clinic.query<{ id: number; scan: string | null; xmin: string }>(`SELECT id::int, encode(scan, 'hex') AS scan, xmin::text FROM visits WHERE id BETWEEN 30 AND 33 ORDER BY id`);
    await waitFor(async () => (await scans()).length === 4, 10_000, () => cli.stderr());
    const first = await scans();
    expect(first.map(({ id, scan }) => ({ id, scan }))).toEqual([
      { id: 30, scan: '00' },
      { id: 31, scan: '41ff' },
      { id: 32, scan: '' },
      { id: 33, scan: null },
    ]);
    // The catch-up after the margin reads the same images: nothing is written again.
    await waitFor(async () => (metricValue(await cli.metrics(), 'cdc_sync_catchup_runs_total', { stream: 'cloud-to-clinic' }) ?? 0) >= 3, 40_000, () => cli.stderr());
    expect(await scans()).toEqual(first);
  }, 60_000);

  it('keeps an int8 key above 2^53 and a numeric(30,10) exact, live and in catch-up reads', async () => {
    const cli = await started();
    await cloud.query(`INSERT INTO visits (id, note, amount) VALUES (9007199254740993, 'big key', 12345678901234567890.1234567890)`);
    await waitFor(async () => (await clinicRow('9007199254740993'))?.note === 'big key', 15_000, () => cli.stderr());
    expect(await clinicRow('9007199254740993')).toEqual({ note: 'big key', amount: '12345678901234567890.1234567890' });
    expect(await clinic.query(`SELECT id::text FROM visits WHERE id BETWEEN 9007199254740990 AND 9007199254740999`)).toEqual([{ id: '9007199254740993' }]);
    await processes.killAll();
    // Changed while the process is down: only a catch-up read (REST) brings it.
    await cloud.query(`UPDATE visits SET amount = 98765432109876543210.0987654321 WHERE id = 9007199254740993`);
    const again = await started();
    // The catch-up at start leaves out the last 30 s (the margin); the one after the margin reads it.
    await waitFor(async () => (await clinicRow('9007199254740993'))?.amount === '98765432109876543210.0987654321', 45_000, () => again.stderr());
  }, 90_000);
});

describe('supabase-realtime: catch-up pages cut by PostgREST', () => {
  it('reads every changed row when maxRecords is above the API\'s max-rows (1,000 on Supabase)', async () => {
    for (const db of [cloud, clinic]) await db.query(`CREATE TABLE bulk (id bigint PRIMARY KEY, note text NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())`);
    const config = reverseConfig({
      name: 'bulk-to-clinic',
      url: realtime.url,
      key: rest.key,
      sinkUrl: clinic.url,
      tables: [['public.bulk', 'public.bulk']],
      source: 'catchUp: { maxRecords: 1500, marginSeconds: 0 }',
    });
    await cloud.query((await runCliToEnd(['init-sql', '--config', config, '--target', 'supabase'])).stdout);
    await rest.reloadSchema();
    // Written while no process runs: only the catch-up read at start brings them.
    await cloud.query(`INSERT INTO bulk (id, note) SELECT g, 'row ' || g FROM generate_series(1, 3500) g`);
    const cli = processes.add(runCli(['run', '--config', config]));
    await waitFor(async () => Number((await clinic.query<{ n: string }>(`SELECT count(*) AS n FROM bulk`))[0]!.n) === 3500, 20_000, () => cli.stderr());
  }, 60_000);
});

describe('supabase-realtime: a table the service_role may not read', () => {
  it('exits 2 at start with the GRANT to run, instead of retrying "Supabase did not answer"', async () => {
    // A table made after the project's set-up: the stand-in, like Supabase, grants it to no API role.
    await cloud.query(`CREATE TABLE hidden (id bigint PRIMARY KEY, note text, updated_at timestamptz)`);
    await rest.reloadSchema();
    const config = reverseConfig({ name: 'hidden-to-clinic', url: rest.url, key: rest.key, sinkUrl: clinic.url, tables: [['public.hidden', 'public.visits']] });
    const run = await runCliToEnd(['run', '--config', config]);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/tables\[0\]\.source: public\.hidden: permission denied for table hidden; run GRANT SELECT ON public\.hidden TO service_role/);
  }, 60_000);
});

describe('supabase-realtime: channels the server stops serving', () => {
  const configFor = (url: string, tables: string[], source?: string) =>
    reverseConfig({ url, key: rest.key, sinkUrl: clinic.url, tables: tables.map((t) => [`public.${t}`, `public.${t}`]), ...(source ? { source } : {}) });
  const connected = async (cli: CliProcess) => metricValue(await cli.metrics(), 'cdc_sync_connected', { stream: 'cloud-to-clinic' });
  const runs = async (cli: CliProcess) => metricValue(await cli.metrics(), 'cdc_sync_catchup_runs_total', { stream: 'cloud-to-clinic' }) ?? 0;
  /**
   * Subscribed again: connected, a catch-up has begun, and the server holds the subscription (the
   * client says SUBSCRIBED at the join reply, before the server is listening; changes made between
   * are lost, as on Supabase, and come only with the catch-up after the margin).
   */
  const listening = async (cli: CliProcess, runsBefore: number, server = realtime) =>
    (await connected(cli)) === 1 && (await runs(cli)) > runsBefore && server.stats().activeSubscriptions > 0;

  it('reports a table left out of the publication and a channel the server closed as down, says why, and subscribes again', async () => {
    for (const db of [cloud, clinic]) await db.query(`CREATE TABLE unpublished (id bigint PRIMARY KEY, note text NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())`);
    const config = configFor(realtime.url, ['visits', 'unpublished']);
    const init = await runCliToEnd(['init-sql', '--config', config, '--target', 'supabase']);
    await cloud.query(init.stdout);
    await cloud.query(`ALTER PUBLICATION supabase_realtime DROP TABLE unpublished`);
    await rest.reloadSchema();
    const cli = processes.add(runCli(['run', '--config', config]));
    await waitFor(async () => /Unable to subscribe to changes with given parameters/.test(cli.stderr()), 30_000, () => cli.stderr());
    expect(await connected(cli)).toBe(0);
    expect((await fetch(await cli.url('/readyz'))).status).toBe(503);

    let before = await runs(cli);
    await cloud.query(`ALTER PUBLICATION supabase_realtime ADD TABLE unpublished`);
    await waitFor(() => listening(cli, before), 30_000, () => cli.stderr());
    await cloud.query(`INSERT INTO unpublished (id, note) VALUES (1, 'live after the fix')`);
    await waitFor(async () => (await clinic.query(`SELECT 1 FROM unpublished WHERE id = 1`)).length === 1, 10_000, () => cli.stderr());

    before = await runs(cli);
    expect(realtime.closeChannels('shutting down the channel')).toBeGreaterThan(0);
    await waitFor(async () => /the server closed the channel|shutting down the channel/.test(cli.stderr()), 10_000, () => cli.stderr());
    await waitFor(() => listening(cli, before), 30_000, () => cli.stderr());
    await cloud.query(`INSERT INTO unpublished (id, note) VALUES (2, 'live after the close')`);
    await waitFor(async () => (await clinic.query(`SELECT 1 FROM unpublished WHERE id = 2`)).length === 1, 10_000, () => cli.stderr());
  }, 120_000);

  it('on a project that allows private channels only: says to set private: true, and with it streams live', async () => {
    const privateOnly = await startRealtimeServer({ databaseUrl: cloud.url, forwardHttpTo: rest.url, privateOnly: true });
    try {
      const refused = processes.add(runCli(['run', '--config', configFor(privateOnly.url, ['visits'])]));
      await waitFor(async () => /only allows private channels.*set source\.private: true|set source\.private: true/.test(refused.stderr()), 30_000, () => refused.stderr());
      expect(await connected(refused)).toBe(0);
      await processes.killAll();

      const cli = processes.add(runCli(['run', '--config', configFor(privateOnly.url, ['visits'], 'private: true')]));
      // A fresh process: one catch-up run suffices (the subscription may be confirmed before the stream's first read).
      await waitFor(() => listening(cli, 0, privateOnly), 30_000, () => cli.stderr());
      await cloud.query(`INSERT INTO visits (id, note) VALUES (70, 'private channel')`);
      await waitFor(async () => (await clinicRow('70'))?.note === 'private channel', 15_000, () => cli.stderr());
    } finally {
      await privateOnly.close();
    }
  }, 120_000);
});

