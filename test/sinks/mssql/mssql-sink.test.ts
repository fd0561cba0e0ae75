import { beforeEach, describe, expect, it } from 'vitest';
import type { ChangeEvent } from '../../../src/core/change-event.js';
import { ConfigError, PermanentError } from '../../../src/core/errors.js';
import { TableMapping, type TableConfig } from '../../../src/core/mapping.js';
import { MssqlDeadLetters } from '../../../src/control/retry-failed.js';
import { MssqlSink } from '../../../src/sinks/mssql/mssql-sink.js';
import { keyChange } from '../../../src/cdc/key-change.js';
import { coalesce } from '../../../src/streams/operators/coalesce.js';
import { FakeSqlServer } from '../../support/fake-mssql/fake-server.js';
import { FakeTarget } from '../../support/fake-mssql/fake-target.js';
import { testContext } from '../../support/stream-context.js';

let server: FakeSqlServer;
let target: FakeTarget;

beforeEach(() => {
  server = new FakeSqlServer();
  target = new FakeTarget(server);
  target.createTable(
    'dbo.tblAlignerBatches',
    [
      { name: 'AlignerBatchID', type: 'int' },
      { name: 'Days', type: 'int' },
      { name: 'Notes', type: 'nvarchar', maxLength: 1000 },
      { name: 'Price', type: 'decimal', precision: 38, scale: 10 },
      { name: 'Guid', type: 'uniqueidentifier' },
      { name: 'Photo', type: 'varbinary', maxLength: -1 },
      { name: 'UpdatedAt', type: 'datetime2', scale: 7 },
    ],
    ['AlignerBatchID'],
  );
  target.createTable(
    'dbo.tblAlignerNotes',
    [
      { name: 'NoteID', type: 'int', identity: true },
      { name: 'PortalID', type: 'bigint' },
      { name: 'NoteText', type: 'nvarchar', maxLength: -1 },
    ],
    ['NoteID'],
    [['PortalID']],
  );
});

async function open(tables: TableConfig[], identityInsert: string[] = []) {
  const sink = new MssqlSink({ url: 'fake', identityInsert: new Set(identityInsert), connect: server.connect });
  const context = testContext('cloud-to-clinic');
  const targets = await sink.open(context, tables);
  const mappings = tables.map((t, i) => new TableMapping(t, targets[i]!, `tables[${i}]`, () => {}));
  sink.bind(mappings);
  return { sink, mappings };
}

const batches: TableConfig = { source: 'public.aligner_batches', target: 'dbo.tblAlignerBatches', key: ['aligner_batch_id'] };
const notes: TableConfig = { source: 'public.aligner_notes', target: 'dbo.tblAlignerNotes', key: ['id'], columns: { id: 'PortalID' } };

function change(mapping: TableMapping, op: ChangeEvent['op'], row: Record<string, unknown>): ChangeEvent {
  const event: ChangeEvent = { table: mapping.source, op, key: {}, row: row as ChangeEvent['row'], position: 'p', commitTime: new Date() };
  const key = Object.fromEntries(Object.entries(row).filter(([k]) => ['aligner_batch_id', 'id'].includes(k))) as ChangeEvent['key'];
  return mapping.mapEvent({ ...event, key, row: op === 'delete' ? null : event.row });
}

describe('MssqlSink', () => {
  it('applies a table\'s share of a batch in one MERGE typed by the target\'s declared types, in one transaction with the checkpoint', async () => {
    const { sink, mappings } = await open([batches]);
    const rows = [1, 2, 3].map((id) => ({
      aligner_batch_id: id,
      days: 14,
      notes: `batch ${id}`,
      price: '12345678901234567890.0123456789',
      guid: 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11',
      photo: Buffer.from([0, 1, 255]),
      updated_at: '2024-01-02T03:04:05.123456+02:00',
    }));
    const result = await sink.apply({ changes: rows.map((r) => change(mappings[0]!, 'insert', r)), deadLetters: [], checkpoint: { stream: 'cloud-to-clinic', position: 'p1' } });
    expect(result.written).toBe(3);
    const merges = server.executed.filter((e) => e.name === 'sink.merge');
    expect(merges).toHaveLength(1);
    const sent = JSON.parse(String(merges[0]!.values.rows)) as Record<string, unknown>[];
    expect(sent[0]).toEqual({
      AlignerBatchID: 1,
      Days: 14,
      Notes: 'batch 1',
      Price: '12345678901234567890.0123456789',
      Guid: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
      Photo: Buffer.from([0, 1, 255]).toString('base64'),
      UpdatedAt: '2024-01-02T01:04:05.123456',
    });
    expect(target.checkpoints.get('cloud-to-clinic')).toBe('p1');
    // The transaction first says who writes (SESSION_CONTEXT and the CDC marker row), then one MERGE, then the checkpoint.
    const names = server.executed.map((e) => e.name);
    expect(names.slice(names.indexOf('sink.mark-origin'))).toEqual(['sink.mark-origin', 'sink.merge', 'sink.save-checkpoint']);
    expect(target.origins).toEqual(['cloud-to-clinic']);
  });

  it('updates only rows that differ, and only the columns the stream owns', async () => {
    const owned: TableConfig = { ...batches, owns: ['days', 'notes'] };
    const { sink, mappings } = await open([owned]);
    target.rows('dbo.tblAlignerBatches').push({ AlignerBatchID: 7, Days: 10, Notes: 'clinic', Price: '1.0000000000', Guid: null, Photo: null, UpdatedAt: null });
    const same = await sink.apply({ changes: [change(mappings[0]!, 'update', { aligner_batch_id: 7, days: 10, notes: 'clinic' })], deadLetters: [] });
    expect(same.written).toBe(0);
    const edit = await sink.apply({ changes: [change(mappings[0]!, 'update', { aligner_batch_id: 7, days: 21, notes: 'doctor', price: '99' })], deadLetters: [] });
    expect(edit.written).toBe(1);
    expect(target.rows('dbo.tblAlignerBatches')[0]).toMatchObject({ Days: 21, Notes: 'doctor', Price: '1.0000000000' });
  });

  it('maps portal rows to an IDENTITY table through an alternate key: SQL Server assigns the id, later updates match the alternate key', async () => {
    const { sink, mappings } = await open([notes]);
    await sink.apply({ changes: [change(mappings[0]!, 'insert', { id: 9001, note_text: 'first' })], deadLetters: [] });
    await sink.apply({ changes: [change(mappings[0]!, 'update', { id: 9001, note_text: 'edited' })], deadLetters: [] });
    expect(target.rows('dbo.tblAlignerNotes')).toEqual([{ NoteID: 1, PortalID: 9001, NoteText: 'edited' }]);
    const merge = server.executed.find((e) => e.name === 'sink.merge')!;
    expect(JSON.parse(String(merge.values.rows))[0]).not.toHaveProperty('NoteID');
  });

  it('writes the identity key as given with IDENTITY_INSERT when it is below the IDENTITY value, and stops before one that would move the counter', async () => {
    const byId: TableConfig = { source: 'public.aligner_notes', target: 'dbo.tblAlignerNotes', key: ['note_id'] };
    const { sink, mappings } = await open([byId], ['dbo.tblAlignerNotes']);
    const insert = (id: number) =>
      mappings[0]!.mapEvent({ table: byId.source, op: 'insert', key: { note_id: id }, row: { note_id: id, portal_id: 1, note_text: 'x' }, position: 'p', commitTime: new Date() });
    // The clinic's IDENTITY was reseeded above the portal's range (DBCC CHECKIDENT … RESEED, 1000000).
    target.tables.get('dbo.tblAlignerNotes')!.identityCurrent = 1_000_000;
    await sink.apply({ changes: [insert(42)], deadLetters: [] });
    expect(target.rows('dbo.tblAlignerNotes')).toEqual([{ NoteID: 42, PortalID: 1, NoteText: 'x' }]);
    expect(target.tables.get('dbo.tblAlignerNotes')!.identityCurrent).toBe(1_000_000);

    const error = await sink.apply({ changes: [insert(2_000_000)], deadLetters: [], checkpoint: { stream: 's', position: 'p2' } }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toMatch(/identityInsert: an incoming NoteID is beyond the IDENTITY value of \[dbo\]\.\[tblAlignerNotes\].*alternate-key/);
    expect(target.rows('dbo.tblAlignerNotes')).toHaveLength(1);
    expect(target.tables.get('dbo.tblAlignerNotes')!.identityCurrent).toBe(1_000_000);
    expect(target.checkpoints.has('s')).toBe(false);
  });

  it('writes datetime targets from values with seven fraction digits and datetimeoffset from offsets without minutes', async () => {
    target.createTable('dbo.tblVisits', [{ name: 'ID', type: 'int' }, { name: 'At', type: 'datetime' }, { name: 'Short', type: 'smalldatetime' }, { name: 'Zoned', type: 'datetimeoffset', scale: 7 }], ['ID']);
    const visits: TableConfig = { source: 'public.visits', target: 'dbo.tblVisits', key: ['id'] };
    const { sink, mappings } = await open([visits]);
    const event = mappings[0]!.mapEvent({
      table: visits.source,
      op: 'insert',
      key: { id: 1 },
      row: { id: 1, at: '2024-01-02T03:04:05.1234567', short: '2024-01-02T03:04:05.123456', zoned: '2024-01-02 03:04:05.123456+02' },
      position: 'p',
      commitTime: new Date(),
    });
    const result = await sink.apply({ changes: [event], deadLetters: [] });
    expect(result.written).toBe(1);
    expect(target.rows('dbo.tblVisits')[0]).toMatchObject({ ID: 1, Zoned: '2024-01-02 03:04:05.123456+02:00' });
  });

  it('never writes rowversion or computed target columns', async () => {
    target.createTable('dbo.tblStamped', [{ name: 'ID', type: 'int' }, { name: 'Name', type: 'nvarchar', maxLength: 100 }, { name: 'Version', type: 'timestamp' }, { name: 'Upper', type: 'nvarchar', maxLength: 100, computed: true }], ['ID']);
    const stamped: TableConfig = { source: 'public.stamped', target: 'dbo.tblStamped', key: ['id'] };
    const { sink, mappings } = await open([stamped]);
    const event = mappings[0]!.mapEvent({ table: stamped.source, op: 'insert', key: { id: 1 }, row: { id: 1, name: 'a', version: 'AAAAAAAAB9E=', upper: 'A' }, position: 'p', commitTime: new Date() });
    await sink.apply({ changes: [event], deadLetters: [] });
    expect(target.rows('dbo.tblStamped')).toEqual([{ ID: 1, Name: 'a' }]);
  });

  it('writes case-only, trailing-space and accent-only edits that the column\'s collation calls equal', async () => {
    target.createTable('dbo.tblNames', [{ name: 'ID', type: 'int' }, { name: 'Name', type: 'nvarchar', maxLength: 200, collation: 'CI_AI' }, { name: 'Code', type: 'nchar', maxLength: 20 }], ['ID']);
    const names: TableConfig = { source: 'public.names', target: 'dbo.tblNames', key: ['id'] };
    const { sink, mappings } = await open([names]);
    const update = (name: string, code = 'x') => mappings[0]!.mapEvent({ table: names.source, op: 'update', key: { id: 1 }, row: { id: 1, name, code }, position: 'p', commitTime: new Date() });
    await sink.apply({ changes: [update('jose')], deadLetters: [] });
    for (const edit of ['Jose', 'Jose ', 'José']) {
      const result = await sink.apply({ changes: [update(edit)], deadLetters: [] });
      expect(result.written, edit).toBe(1);
      expect(target.rows('dbo.tblNames')[0]!.Name).toBe(edit);
    }
    expect((await sink.apply({ changes: [update('José')], deadLetters: [] })).written).toBe(0);
  });

  it('fails a value longer than its column as invalid data instead of cutting it', async () => {
    const { sink, mappings } = await open([batches]);
    const long = 'x'.repeat(600);
    const error = await sink.apply({ changes: [change(mappings[0]!, 'insert', { aligner_batch_id: 1, notes: long })], deadLetters: [] }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PermanentError);
    expect((error as PermanentError).reason).toBe('invalid-data');
    expect(target.rows('dbo.tblAlignerBatches')).toEqual([]);
  });

  it('rolls back the whole batch and its checkpoint on a constraint error, classified permanent with its table', async () => {
    const { sink, mappings } = await open([batches]);
    target.poison = 'duplicate';
    const error = await sink
      .apply({ changes: [change(mappings[0]!, 'insert', { aligner_batch_id: 1, notes: 'duplicate' })], deadLetters: [], checkpoint: { stream: 's', position: 'p9' } })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PermanentError);
    expect((error as PermanentError).reason).toBe('constraint');
    expect((error as PermanentError).context).toMatchObject({ table: 'public.aligner_batches', code: '2627' });
    expect(target.checkpoints.has('s')).toBe(false);
  });

  it('keeps dead letters in cdc_sync.dead_letters, which retry-failed reads and marks retried', async () => {
    const { sink } = await open([batches]);
    const letter = { stream: 'cloud-to-clinic', table: 'public.aligner_batches', key: { aligner_batch_id: 1 }, payload: '{"op":"insert"}', error: 'x', reason: 'constraint', position: 'p' };
    await sink.apply({ changes: [], deadLetters: [letter, { ...letter, table: 'public.aligner_notes' }] });
    const store = new MssqlDeadLetters('fake', server.connect);
    const letters = await store.open('cloud-to-clinic', 'public.aligner_batches');
    expect(letters).toEqual([{ id: '1', table: 'public.aligner_batches', payload: '{"op":"insert"}', position: 'p' }]);
    await store.markRetried(['1']);
    expect(await store.open('cloud-to-clinic')).toEqual([{ id: '2', table: 'public.aligner_notes', payload: '{"op":"insert"}', position: 'p' }]);
    await store.close();
  });

  it('deletes set-based and reports newer-wins losers', async () => {
    const newer: TableConfig = { ...batches, conflict: 'newer-wins', updatedAt: 'updated_at' };
    const { sink, mappings } = await open([newer]);
    target.rows('dbo.tblAlignerBatches').push(
      { AlignerBatchID: 1, Days: 1, UpdatedAt: '2030-01-01T00:00:00.000000' },
      { AlignerBatchID: 2, Days: 2, UpdatedAt: '2020-01-01T00:00:00.000000' },
    );
    const result = await sink.apply({
      changes: [
        change(mappings[0]!, 'update', { aligner_batch_id: 1, days: 5, updated_at: '2025-01-01T00:00:00.000000' }),
        change(mappings[0]!, 'delete', { aligner_batch_id: 2 }),
      ],
      deadLetters: [],
    });
    expect(result.conflicts).toEqual([{ table: 'public.aligner_batches', key: { AlignerBatchID: 1 } }]);
    expect(target.rows('dbo.tblAlignerBatches')).toEqual([{ AlignerBatchID: 1, Days: 1, UpdatedAt: '2030-01-01T00:00:00.000000' }]);
    expect(server.executed.filter((e) => e.name === 'sink.delete')).toHaveLength(1);
  });

  it('a key change moves the row: the old key deleted, the new one merged in; a batch applied twice ends the same', async () => {
    const { sink, mappings } = await open([batches]);
    target.rows('dbo.tblAlignerBatches').push({ AlignerBatchID: 1, Days: 3 }, { AlignerBatchID: 2, Days: 4 });
    const update: ChangeEvent = {
      table: batches.source,
      op: 'update',
      key: { aligner_batch_id: 1001 },
      row: { aligner_batch_id: 1001, days: 3 },
      before: { aligner_batch_id: 1, days: 3 },
      position: 'p',
      commitTime: new Date(),
    };
    const changes = coalesce(keyChange(update, { aligner_batch_id: 1 }).map((e) => mappings[0]!.mapEvent(e)), [batches.source]);
    await sink.apply({ changes, deadLetters: [] });
    await sink.apply({ changes, deadLetters: [] });
    const ids = target.rows('dbo.tblAlignerBatches').map((r) => r.AlignerBatchID).sort((a, b) => Number(a) - Number(b));
    expect(ids).toEqual([2, 1001]);
    expect(target.rows('dbo.tblAlignerBatches').find((r) => r.AlignerBatchID === 1001)).toMatchObject({ Days: 3 });
  });
});
