import { beforeEach, describe, expect, it } from 'vitest';
import type { ChangeEvent } from '../../../src/core/change-event.js';
import { TableMapping, type TableConfig } from '../../../src/core/mapping.js';
import { MssqlSink } from '../../../src/sinks/mssql/mssql-sink.js';
import { FakeQueue } from '../../support/fake-mssql/fake-queue.js';
import { FakeQueueSink } from '../../support/fake-mssql/fake-queue-sink.js';
import { FakeSqlServer } from '../../support/fake-mssql/fake-server.js';
import { FakeTarget } from '../../support/fake-mssql/fake-target.js';
import { testContext } from '../../support/stream-context.js';

/**
 * newer-wins by change time in SQL Server: in a two-way set-up through
 * mssql-queue the SyncQueue is the clinic's own change log, and the mssql
 * sink compares each incoming change with the newest queued change of its key.
 */
let server: FakeSqlServer;
let queue: FakeQueue;
let target: FakeTarget;

const COLUMNS = [
  { name: 'PatientID', type: 'int' },
  { name: 'Name', type: 'nvarchar', maxLength: -1 },
];

beforeEach(() => {
  server = new FakeSqlServer();
  queue = new FakeQueue(server);
  target = new FakeTarget(server);
  new FakeQueueSink(server, queue);
  queue.createTable('dbo', 'tblPatients', COLUMNS, ['PatientID']);
  target.createTable('dbo.tblPatients', COLUMNS, ['PatientID'], [], { rows: queue.rowsOf('dbo.tblPatients'), typed: true });
});

const patients: TableConfig = { source: 'public.patients', target: 'dbo.tblPatients', key: ['patient_id'] };

async function open(options: { preferIncoming?: boolean; queueTable?: string } = {}) {
  const sink = new MssqlSink({ url: 'fake', identityInsert: new Set(), queueTable: options.queueTable ?? 'dbo.SyncQueue', preferIncoming: options.preferIncoming ?? false, connect: server.connect });
  const [table] = await sink.open(testContext('cloud-to-clinic'), [patients]);
  const mapping = new TableMapping(patients, table!, 'tables[0]', () => {});
  sink.bind([mapping]);
  const change = (op: ChangeEvent['op'], id: number, name: string | null, commitTime: Date): ChangeEvent =>
    mapping.mapEvent({ table: patients.source, op, key: { patient_id: id }, row: op === 'delete' ? null : { patient_id: id, name }, position: 'p', commitTime });
  const apply = (...changes: ChangeEvent[]) => sink.apply({ changes, deadLetters: [] });
  return { sink, change, apply };
}

const rows = () => queue.rowsOf('dbo.tblPatients').map((r) => ({ ...r }));

describe('mssql sink, newer-wins by change time against the SyncQueue', () => {
  it("keeps the clinic's newer edit and logs the conflict with both rows", async () => {
    const { change, apply } = await open();
    queue.insert('dbo.tblPatients', { PatientID: 1, Name: 'clinic' });
    const result = await apply(change('update', 1, 'portal', new Date(Date.now() - 1000)));
    expect(rows()).toEqual([{ PatientID: 1, Name: 'clinic' }]);
    expect(result.conflicts).toEqual([{ table: 'public.patients', key: { PatientID: 1 } }]);
    expect(target.conflictLog).toHaveLength(1);
    expect(target.conflictLog[0]).toMatchObject({ rule: 'change-time', winner: 'stored', incoming: { PatientID: 1, Name: 'portal' }, stored: { PatientID: 1, Name: 'clinic' } });
  });

  it("applies a change newer than the clinic's last edit", async () => {
    const { change, apply } = await open();
    queue.insert('dbo.tblPatients', { PatientID: 1, Name: 'clinic' });
    const result = await apply(change('update', 1, 'portal', new Date(Date.now() + 1000)));
    expect(rows()).toEqual([{ PatientID: 1, Name: 'portal' }]);
    expect(result.conflicts).toEqual([]);
  });

  it('gives a tie to the preferred side', async () => {
    const local = await open({ preferIncoming: false });
    const at = queue.insert('dbo.tblPatients', { PatientID: 1, Name: 'clinic' })!.CreatedAt;
    await local.apply(local.change('update', 1, 'portal', at));
    expect(rows()).toEqual([{ PatientID: 1, Name: 'clinic' }]);
    const incoming = await open({ preferIncoming: true });
    await incoming.apply(incoming.change('update', 1, 'portal', at));
    expect(rows()).toEqual([{ PatientID: 1, Name: 'portal' }]);
  });

  it("queues a clinic delete that won again, stamped with the delete's time, so the portal loses the row too", async () => {
    const { change, apply } = await open();
    queue.insert('dbo.tblPatients', { PatientID: 1, Name: 'clinic' });
    const deleted = queue.delete('dbo.tblPatients', { PatientID: 1 })!;
    const before = queue.rows.length;
    await apply(change('insert', 1, 'portal', new Date(deleted.CreatedAt.getTime() - 500)));
    expect(rows()).toEqual([]);
    const [pingBack] = queue.rows.slice(before);
    expect(pingBack).toMatchObject({ TableName: 'dbo.tblPatients', RecordID: '1', Operation: 'DELETE', Status: 'Pending', JsonData: '{"PatientID":1}' });
    expect(pingBack!.CreatedAt.getTime()).toBe(deleted.CreatedAt.getTime());
    expect(queue.rows.length).toBe(before + 1);
  });

  it('reads a queue kept in server local time (GETDATE(), two hours ahead) as UTC', async () => {
    queue.createdAtDefault = '(getdate())';
    queue.utcOffsetMinutes = 120;
    const { change, apply } = await open();
    queue.insert('dbo.tblPatients', { PatientID: 1, Name: 'clinic' });
    await apply(change('update', 1, 'portal', new Date(Date.now() + 1000)));
    expect(rows()).toEqual([{ PatientID: 1, Name: 'portal' }]);
  });

  it('applies every change to a table whose changes no trigger queues (one-way)', async () => {
    queue.table('dbo.tblPatients').trigger = false;
    const { change, apply } = await open();
    queue.insert('dbo.tblPatients', { PatientID: 1, Name: 'clinic' });
    queue.enqueue({ TableName: 'dbo.tblPatients', RecordID: '1', Operation: 'UPDATE' });
    await apply(change('update', 1, 'portal', new Date(Date.now() - 1000)));
    expect(rows()).toEqual([{ PatientID: 1, Name: 'portal' }]);
  });

  it('locks the keys before it reads the queue, and its writes queue nothing', async () => {
    const { change, apply } = await open();
    await apply(change('insert', 2, 'portal', new Date()));
    const names = server.executed.map((e) => e.name);
    expect(names.indexOf('sink.lock-keys')).toBeGreaterThan(names.indexOf('sink.mark-origin'));
    expect(names.indexOf('sink.local-changes')).toBeGreaterThan(names.indexOf('sink.lock-keys'));
    expect(queue.rows).toEqual([]);
  });
});

describe('mssql sink, newer-wins by UpdatedAt in a SyncQueue pair', () => {
  const NOTES = [
    { name: 'NoteID', type: 'int' },
    { name: 'Text', type: 'nvarchar', maxLength: -1 },
    { name: 'UpdatedAt', type: 'nvarchar', maxLength: -1 },
  ];
  const notes: TableConfig = { source: 'public.notes', target: 'dbo.tblNotes', key: ['note_id'], conflict: 'newer-wins', updatedAt: 'updated_at' };

  async function openNotes() {
    queue.createTable('dbo', 'tblNotes', NOTES, ['NoteID']);
    target.createTable('dbo.tblNotes', NOTES, ['NoteID'], [], { rows: queue.rowsOf('dbo.tblNotes'), typed: true });
    const sink = new MssqlSink({ url: 'fake', identityInsert: new Set(), queueTable: 'dbo.SyncQueue', preferIncoming: false, connect: server.connect });
    const [table] = await sink.open(testContext('cloud-to-clinic'), [notes]);
    const mapping = new TableMapping(notes, table!, 'tables[0]', () => {});
    sink.bind([mapping]);
    const change = (op: ChangeEvent['op'], id: number, text: string | null, updatedAt: string | null, commitTime: Date): ChangeEvent =>
      mapping.mapEvent({ table: notes.source, op, key: { note_id: id }, row: op === 'delete' ? null : { note_id: id, text, updated_at: updatedAt }, position: 'p', commitTime });
    return { change, apply: (...changes: ChangeEvent[]) => sink.apply({ changes, deadLetters: [] }) };
  }
  const noteRows = () => queue.rowsOf('dbo.tblNotes').map((r) => ({ ...r }));

  it('lets the column decide between two updates, whatever the change times', async () => {
    const { change, apply } = await openNotes();
    queue.insert('dbo.tblNotes', { NoteID: 1, Text: 'clinic', UpdatedAt: '2030-01-01T00:00:00' });
    // Changed before the clinic's edit was queued, but its UpdatedAt is the later one.
    await apply(change('update', 1, 'portal', '2030-01-02T00:00:00', new Date(Date.now() - 60_000)));
    expect(noteRows()).toEqual([{ NoteID: 1, Text: 'portal', UpdatedAt: '2030-01-02T00:00:00' }]);
  });

  it('judges a delete by change time: an older incoming delete loses to the clinic edit queued after it', async () => {
    const { change, apply } = await openNotes();
    queue.insert('dbo.tblNotes', { NoteID: 1, Text: 'clinic', UpdatedAt: '2030-01-01T00:00:00' });
    const result = await apply(change('delete', 1, null, null, new Date(Date.now() - 60_000)));
    expect(noteRows()).toEqual([{ NoteID: 1, Text: 'clinic', UpdatedAt: '2030-01-01T00:00:00' }]);
    expect(result.conflicts).toEqual([{ table: 'public.notes', key: { NoteID: 1 } }]);
  });

  it('judges an update of a row the clinic deleted by change time: the older update loses and the delete is queued again', async () => {
    const { change, apply } = await openNotes();
    queue.insert('dbo.tblNotes', { NoteID: 1, Text: 'clinic', UpdatedAt: '2030-01-01T00:00:00' });
    const deleted = queue.delete('dbo.tblNotes', { NoteID: 1 })!;
    const before = queue.rows.length;
    await apply(change('update', 1, 'portal', '2031-01-01T00:00:00', new Date(deleted.CreatedAt.getTime() - 500)));
    expect(noteRows()).toEqual([]);
    expect(queue.rows.slice(before)).toEqual([expect.objectContaining({ TableName: 'dbo.tblNotes', RecordID: '1', Operation: 'DELETE' })]);
  });
});
