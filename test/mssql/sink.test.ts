import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChangeEvent } from '../../src/core/change-event.js';
import { ConfigError, PermanentError } from '../../src/core/errors.js';
import { TableMapping, type TableConfig } from '../../src/core/mapping.js';
import { queueSetupSql } from '../../src/db/mssql/queue-setup.js';
import { MssqlSink } from '../../src/sinks/mssql/mssql-sink.js';
import { testContext } from '../support/stream-context.js';
import { MSSQL_URL, SKIP_REASON, createSqlServerDatabase, type TestSqlServerDatabase } from './support.js';

/**
 * The mssql sink against a real SQL Server 2022: MERGE of each type, identity
 * mapping, column ownership, the origin marks. Runs in
 * .github/workflows/mssql.yml; skipped where MSSQL_URL is unset.
 */
describe.skipIf(!MSSQL_URL)(`mssql sink on a real SQL Server${MSSQL_URL ? '' : ` (skipped: ${SKIP_REASON})`}`, () => {
  let db: TestSqlServerDatabase;

  beforeAll(async () => {
    db = await createSqlServerDatabase();
    await db.exec(`CREATE TABLE dbo.tblTypes (ID int PRIMARY KEY, Name nvarchar(100), Price decimal(38,10), Guid uniqueidentifier,
      Seen datetime2(7), Born date, Flag bit, Data varbinary(max), Big bigint, Amount money)`);
    await db.exec(`CREATE TABLE dbo.tblAlignerNotes (NoteID int IDENTITY PRIMARY KEY, PortalID bigint NOT NULL UNIQUE, NoteText nvarchar(max), Lab nvarchar(50))`);
    await db.exec(`CREATE TABLE dbo.tblQueueLike (ID int PRIMARY KEY, Note nvarchar(50))`);
    await db.exec(`CREATE TABLE dbo.SeenContext (origin nvarchar(128))`);
    await db.exec(`CREATE TRIGGER trg_seen ON dbo.tblQueueLike AFTER INSERT, UPDATE AS
      INSERT INTO dbo.SeenContext VALUES (CAST(SESSION_CONTEXT(N'cdc_sync.origin') AS nvarchar(128)))`);
  }, 120_000);

  afterAll(async () => {
    await db?.drop();
  });

  async function open(tables: TableConfig[], identityInsert: string[] = []) {
    const sink = new MssqlSink({ url: db.url, identityInsert: new Set(identityInsert) });
    const targets = await sink.open(testContext('cloud-to-clinic'), tables);
    const mappings = tables.map((t, i) => new TableMapping(t, targets[i]!, `tables[${i}]`, () => {}));
    sink.bind(mappings);
    return { sink, mappings };
  }

  const event = (m: TableMapping, op: ChangeEvent['op'], key: Record<string, unknown>, row: Record<string, unknown> | null) =>
    m.mapEvent({ table: m.source, op, key: key as ChangeEvent['key'], row: row as ChangeEvent['row'], position: 'p', commitTime: new Date() });

  it('merges every type exactly and writes nothing when applied again', async () => {
    const { sink, mappings } = await open([{ source: 'public.types', target: 'dbo.tblTypes', key: ['id'] }]);
    const row = {
      id: 1, name: 'Ann', price: '12345678901234567890.0123456789', guid: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
      seen: '2024-01-02T03:04:05.123456+02:00', born: '1990-05-01', flag: true, data: Buffer.from([0, 1, 255]), big: '9007199254740993', amount: '1234.5678',
    };
    const batch = { changes: [event(mappings[0]!, 'insert', { id: 1 }, row)], deadLetters: [], checkpoint: { stream: 'cloud-to-clinic', position: 'p1' } };
    expect((await sink.apply(batch)).written).toBe(1);
    expect((await sink.apply(batch)).written).toBe(0);
    const [stored] = await db.exec(`SELECT CONVERT(varchar(64), Price) AS Price, CAST(Guid AS char(36)) AS Guid, CONVERT(varchar(33), Seen, 126) AS Seen,
      CONVERT(varchar(10), Born, 23) AS Born, Flag, Data, CAST(Big AS varchar(30)) AS Big, CONVERT(varchar(30), Amount) AS Amount FROM dbo.tblTypes`);
    expect(stored).toMatchObject({
      Price: '12345678901234567890.0123456789', Guid: 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', Seen: '2024-01-02T01:04:05.1234560',
      Born: '1990-05-01', Flag: true, Big: '9007199254740993', Amount: '1234.57',
    });
    expect(Buffer.from(stored!.Data as Buffer).toString('hex')).toBe('0001ff');
    const [checkpoint] = await db.exec(`SELECT position FROM cdc_sync.checkpoints WHERE stream = 'cloud-to-clinic'`);
    expect(checkpoint).toEqual({ position: 'p1' });
  });

  it('maps portal rows onto an IDENTITY table through the alternate key, and keeps columns the portal does not own', async () => {
    const notes: TableConfig = { source: 'public.aligner_notes', target: 'dbo.tblAlignerNotes', key: ['id'], columns: { id: 'PortalID' }, owns: ['note_text'] };
    const { sink, mappings } = await open([notes]);
    await sink.apply({ changes: [event(mappings[0]!, 'insert', { id: 9001 }, { id: 9001, note_text: 'first', lab: 'portal' })], deadLetters: [] });
    await db.exec(`UPDATE dbo.tblAlignerNotes SET Lab = N'clinic' WHERE PortalID = 9001`);
    await sink.apply({ changes: [event(mappings[0]!, 'update', { id: 9001 }, { id: 9001, note_text: 'edited', lab: 'portal' })], deadLetters: [] });
    expect(await db.exec(`SELECT NoteID, PortalID, NoteText, Lab FROM dbo.tblAlignerNotes`)).toEqual([{ NoteID: 1, PortalID: '9001', NoteText: 'edited', Lab: 'clinic' }]);
  });

  it('writes the identity value as given with identityInsert below the IDENTITY value, and refuses one that would move the counter', async () => {
    const byId: TableConfig = { source: 'public.aligner_notes', target: 'dbo.tblAlignerNotes', key: ['note_id'] };
    const { sink, mappings } = await open([byId], ['dbo.tblAlignerNotes']);
    await db.exec(`DBCC CHECKIDENT ('dbo.tblAlignerNotes', RESEED, 1000000)`);
    await sink.apply({ changes: [event(mappings[0]!, 'insert', { note_id: 500 }, { note_id: 500, portal_id: 77, note_text: 'x' })], deadLetters: [] });
    expect(await db.exec(`SELECT NoteID FROM dbo.tblAlignerNotes WHERE PortalID = 77`)).toEqual([{ NoteID: 500 }]);
    const error = await sink
      .apply({ changes: [event(mappings[0]!, 'insert', { note_id: 2000000 }, { note_id: 2000000, portal_id: 78, note_text: 'y' })], deadLetters: [] })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect(await db.exec(`SELECT CAST(IDENT_CURRENT('dbo.tblAlignerNotes') AS int) AS current_value`)).toEqual([{ current_value: 1000000 }]);
  });

  it('writes datetime and smalldatetime from seven fraction digits, and datetimeoffset from an offset without minutes', async () => {
    await db.exec(`CREATE TABLE dbo.tblVisits (ID int PRIMARY KEY, At datetime, Short smalldatetime, Zoned datetimeoffset(7))`);
    const { sink, mappings } = await open([{ source: 'public.visits', target: 'dbo.tblVisits', key: ['id'] }]);
    const row = { id: 1, at: '2024-01-02T03:04:05.1234567', short: '2024-01-02T03:04:05.123456', zoned: '2024-01-02 03:04:05.123456+02' };
    expect((await sink.apply({ changes: [event(mappings[0]!, 'insert', { id: 1 }, row)], deadLetters: [] })).written).toBe(1);
    expect((await sink.apply({ changes: [event(mappings[0]!, 'update', { id: 1 }, row)], deadLetters: [] })).written).toBe(0);
    expect(await db.exec(`SELECT CONVERT(varchar(23), At, 126) AS At, CONVERT(varchar(19), Short, 126) AS Short, CONVERT(varchar(40), Zoned, 127) AS Zoned FROM dbo.tblVisits`)).toEqual([
      { At: '2024-01-02T03:04:05.123', Short: '2024-01-02T03:04:00', Zoned: '2024-01-02T03:04:05.1234560+02:00' },
    ]);
  });

  it('never writes rowversion or computed columns', async () => {
    await db.exec(`CREATE TABLE dbo.tblStamped (ID int PRIMARY KEY, Name nvarchar(100), Version rowversion, Upper AS UPPER(Name))`);
    const { sink, mappings } = await open([{ source: 'public.stamped', target: 'dbo.tblStamped', key: ['id'] }]);
    await sink.apply({ changes: [event(mappings[0]!, 'insert', { id: 1 }, { id: 1, name: 'a', version: 'AAAAAAAAB9E=', upper: 'X' })], deadLetters: [] });
    expect(await db.exec(`SELECT ID, Name, Upper FROM dbo.tblStamped`)).toEqual([{ ID: 1, Name: 'a', Upper: 'A' }]);
  });

  it('writes case-only, trailing-space and accent-only edits that the column collation calls equal', async () => {
    await db.exec(`CREATE TABLE dbo.tblNames (ID int PRIMARY KEY, Name nvarchar(100) COLLATE Latin1_General_CI_AI)`);
    const { sink, mappings } = await open([{ source: 'public.names', target: 'dbo.tblNames', key: ['id'] }]);
    await sink.apply({ changes: [event(mappings[0]!, 'insert', { id: 1 }, { id: 1, name: 'jose' })], deadLetters: [] });
    for (const name of ['Jose', 'Jose ', 'José']) {
      expect((await sink.apply({ changes: [event(mappings[0]!, 'update', { id: 1 }, { id: 1, name })], deadLetters: [] })).written, name).toBe(1);
      expect(await db.exec(`SELECT Name FROM dbo.tblNames`)).toEqual([{ Name: name }]);
    }
  });

  it('fails a value longer than its column as invalid data, never cutting it', async () => {
    const { sink, mappings } = await open([{ source: 'public.q', target: 'dbo.tblQueueLike', key: ['id'] }]);
    const error = await sink.apply({ changes: [event(mappings[0]!, 'insert', { id: 77 }, { id: 77, note: 'x'.repeat(60) })], deadLetters: [] }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PermanentError);
    expect((error as PermanentError).reason).toBe('invalid-data');
    expect(await db.exec(`SELECT ID FROM dbo.tblQueueLike WHERE ID = 77`)).toEqual([]);
  });

  it("two-way through the SyncQueue: keeps the clinic's newer edit, logs the conflict, and queues a winning delete again", async () => {
    await db.exec(`CREATE TABLE dbo.tblPatients (PatientID int PRIMARY KEY, Name nvarchar(100))`);
    for (const batch of queueSetupSql([{ source: 'dbo.tblPatients', key: ['PatientID'] }]).split(/^\s*GO\s*$/im).map((b) => b.trim()).filter(Boolean)) await db.exec(batch);
    const patients: TableConfig = { source: 'public.patients', target: 'dbo.tblPatients', key: ['patient_id'] };
    const sink = new MssqlSink({ url: db.url, identityInsert: new Set(), queueTable: 'dbo.SyncQueue', preferIncoming: false });
    const [table] = await sink.open(testContext('cloud-to-clinic'), [patients]);
    const mapping = new TableMapping(patients, table!, 'tables[0]', () => {});
    sink.bind([mapping]);
    const at = (ms: number) => new Date(Date.now() + ms);
    const change = (op: ChangeEvent['op'], id: number, name: string | null, time: Date) =>
      mapping.mapEvent({ table: patients.source, op, key: { patient_id: id }, row: op === 'delete' ? null : { patient_id: id, name }, position: 'p', commitTime: time });

    await db.exec(`INSERT INTO dbo.tblPatients VALUES (1, N'clinic'), (2, N'clinic')`);
    await db.exec(`DELETE FROM dbo.tblPatients WHERE PatientID = 2`);
    const result = await sink.apply({ changes: [change('update', 1, 'old portal', at(-60_000)), change('insert', 2, 'old portal', at(-60_000)), change('insert', 3, 'new portal', at(60_000))], deadLetters: [] });
    expect(await db.exec(`SELECT PatientID, Name FROM dbo.tblPatients ORDER BY PatientID`)).toEqual([{ PatientID: 1, Name: 'clinic' }, { PatientID: 3, Name: 'new portal' }]);
    expect(result.conflicts).toHaveLength(2);
    expect(await db.exec(`SELECT table_name, [rule], winner FROM cdc_sync.conflicts ORDER BY id`)).toEqual([
      { table_name: 'public.patients', rule: 'change-time', winner: 'stored' },
      { table_name: 'public.patients', rule: 'change-time', winner: 'stored' },
    ]);
    // The trigger skipped cdc-sync's own insert of 3; the ping-back of 2's delete carries the delete's time.
    const queued = await db.exec(`SELECT RecordID, Operation FROM dbo.SyncQueue ORDER BY RecordID, QueueID`);
    expect(queued).toEqual([
      { RecordID: '1', Operation: 'INSERT' },
      { RecordID: '2', Operation: 'INSERT' },
      { RecordID: '2', Operation: 'DELETE' },
      { RecordID: '2', Operation: 'DELETE' },
    ]);
    expect(await db.exec(`SELECT COUNT(DISTINCT CreatedAt) AS times FROM dbo.SyncQueue WHERE RecordID = N'2' AND Operation = N'DELETE'`)).toEqual([{ times: 1 }]);
    await sink.close();
  });

  it('marks its writes: SESSION_CONTEXT for triggers and the origin marker row in the same transaction', async () => {
    const { sink, mappings } = await open([{ source: 'public.q', target: 'dbo.tblQueueLike', key: ['id'] }]);
    await sink.apply({ changes: [event(mappings[0]!, 'insert', { id: 1 }, { id: 1, note: 'x' })], deadLetters: [] });
    expect(await db.exec(`SELECT origin FROM dbo.SeenContext`)).toEqual([{ origin: 'cloud-to-clinic' }]);
    expect(await db.exec(`SELECT id, stream FROM cdc_sync.origin_marker`)).toEqual([{ id: 1, stream: 'cloud-to-clinic' }]);
  });
});
