import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { quote } from '../../src/db/mssql/identifiers.js';
import { connectMssql, type MssqlClient } from '../../src/db/mssql/client.js';
import { queueSetupSql, syncQueueSql } from '../../src/db/mssql/queue-setup.js';
import type { MssqlQueueSource } from '../../src/cdc/mssql/queue-source.js';
import { parseJson } from '../../src/core/json.js';
import { harness, pull } from '../support/queue-harness.js';

/**
 * The SyncQueue set-up and claim statements against a real SQL Server
 * (2016 or later; the CI workflow uses 2022). Runs when MSSQL_URL is set, e.g.
 * mssql://sa:Passw0rd!@localhost:1433/master?encrypt=false&trustServerCertificate=true
 * Each run creates its own database and drops it afterwards.
 */
const URL_ = process.env.MSSQL_URL;
const REASON = 'needs a real SQL Server: set MSSQL_URL (mssql://user:password@host:1433/master?encrypt=false&trustServerCertificate=true)';
if (!URL_) console.log(`test/mssql/queue.test.ts skipped: ${REASON}`);

const database = `cdc_sync_queue_${randomBytes(4).toString('hex')}`;
let admin: MssqlClient;
let db: MssqlClient;
const readers = harness();

const sql = <T = Record<string, unknown>>(client: MssqlClient, text: string) => client.query<T>({ name: 'test.sql', sql: text });

/** sqlcmd's batches: GO on a line of its own separates them. */
async function runScript(client: MssqlClient, script: string): Promise<void> {
  for (const batch of script.split(/^\s*GO\s*$/im).map((b) => b.trim()).filter(Boolean)) await sql(client, batch);
}

function withDatabase(url: string, name: string): string {
  if (/^(mssql|sqlserver):\/\//i.test(url)) {
    const u = new URL(url.replace(/^sqlserver:/i, 'mssql:'));
    u.pathname = `/${name}`;
    return u.toString();
  }
  const setting = /((?:^|;)\s*(?:Database|Initial Catalog)\s*=)[^;]*/i;
  return setting.test(url) ? url.replace(setting, `$1${name}`) : `${url};Database=${name}`;
}

interface QueueRow {
  QueueID: number;
  TableName: string;
  RecordID: string;
  Operation: string;
  JsonData: string | null;
  Status: string;
  Attempts: number;
  LockedBy: string | null;
}
const queueRows = () => sql<QueueRow>(db, 'SELECT QueueID, TableName, RecordID, Operation, JsonData, Status, Attempts, LockedBy FROM dbo.SyncQueue ORDER BY QueueID');

async function openReader(owner: string, readLimit: number, leaseSeconds = 60, snapshot: 'initial' | 'never' = 'never'): Promise<MssqlQueueSource> {
  return readers.open({ connect: connectMssql }, {
    url: withDatabase(URL_!, database),
    owner,
    readLimit,
    leaseSeconds,
    snapshot,
    tables: [
      { source: 'dbo.tblItems', target: 'public.items' },
      { source: 'dbo.tblLines', target: 'public.lines' },
    ],
  });
}

describe.skipIf(!URL_)('SyncQueue on a real SQL Server', () => {
  beforeAll(async () => {
    admin = await connectMssql(URL_!, { applicationName: 'cdc-sync-test' });
    await sql(admin, `CREATE DATABASE ${quote(database)}`);
    db = await connectMssql(withDatabase(URL_!, database), { applicationName: 'cdc-sync-test' });
    await sql(
      db,
      `CREATE TABLE dbo.tblItems (ItemID int NOT NULL PRIMARY KEY, Name nvarchar(50) NULL, Price decimal(38,2) NULL,
                                  Born datetime2(7) NULL, Photo varbinary(20) NULL, Active bit NULL);
       CREATE TABLE dbo.tblLines (OrderID int NOT NULL, [LineNo] int NOT NULL, Qty int NULL, CONSTRAINT PK_tblLines PRIMARY KEY (OrderID, [LineNo]));`,
    );
    const setup = queueSetupSql([
      { source: 'dbo.tblItems', key: ['ItemID'] },
      { source: 'dbo.tblLines', key: ['OrderID', 'LineNo'] },
    ]);
    await runScript(db, setup);
    await runScript(db, setup); // idempotent
  });

  afterAll(async () => {
    await readers.stop();
    await db?.close();
    if (admin) {
      await sql(admin, `ALTER DATABASE ${quote(database)} SET SINGLE_USER WITH ROLLBACK IMMEDIATE; DROP DATABASE ${quote(database)};`);
      await admin.close();
    }
  });

  it('upgrades an older SyncQueue in place: lease columns added, RecordID widened, rows kept', async () => {
    await sql(db, 'CREATE SCHEMA legacy');
    await sql(db, `CREATE TABLE legacy.SyncQueue (QueueID int IDENTITY PRIMARY KEY, TableName nvarchar(100), RecordID int, Operation nvarchar(10),
                                     JsonData nvarchar(max), Status nvarchar(20) DEFAULT 'Pending', Attempts int DEFAULT 0,
                                     LastError nvarchar(max), CreatedAt datetime DEFAULT GETDATE(), LastAttempt datetime);
      INSERT INTO legacy.SyncQueue (TableName, RecordID, Operation, JsonData) VALUES (N'patients', 7, N'UPDATE', N'{"PersonID":7}');`);
    await runScript(db, syncQueueSql('legacy.SyncQueue'));
    const columns = await sql<{ name: string; type: string; max_length: number }>(
      db,
      `SELECT c.name, TYPE_NAME(c.system_type_id) AS type, c.max_length FROM sys.columns c WHERE c.object_id = OBJECT_ID(N'legacy.SyncQueue')`,
    );
    expect(columns.map((c) => c.name)).toEqual(expect.arrayContaining(['NextAttemptAt', 'LockedBy', 'LockedUntil']));
    expect(columns.find((c) => c.name === 'RecordID')).toMatchObject({ type: 'nvarchar', max_length: 900 });
    expect(await sql(db, 'SELECT RecordID, Status FROM legacy.SyncQueue')).toEqual([{ RecordID: '7', Status: 'Pending' }]);
  });

  it('queues inserts, updates and deletes as JSON rows, composite keys and key changes included', async () => {
    await sql(db, 'DELETE FROM dbo.SyncQueue');
    await sql(
      db,
      `INSERT INTO dbo.tblItems VALUES (1, N'a', 12345678901234567890.12, '2024-01-02T03:04:05.1234567', 0x0102, 1);
       INSERT INTO dbo.tblItems (ItemID) VALUES (2);
       UPDATE dbo.tblItems SET Name = N'b' WHERE ItemID = 1;
       DELETE FROM dbo.tblItems WHERE ItemID = 1;
       INSERT INTO dbo.tblLines VALUES (1, 2, 3);
       UPDATE dbo.tblLines SET Qty = 4 WHERE OrderID = 1;
       UPDATE dbo.tblLines SET [LineNo] = 5 WHERE OrderID = 1 AND [LineNo] = 2;`,
    );
    const rows = await queueRows();
    expect(rows.map((r) => [r.TableName, r.RecordID, r.Operation, r.Status, r.Attempts])).toEqual([
      ['dbo.tblItems', '1', 'INSERT', 'Pending', 0],
      ['dbo.tblItems', '2', 'INSERT', 'Pending', 0],
      ['dbo.tblItems', '1', 'UPDATE', 'Pending', 0],
      ['dbo.tblItems', '1', 'DELETE', 'Pending', 0],
      ['dbo.tblLines', '[1,2]', 'INSERT', 'Pending', 0],
      ['dbo.tblLines', '[1,2]', 'UPDATE', 'Pending', 0],
      ['dbo.tblLines', '[1,2]', 'DELETE', 'Pending', 0],
      ['dbo.tblLines', '[1,5]', 'INSERT', 'Pending', 0],
    ]);
    const images = rows.map((r) => parseJson(r.JsonData!));
    expect(images[0]).toEqual({ ItemID: 1, Name: 'a', Price: '12345678901234567890.12', Born: '2024-01-02T03:04:05.1234567', Photo: 'AQI=', Active: true });
    expect(images[1]).toEqual({ ItemID: 2, Name: null, Price: null, Born: null, Photo: null, Active: null }); // INCLUDE_NULL_VALUES
    expect(images[3]).toMatchObject({ ItemID: 1, Name: 'b' }); // the deleted image
    expect(images[6]).toEqual({ OrderID: 1, LineNo: 2, Qty: 4 });
  });

  it('queues the image another AFTER trigger left: the queue trigger fires last and reads the table', async () => {
    await sql(db, `CREATE TABLE dbo.tblStamped (ID int NOT NULL PRIMARY KEY, Name nvarchar(50) NULL, Upper nvarchar(50) NULL)`);
    await sql(db, `CREATE TRIGGER dbo.trg_upper ON dbo.tblStamped AFTER INSERT, UPDATE AS
      BEGIN SET NOCOUNT ON; UPDATE t SET Upper = UPPER(i.Name) FROM dbo.tblStamped AS t JOIN inserted AS i ON i.ID = t.ID WHERE ISNULL(t.Upper, N'') <> UPPER(i.Name); END`);
    await runScript(db, queueSetupSql([{ source: 'dbo.tblStamped', key: ['ID'] }]));
    await sql(db, `INSERT INTO dbo.tblStamped (ID, Name) VALUES (1, N'ann')`);
    const rows = (await queueRows()).filter((r) => r.TableName === 'dbo.tblStamped');
    expect(rows.length).toBeGreaterThan(0);
    expect(JSON.parse(rows.at(-1)!.JsonData!)).toEqual({ ID: 1, Name: 'ann', Upper: 'ANN' });
    const order = await sql<{ is_last: boolean }>(db, `SELECT CAST(te.is_last AS bit) AS is_last FROM sys.trigger_events te JOIN sys.triggers tr ON tr.object_id = te.object_id WHERE tr.name = N'trg_sync_tblStamped'`);
    expect(order.every((o) => o.is_last)).toBe(true);
  });

  it('writes nothing for a session that set cdc_sync.origin (cdc-sync itself)', async () => {
    await sql(db, 'DELETE FROM dbo.SyncQueue');
    await sql(
      db,
      `EXEC sys.sp_set_session_context @key = N'cdc_sync.origin', @value = N'cloud-to-clinic';
       INSERT INTO dbo.tblItems (ItemID, Name) VALUES (10, N'from cdc-sync');
       UPDATE dbo.tblItems SET Name = N'still cdc-sync' WHERE ItemID = 10;
       EXEC sys.sp_set_session_context @key = N'cdc_sync.origin', @value = NULL;`,
    );
    expect(await queueRows()).toEqual([]);
    await sql(db, `UPDATE dbo.tblItems SET Name = N'by a user' WHERE ItemID = 10`);
    expect((await queueRows()).map((r) => [r.RecordID, r.Operation])).toEqual([['10', 'UPDATE']]);
  });

  it('gives two concurrent readers disjoint rows; a row locked by another session is skipped without waiting', async () => {
    await sql(db, 'DELETE FROM dbo.SyncQueue; DELETE FROM dbo.tblItems;');
    await sql(db, `INSERT INTO dbo.tblItems (ItemID, Name) SELECT v.n, N'x' FROM (VALUES (1),(2),(3),(4),(5),(6),(7),(8),(9),(10),(11),(12)) AS v(n)`);
    const [a, b] = [await openReader('reader-a', 5), await openReader('reader-b', 5)];
    const [[fromA], [fromB]] = await Promise.all([pull(a, null, 1), pull(b, null, 1)]);
    const idsA = fromA!.events.map((e) => Number(e.sourceRef));
    const idsB = fromB!.events.map((e) => Number(e.sourceRef));
    expect(idsA).toHaveLength(5);
    expect(idsB).toHaveLength(5);
    expect(idsA.filter((id) => idsB.includes(id))).toEqual([]);
    const leased = await queueRows();
    expect(leased.filter((r) => r.LockedBy === 'reader-a').map((r) => r.QueueID).sort()).toEqual([...idsA].sort());
    await a.committed(fromA!.position, []);
    await b.committed(fromB!.position, []);

    // Rows 11 and 12 are left; a newer change of item 11 queues behind row 11.
    await sql(db, `UPDATE dbo.tblItems SET Name = N'y' WHERE ItemID = 11`);
    const pending = (await queueRows()).filter((r) => r.Status === 'Pending');
    const [row11, row12, row11b] = pending;
    const c = await openReader('reader-c', 10);
    await db.transaction(async (tx) => {
      // Another claimer holds row 11: lock it on both paths a claim may read (clustered and claim index).
      for (const index of ['1', 'IX_SyncQueue_Claim']) {
        await tx.query({
          name: 'test.lock',
          sql: `SELECT QueueID FROM dbo.SyncQueue WITH (UPDLOCK, ROWLOCK, INDEX(${index})) WHERE Status = N'Pending' AND QueueID = ${row11!.QueueID}`,
        });
      }
      const started = Date.now();
      const [chunk] = await pull(c, null, 1);
      expect(Date.now() - started).toBeLessThan(5000); // READPAST: no waiting for the lock
      expect(chunk!.events.map((e) => Number(e.sourceRef))).toEqual([row12!.QueueID]); // 11 locked, its newer row waits
      await c.committed(chunk!.position, []);
    });
    const [after] = await pull(c, null, 1);
    expect(after!.events.map((e) => Number(e.sourceRef))).toEqual([row11!.QueueID, row11b!.QueueID]);
    await c.committed(after!.position, []);
    expect((await queueRows()).every((r) => r.Status === 'Synced' && r.LockedBy === null)).toBe(true);
  });

  it('claims the rows of a reader that stopped answering again after the lease, and purges old Synced rows', async () => {
    await sql(db, 'DELETE FROM dbo.SyncQueue');
    await sql(db, `UPDATE dbo.tblItems SET Name = N'z' WHERE ItemID = 12`);
    // A reader claimed it and died: its lease runs out in a second and nobody renews it.
    await sql(db, `UPDATE dbo.SyncQueue SET LockedBy = N'dead', LockedUntil = DATEADD(second, 1, SYSUTCDATETIME()), Attempts = 1`);
    const alive = await openReader('alive', 10);
    const started = Date.now();
    const [chunk] = await pull(alive, null, 1);
    expect(Date.now() - started).toBeGreaterThan(500);
    expect(chunk!.events).toHaveLength(1);
    expect((await queueRows())[0]).toMatchObject({ LockedBy: 'alive', Attempts: 2 });
    await alive.committed(chunk!.position, [{ sourceRef: chunk!.events[0]!.sourceRef, table: 'dbo.tblItems', error: 'refused' }]);
    expect(await sql(db, 'SELECT Status, LastError FROM dbo.SyncQueue')).toEqual([{ Status: 'Failed', LastError: 'refused' }]);

    await sql(db, `INSERT INTO dbo.SyncQueue (TableName, RecordID, Operation, Status, CreatedAt) VALUES
                    (N'dbo.tblItems', N'1', N'INSERT', N'Synced', DATEADD(hour, -80, SYSUTCDATETIME())),
                    (N'dbo.tblItems', N'2', N'INSERT', N'Synced', SYSUTCDATETIME())`);
    const purging = await openReader('purger', 10);
    void pull(purging, null, 1); // the first read purges, then waits for work
    await new Promise((r) => setTimeout(r, 500));
    expect((await queueRows()).map((r) => [r.RecordID, r.Status])).toEqual([
      ['12', 'Failed'],
      ['2', 'Synced'],
    ]);
  });

  it('leaves out of the initial copy every row whose record has a Pending queue row (composite keys too): the queue brings it', async () => {
    await sql(db, 'DELETE FROM dbo.tblItems; DELETE FROM dbo.tblLines;');
    await sql(db, `INSERT INTO dbo.tblItems (ItemID, Name) VALUES (31, N'a'), (32, N'b');
                   INSERT INTO dbo.tblLines VALUES (31, 1, 1), (31, 2, 2);`);
    await sql(db, `UPDATE dbo.SyncQueue SET Status = N'Synced'`);
    await sql(db, `UPDATE dbo.tblItems SET Name = N'b2' WHERE ItemID = 32; UPDATE dbo.tblLines SET Qty = 3 WHERE OrderID = 31 AND [LineNo] = 2;`);
    const pending = (await queueRows()).filter((r) => r.Status === 'Pending').map((r) => String(r.QueueID));
    const copier = await openReader('copier', 10, 60, 'initial');
    const chunks = await pull(copier, null, 3);
    expect(chunks.map((c) => c.events.map((e) => [e.sourceRef ?? 'copy', Object.values(e.key).join('/')]))).toEqual([
      [['copy', '31']],
      [['copy', '31/1']],
      [
        [pending[0], '32'],
        [pending[1], '31/2'],
      ],
    ]);
  });
});
