import { resolve } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FakeCdc } from '../support/fake-mssql/fake-cdc.js';
import { FakeSqlServer } from '../support/fake-mssql/fake-server.js';
import { createTestDatabase, type TestDatabase } from '../support/test-database.js';
import { metricValue, runCli, runCliToEnd, waitFor, writeConfig, CliProcesses, type CliProcess } from '../support/cli.js';

/**
 * SQL Server CDC → PostgreSQL through the real CLI and a config file. SQL
 * Server itself cannot run here: the CLI's driver is the boundary stand-in
 * (CDC_SYNC_MSSQL_DRIVER), answering over HTTP from this test's FakeCdc
 * with rows shaped as the mssql driver returns them.
 */
const DRIVER = resolve('dist/test/support/fake-mssql/driver.js');
let server: FakeSqlServer;
let cdc: FakeCdc;
let url: string;
let pg: TestDatabase;
const processes = new CliProcesses();
let configPath: string;

beforeAll(async () => {
  server = new FakeSqlServer();
  cdc = new FakeCdc(server);
  cdc.createTable('dbo', 'tblPatients', [
    { name: 'PersonID', type: 'int' },
    { name: 'PatientName', type: 'nvarchar' },
    { name: 'Balance', type: 'decimal' },
    { name: 'UpdatedAt', type: 'datetime2' },
  ], ['PersonID']);
  cdc.createTable('dbo', 'tblWork', [{ name: 'WorkID', type: 'int' }, { name: 'PersonID', type: 'int' }, { name: 'Kind', type: 'nvarchar' }], ['WorkID']);
  cdc.enableTable('dbo', 'tblPatients');
  cdc.enableTable('dbo', 'tblWork');
  url = await server.listen();
  pg = await createTestDatabase('mssql_cdc');
  await pg.query(`
    CREATE TABLE patients (person_id int PRIMARY KEY, patient_name text, balance numeric(38,10), updated_at timestamp(6));
    CREATE TABLE work (work_id int PRIMARY KEY, person_id int REFERENCES patients, kind text);`);
  configPath = writeConfig(`
streams:
  - name: clinic-to-cloud
    source: { type: mssql-cdc, url: "${url}", idleIntervalMs: 50, heartbeatMs: 200 }
    sink: { type: postgres, url: "${pg.url}" }
    tables:
      - { source: dbo.tblPatients, target: public.patients }
      - { source: dbo.tblWork, target: public.work }
    batch: { maxSize: 100, maxWaitMs: 20 }
    retry: { attempts: 3, minDelayMs: 20, maxDelayMs: 200 }
http: { port: 0, host: 127.0.0.1 }
`);
});

afterEach(async () => {
  await processes.killAll();
});

afterAll(async () => {
  await server.close();
  await pg.drop();
});

function start(): CliProcess {
  const cli = runCli(['run', '--config', configPath], { CDC_SYNC_MSSQL_DRIVER: DRIVER });
  return processes.add(cli);
}

async function stop(cli: CliProcess): Promise<number | null> {
  return processes.stop(cli, 'SIGTERM');
}

const patients = () => pg.query<Record<string, unknown>>('SELECT person_id, patient_name, balance::text, updated_at::text FROM patients ORDER BY 1');

describe('mssql-cdc → postgres through the CLI', () => {
  it('copies the tables, streams inserts, updates and deletes, survives a restart, and recovers a table after a cleanup gap', async () => {
    for (let i = 1; i <= 250; i += 1) {
      cdc.commit([{ table: 'dbo.tblPatients', op: 'insert', row: { PersonID: i, PatientName: `p${i}`, Balance: '1.5', UpdatedAt: '2024-01-02T03:04:05.123456' } }]);
    }
    const cli = start();
    await waitFor(async () => (await patients()).length === 250, 30_000, () => cli.stderr());

    cdc.commit([
      { table: 'dbo.tblPatients', op: 'update', row: { PersonID: 1, PatientName: 'first', Balance: '12345678901234567890.0123456789' } },
      { table: 'dbo.tblWork', op: 'insert', row: { WorkID: 10, PersonID: 1, Kind: 'aligner' } },
      { table: 'dbo.tblPatients', op: 'delete', key: { PersonID: 2 } },
    ]);
    await waitFor(async () => (await pg.query('SELECT 1 FROM work')).length === 1 && (await patients()).length === 249, 30_000, () => cli.stderr());
    expect((await patients())[0]).toEqual({ person_id: 1, patient_name: 'first', balance: '12345678901234567890.0123456789', updated_at: '2024-01-02 03:04:05.123456' });
    const text = await cli.metrics();
    expect(metricValue(text, 'cdc_sync_events_applied_total', { table: 'dbo.tblPatients', op: 'insert' })).toBe(250);
    expect(metricValue(text, 'cdc_sync_connected', { stream: 'clinic-to-cloud' })).toBe(1);
    expect(await stop(cli)).toBe(0);

    // While stopped: a change, then the cleanup job removes changes of tblPatients the checkpoint still needs.
    cdc.commit([{ table: 'dbo.tblPatients', op: 'update', row: { PersonID: 3, PatientName: 'lost while down' } }]);
    const last = cdc.commit([{ table: 'dbo.tblWork', op: 'insert', row: { WorkID: 11, PersonID: 3, Kind: 'retainer' } }]);
    cdc.cleanup(last, 'dbo_tblPatients');
    const again = start();
    await waitFor(async () => (await pg.query('SELECT 1 FROM work')).length === 2, 30_000, () => again.stderr());
    await waitFor(async () => metricValue(await (await fetch(await again.url('/metrics'))).text(), 'cdc_sync_source_gap', { table: 'dbo.tblPatients' }) === 1);
    const status = await fetch(await again.url('/readyz'));
    expect(JSON.stringify(await status.json())).toContain('cdc-sync snapshot --stream clinic-to-cloud --table dbo.tblPatients');
    expect((await patients()).find((p) => p.person_id === 3)!.patient_name).toBe('p3'); // not silently continued
    expect(await stop(again)).toBe(0);

    const snapshot = await runCliToEnd(['snapshot', '--config', configPath, '--stream', 'clinic-to-cloud', '--table', 'dbo.tblPatients'], { CDC_SYNC_MSSQL_DRIVER: DRIVER });
    expect(snapshot.code).toBe(0);
    expect(snapshot.stdout).toContain('dbo.tblPatients will be copied again');
    const third = start();
    await waitFor(async () => (await patients()).find((p) => p.person_id === 3)?.patient_name === 'lost while down', 30_000, () => third.stderr());
    cdc.commit([{ table: 'dbo.tblPatients', op: 'update', row: { PersonID: 4, PatientName: 'streams again' } }]);
    await waitFor(async () => (await patients()).find((p) => p.person_id === 4)?.patient_name === 'streams again', 30_000, () => third.stderr());
    expect(await stop(third)).toBe(0);
  });

  it('copies again, with `cdc-sync snapshot --where`, only the rows the T-SQL condition holds for', async () => {
    // Drift on the target, as a manual edit makes it.
    await pg.query(`UPDATE patients SET patient_name = 'drift' WHERE person_id IN (5, 20)`);
    const snapshot = await runCliToEnd(['snapshot', '--config', configPath, '--stream', 'clinic-to-cloud', '--table', 'dbo.tblPatients', '--where', 'PersonID <= 10'], {
      CDC_SYNC_MSSQL_DRIVER: DRIVER,
    });
    expect(snapshot.code, snapshot.stderr).toBe(0);
    expect(snapshot.stdout).toContain('dbo.tblPatients');
    const cli = start();
    await waitFor(async () => (await patients()).find((p) => p.person_id === 5)?.patient_name === 'p5', 30_000, () => cli.stderr());
    cdc.commit([{ table: 'dbo.tblPatients', op: 'update', row: { PersonID: 6, PatientName: 'after the copy' } }]);
    await waitFor(async () => (await patients()).find((p) => p.person_id === 6)?.patient_name === 'after the copy', 30_000, () => cli.stderr());
    expect((await patients()).find((p) => p.person_id === 20)!.patient_name).toBe('drift');
    expect(await stop(cli)).toBe(0);
  });
});
