import { resolve } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { FakeQueue } from '../support/fake-mssql/fake-queue.js';
import { FakeSqlServer } from '../support/fake-mssql/fake-server.js';
import { metricValue, runCli, runCliToEnd, waitFor, writeConfig, CliProcesses, type CliProcess } from '../support/cli.js';
import { createTestDatabase, type TestDatabase } from '../support/test-database.js';

/**
 * The mssql-queue source through the real CLI: SQL Server is the boundary
 * fake (its statements travel over HTTP from the CLI's driver stand-in), the
 * sink a real PostgreSQL database.
 */
const DRIVER = resolve('dist/test/support/fake-mssql/driver.js');
let pg: TestDatabase;
let server: FakeSqlServer;
let queue: FakeQueue;
let sourceUrl: string;
const processes = new CliProcesses();

function config(options: { idleIntervalMs?: number; pollIntervalMs?: number } = {}): string {
  return writeConfig(`
streams:
  - name: clinic-queue
    source: { type: mssql-queue, url: "\${SOURCE_URL}", idleIntervalMs: ${options.idleIntervalMs ?? 100}, pollIntervalMs: ${options.pollIntervalMs ?? 0} }
    sink: { type: postgres, url: "\${SINK_URL}" }
    tables:
      - { source: dbo.tblPatients, target: public.patients, key: [PersonID] }
      - { source: dbo.tblLines, target: public.order_lines, key: [OrderID, LineNo] }
    batch: { maxSize: 100, maxWaitMs: 20 }
    retry: { attempts: 3, minDelayMs: 50, maxDelayMs: 500 }
http: { port: 0, host: 127.0.0.1 }
log: { level: info }
`);
}

function start(path: string): CliProcess {
  const cli = runCli(['run', '--config', path], { SOURCE_URL: sourceUrl, SINK_URL: pg.url, CDC_SYNC_MSSQL_DRIVER: DRIVER });
  return processes.add(cli);
}

async function stop(cli: CliProcess): Promise<number | null> {
  return processes.stop(cli, 'SIGINT');
}

const patient = (id: number, name: string, balance = '10.50') => ({
  PersonID: id,
  Name: name,
  Balance: balance,
  Born: `2001-02-0${(id % 9) + 1}T04:05:06.1234560`,
  Photo: Buffer.from([id, 0xff]),
  Active: id % 2 === 0,
});

/** The source tables as PostgreSQL should hold them (datetime2 has 7 digits, PostgreSQL 6). */
function expected() {
  return {
    patients: queue.rowsOf('dbo.tblPatients').map((r) => ({
      person_id: r.PersonID,
      name: r.Name,
      balance: r.Balance,
      born: String(r.Born).slice(0, 26),
      photo: Buffer.from(r.Photo as Uint8Array).toString('hex'),
      active: r.Active,
    })).sort((a, b) => (a.person_id as number) - (b.person_id as number)),
    lines: queue.rowsOf('dbo.tblLines').map((r) => ({ order_id: r.OrderID, line_no: r.LineNo, qty: r.Qty })).sort((a, b) => (a.order_id as number) - (b.order_id as number) || (a.line_no as number) - (b.line_no as number)),
  };
}
async function actual() {
  return {
    patients: await pg.query(`SELECT person_id, name, balance::text AS balance, to_char(born, 'YYYY-MM-DD"T"HH24:MI:SS.US') AS born,
                                     encode(photo, 'hex') AS photo, active FROM patients ORDER BY person_id`),
    lines: await pg.query(`SELECT order_id, line_no, qty FROM order_lines ORDER BY order_id, line_no`),
  };
}
let difference = '';
async function inSync(): Promise<boolean> {
  const [want, have] = [JSON.stringify(expected()), JSON.stringify(await actual())];
  difference = `want ${want}\nhave ${have}`;
  return want === have;
}

beforeAll(async () => {
  pg = await createTestDatabase('e2e_mssql_queue');
  await pg.query(`CREATE TABLE patients (person_id int PRIMARY KEY, name text NOT NULL, balance numeric(30,2), born timestamp, photo bytea, active boolean);
                  CREATE TABLE order_lines (order_id int, line_no int, qty int CHECK (qty >= 0), PRIMARY KEY (order_id, line_no));`);
});

afterAll(async () => {
  await pg.drop();
});

beforeEach(async () => {
  server = new FakeSqlServer();
  queue = new FakeQueue(server);
  queue.createTable(
    'dbo',
    'tblPatients',
    ['PersonID:int', 'Name:nvarchar', 'Balance:decimal', 'Born:datetime2', 'Photo:varbinary', 'Active:bit'].map((c) => ({ name: c.split(':')[0]!, type: c.split(':')[1]! })),
    ['PersonID'],
  );
  queue.createTable('dbo', 'tblLines', [{ name: 'OrderID', type: 'int' }, { name: 'LineNo', type: 'int' }, { name: 'Qty', type: 'int' }], ['OrderID', 'LineNo']);
  sourceUrl = await server.listen();
  await pg.query(`TRUNCATE patients, order_lines; DROP SCHEMA IF EXISTS cdc_sync CASCADE`);
});

afterEach(async () => {
  await processes.killAll();
  await server.close();
});

describe('mssql-queue → postgres through the CLI', () => {
  it('prints the SyncQueue set-up with init-sql', async () => {
    const result = await runCliToEnd(['init-sql', '--config', config()], { SOURCE_URL: sourceUrl, SINK_URL: pg.url });
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('CREATE TABLE [dbo].[SyncQueue]');
    expect(result.stdout).toContain('CREATE OR ALTER TRIGGER [dbo].[trg_sync_tblLines] ON [dbo].[tblLines]');
  });

  it('copies the tables, then applies queued inserts, updates and deletes until PostgreSQL is equal', async () => {
    // Rows from before the triggers existed: only the initial copy brings them.
    for (let id = 1; id <= 5; id += 1) queue.rowsOf('dbo.tblPatients').push(patient(id, `before ${id}`));
    queue.rowsOf('dbo.tblLines').push({ OrderID: 1, LineNo: 1, Qty: 3 });
    const cli = start(config());
    await waitFor(inSync, 30_000, () => `${difference}\n${cli.stderr()}`);

    queue.insert('dbo.tblPatients', patient(6, 'new', '12345678901234567890.12'));
    queue.update('dbo.tblPatients', { PersonID: 2, Name: 'renamed', Active: true });
    queue.update('dbo.tblPatients', { PersonID: 2, Name: 'renamed twice' });
    queue.delete('dbo.tblPatients', { PersonID: 3 });
    queue.insert('dbo.tblLines', { OrderID: 1, LineNo: 2, Qty: 7 });
    queue.update('dbo.tblLines', { OrderID: 1, LineNo: 1, Qty: 4 });
    queue.delete('dbo.tblLines', { OrderID: 1, LineNo: 2 });
    queue.insert('dbo.tblLines', { OrderID: 2, LineNo: 1, Qty: 1 });
    await waitFor(inSync, 30_000, () => `${difference}\n${cli.stderr()}`);
    await waitFor(() => queue.rows.every((r) => r.Status === 'Synced'), 10_000, () => JSON.stringify(queue.statuses()));

    expect((await pg.query<{ balance: string }>('SELECT balance::text AS balance FROM patients WHERE person_id = 6'))[0]!.balance).toBe('12345678901234567890.12');
    const text = await cli.metrics();
    expect(metricValue(text, 'cdc_sync_events_captured_total', { table: 'dbo.tblPatients', op: 'insert' })).toBe(6); // 5 copied + 1
    expect(metricValue(text, 'cdc_sync_events_captured_total', { table: 'dbo.tblLines', op: 'delete' })).toBe(1);
    expect(metricValue(text, 'cdc_sync_connected', { stream: 'clinic-queue' })).toBe(1);
    expect((await fetch(await cli.url('/readyz'))).status).toBe(200);
    expect(await stop(cli)).toBe(0);
    expect(queue.rows.every((r) => r.LockedBy === null)).toBe(true);
  });

  it('ends a malformed row and a row the sink refuses Failed in the queue and in the dead letters, and goes on', async () => {
    const cli = start(config());
    const bad = queue.enqueue({ TableName: 'dbo.tblPatients', Operation: 'INSERT', RecordID: '8', JsonData: '{"PersonID": 8, "Name": ' });
    const refused = queue.insert('dbo.tblLines', { OrderID: 5, LineNo: 1, Qty: -1 })!;
    queue.insert('dbo.tblPatients', patient(9, 'after'));
    await waitFor(async () => (await pg.query('SELECT 1 FROM patients WHERE person_id = 9')).length === 1, 30_000, () => cli.stderr());
    await waitFor(() => queue.row(bad.QueueID).Status === 'Failed' && queue.row(refused.QueueID).Status === 'Failed', 10_000, () => JSON.stringify(queue.rows));
    expect(queue.row(bad.QueueID).LastError).toMatch(/malformed JsonData/);
    expect(queue.row(refused.QueueID).LastError).toMatch(/order_lines_qty_check/);
    expect(queue.row(bad.QueueID + 2).Status).toBe('Synced');
    const letters = await pg.query<{ table_name: string; reason: string; payload: string }>('SELECT table_name, reason, payload FROM cdc_sync.dead_letters ORDER BY id');
    expect(letters.map((l) => [l.table_name, l.reason])).toEqual(
      expect.arrayContaining([
        ['dbo.tblPatients', 'malformed'],
        ['dbo.tblLines', 'constraint'],
      ]),
    );
    expect(letters.find((l) => l.reason === 'malformed')!.payload).toBe('{"PersonID": 8, "Name": ');
    expect(await stop(cli)).toBe(0);
  });

  it('reads a new row at once on POST /api/sync/queue-notify while polling has backed off', async () => {
    const cli = start(config({ pollIntervalMs: 20_000, idleIntervalMs: 30_000 }));
    await waitFor(() => server.executed.some((s) => s.name === 'queue.claim'), 30_000, () => cli.stderr());
    await new Promise((r) => setTimeout(r, 300));
    queue.insert('dbo.tblPatients', patient(1, 'notified'));
    await new Promise((r) => setTimeout(r, 1500));
    expect(await pg.query('SELECT 1 FROM patients')).toHaveLength(0); // no poll in between: the idle wait is 30 s
    const notified = Date.now();
    const response = await fetch(await cli.url('/api/sync/queue-notify'), { method: 'POST' });
    expect(response.status).toBe(200);
    await waitFor(async () => (await pg.query('SELECT 1 FROM patients')).length === 1, 5_000, () => cli.stderr());
    expect(Date.now() - notified).toBeLessThan(3000);
    expect(await stop(cli)).toBe(0);
  });
});
