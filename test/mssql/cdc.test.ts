import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MssqlCdcSource } from '../../src/cdc/mssql/cdc-source.js';
import type { TableConfig } from '../../src/core/mapping.js';
import { testContext } from '../support/stream-context.js';
import { MSSQL_URL, SKIP_REASON, collect, createSqlServerDatabase, type TestSqlServerDatabase } from './support.js';

/**
 * mssql-cdc against a real SQL Server 2022 with SQL Server Agent (the capture
 * job). Runs in .github/workflows/mssql.yml; skipped where MSSQL_URL is unset.
 */
describe.skipIf(!MSSQL_URL)(`mssql-cdc on a real SQL Server${MSSQL_URL ? '' : ` (skipped: ${SKIP_REASON})`}`, () => {
  let db: TestSqlServerDatabase;
  const tables: TableConfig[] = [
    { source: 'dbo.tblPatients', target: 'public.patients' },
    { source: 'dbo.tblCodes', target: 'public.codes' },
  ];

  beforeAll(async () => {
    db = await createSqlServerDatabase();
    await db.exec(`CREATE TABLE dbo.tblPatients (PersonID int PRIMARY KEY, Name nvarchar(100), Balance decimal(38,10), Guid uniqueidentifier, Seen datetime2(7), Born datetime, Flag bit, Data varbinary(16))`);
    await db.exec(`CREATE TABLE dbo.tblCodes (Code varchar(20) COLLATE SQL_Latin1_General_CP1_CI_AS PRIMARY KEY, Label nvarchar(50))`);
    for (const t of ['tblPatients', 'tblCodes']) {
      await db.exec(`EXEC sys.sp_cdc_enable_table @source_schema = N'dbo', @source_name = N'${t}', @role_name = NULL, @supports_net_changes = 0`);
    }
    await db.exec(`EXEC sys.sp_cdc_change_job @job_type = N'capture', @pollinginterval = 1`).catch(() => undefined);
  }, 120_000);

  afterAll(async () => {
    await db?.drop();
  });

  function source(options: { readLimit?: number; snapshot?: 'initial' | 'never' } = {}) {
    return new MssqlCdcSource({
      url: db.url,
      tables,
      readLimit: options.readLimit ?? 100,
      pollIntervalMs: 100,
      idleIntervalMs: 500,
      heartbeatMs: 60_000,
      snapshot: options.snapshot ?? 'initial',
      retry: { attempts: 5, minDelayMs: 100, maxDelayMs: 1000 },
    });
  }

  it('copies existing rows in the server collation order, then streams changes with exact values', async () => {
    await db.exec(`INSERT INTO dbo.tblCodes VALUES ('b', 'x'), ('A', 'x'), ('c', 'x'), ('B2', 'x'), ('a1', 'x')`);
    const s = source({ readLimit: 2 });
    const context = testContext('real');
    await s.open(context);
    const copied = await collect(s, null, (events) => events.filter((e) => e.table === 'dbo.tblCodes').length >= 5);
    expect(copied.events.filter((e) => e.table === 'dbo.tblCodes').map((e) => e.key.Code)).toEqual(['A', 'a1', 'b', 'B2', 'c']);

    await db.exec(`INSERT INTO dbo.tblPatients VALUES (1, N'Ann', 12345678901234567890.0123456789, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2024-01-02T03:04:05.1234567', '1990-05-01T10:00:00', 1, 0x0001FF)`);
    await db.exec(`UPDATE dbo.tblPatients SET Name = N'Anne' WHERE PersonID = 1`);
    await db.exec(`DELETE FROM dbo.tblPatients WHERE PersonID = 1`);
    const streamed = await collect(s, copied.position, (events) => events.some((e) => e.op === 'delete'));
    const ops = streamed.events.filter((e) => e.table === 'dbo.tblPatients');
    expect(ops.map((e) => e.op)).toEqual(['insert', 'update', 'delete']);
    expect(ops[0]!.row).toMatchObject({
      Balance: '12345678901234567890.0123456789',
      Guid: 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11',
      Seen: '2024-01-02T03:04:05.1234567',
      Flag: true,
    });
    expect(Buffer.from(ops[0]!.row!.Data as Uint8Array).toString('hex')).toBe('0001ff');
    expect(ops[1]!.before).toMatchObject({ Name: 'Ann' });
    expect(ops[0]!.commitTime.getTime()).toBeGreaterThan(Date.now() - 10 * 60_000);
    await s.close();
  });

  it('keeps a row whose key was updated (delete + insert in one statement)', async () => {
    await db.exec(`INSERT INTO dbo.tblCodes VALUES ('old', 'k')`);
    const s = source({ snapshot: 'never' });
    await s.open(testContext('real'));
    await db.exec(`UPDATE dbo.tblCodes SET Code = 'new' WHERE Code = 'old'`);
    const { events } = await collect(s, null, (es) => es.some((e) => e.key.Code === 'new'));
    const tail = events.filter((e) => e.key.Code === 'old' || e.key.Code === 'new').slice(-2);
    expect(tail.map((e) => [e.op, e.key.Code])).toEqual([['delete', 'old'], ['insert', 'new']]);
    await s.close();
  });

  it('stops a table after the cleanup removed changes it needs, with the way out in the message', async () => {
    const s = source({ snapshot: 'never' });
    const context = testContext('real');
    await s.open(context);
    await db.exec(`INSERT INTO dbo.tblPatients (PersonID, Name) VALUES (50, N'x')`);
    const first = await collect(s, null, (es) => es.some((e) => e.key.PersonID === 50));
    await s.close();
    await db.exec(`INSERT INTO dbo.tblPatients (PersonID, Name) VALUES (51, N'gone')`);
    await db.exec(`INSERT INTO dbo.tblCodes VALUES ('after-gap', 'x')`);
    const probe = source({ snapshot: 'never' });
    await probe.open(testContext('probe'));
    await collect(probe, first.position, (es) => es.some((e) => e.key.Code === 'after-gap'));
    await probe.close();
    const [{ lsn }] = (await db.exec(`SELECT sys.fn_cdc_get_max_lsn() AS lsn`)) as [{ lsn: Buffer }];
    await db.exec(`EXEC sys.sp_cdc_cleanup_change_table @capture_instance = N'dbo_tblPatients', @low_water_mark = 0x${lsn.toString('hex')}, @threshold = 5000`);
    const again = source({ snapshot: 'never' });
    const ctx = testContext('real');
    await again.open(ctx);
    await collect(again, first.position, (es) => es.some((e) => e.key.Code === 'after-gap'));
    expect(ctx.problems.join()).toMatch(/dbo\.tblPatients .*cleanup job.*cdc-sync snapshot/);
    await again.close();
  });
});
