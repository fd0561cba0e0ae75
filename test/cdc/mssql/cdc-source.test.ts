import { Subject } from 'rxjs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CdcPosition } from '../../../src/cdc/mssql/cdc-position.js';
import { MssqlCdcSource } from '../../../src/cdc/mssql/cdc-source.js';
import type { SourceChunk } from '../../../src/core/change-event.js';
import { ConfigError } from '../../../src/core/errors.js';
import type { TableConfig } from '../../../src/core/mapping.js';
import { FakeCdc, lsnBuffer } from '../../support/fake-mssql/fake-cdc.js';
import { FakeSqlServer } from '../../support/fake-mssql/fake-server.js';
import { testContext } from '../../support/stream-context.js';
import { pull } from '../../support/pull.js';

let server: FakeSqlServer;
let cdc: FakeCdc;
let contexts: ReturnType<typeof testContext>[];

const PATIENTS: TableConfig = { source: 'dbo.tblPatients', target: 'public.patients' };
const NOTES: TableConfig = { source: 'dbo.tblNotes', target: 'public.notes' };

beforeEach(() => {
  server = new FakeSqlServer();
  cdc = new FakeCdc(server);
  contexts = [];
  cdc.createTable(
    'dbo',
    'tblPatients',
    [
      { name: 'PersonID', type: 'int' },
      { name: 'Name', type: 'nvarchar' },
      { name: 'Balance', type: 'decimal' },
      { name: 'Guid', type: 'uniqueidentifier' },
      { name: 'Born', type: 'datetime' },
      { name: 'Seen', type: 'datetime2' },
      { name: 'Big', type: 'bigint' },
    ],
    ['PersonID'],
  );
  cdc.createTable('dbo', 'tblNotes', [{ name: 'Code', type: 'nvarchar' }, { name: 'Text', type: 'nvarchar' }], ['Code']);
  cdc.enableTable('dbo', 'tblPatients');
  cdc.enableTable('dbo', 'tblNotes');
});

afterEach(() => {
  for (const c of contexts) c.controller.abort();
});

async function open(options: { tables?: TableConfig[]; readLimit?: number; heartbeatMs?: number; snapshot?: 'initial' | 'never' } = {}) {
  const source = new MssqlCdcSource({
    url: 'fake',
    tables: options.tables ?? [PATIENTS, NOTES],
    readLimit: options.readLimit ?? 100,
    pollIntervalMs: 1,
    idleIntervalMs: 5,
    heartbeatMs: options.heartbeatMs ?? 60_000,
    snapshot: options.snapshot ?? 'initial',
    retry: { attempts: 3, minDelayMs: 1, maxDelayMs: 5 },
    connect: server.connect,
  });
  const context = testContext('clinic');
  contexts.push(context);
  await source.open(context);
  return { source, context };
}

const patient = (id: number, name: string) => ({
  PersonID: id,
  Name: name,
  Balance: '12345678901234567890.1234567890',
  Guid: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  Born: new Date('1990-05-01T00:00:00.000Z'),
  Seen: '2024-01-02T03:04:05.1234567',
  Big: '9007199254740993',
});

describe('MssqlCdcSource', () => {
  it('leaves out of a copy page the rows changed after the copy began: their changes follow in order, so no older image comes after a newer one (DBLog)', async () => {
    for (const code of ['a', 'b', 'c', 'd']) cdc.commit([{ table: 'dbo.tblNotes', op: 'insert', row: { Code: code, Text: code } }]);
    const { source, context } = await open({ tables: [NOTES], readLimit: 2 });
    const [first] = await pull(source, null, 1);
    expect((await context.metrics.snapshotProgress.get()).values[0]?.value).toBe(0.5);
    cdc.commit([{ table: 'dbo.tblNotes', op: 'update', row: { Code: 'c', Text: 'c2' } }]);
    cdc.commit([{ table: 'dbo.tblNotes', op: 'update', row: { Code: 'c', Text: 'c3' } }]);
    const rest = await pull(source, first!.position, 3);
    expect([first!, ...rest].flatMap((c) => c.events.map((e) => [e.op, e.key.Code, e.row?.Text, e.copied ?? false]))).toEqual([
      ['insert', 'a', 'a', true],
      ['insert', 'b', 'b', true],
      ['insert', 'd', 'd', true],
      ['update', 'c', 'c2', false],
      ['update', 'c', 'c3', false],
    ]);
    // Copied rows lose to any logged change of their key in a two-way pair.
    expect(first!.events[0]!.commitTime).toEqual(new Date(0));
    // Progress: rows read of the rows the table had (sys.partitions) when its copy began; rows left out are not counted as copied.
    const metric = async (name: 'snapshotRows' | 'snapshotProgress') => (await context.metrics[name].get()).values.find((v) => v.labels.table === 'dbo.tblNotes')?.value;
    expect(await metric('snapshotRows')).toBe(3);
    expect(await metric('snapshotProgress')).toBe(1);
  });

  it('copies existing rows in key order (server collation) first, then streams from the LSN recorded before the copy', async () => {
    for (const code of ['b', 'A', 'c', 'B2']) cdc.commit([{ table: 'dbo.tblNotes', op: 'insert', row: { Code: code, Text: code } }]);
    const { source } = await open({ tables: [NOTES], readLimit: 2 });
    const chunks = await pull(source, null, 2);
    expect(chunks.flatMap((c) => c.events.map((e) => e.key.Code))).toEqual(['A', 'b', 'B2', 'c']);
    expect(chunks.every((c) => c.events.every((e) => e.op === 'insert'))).toBe(true);
    // The copy read pages by key on the server, never by comparing in JavaScript.
    const pages = server.executed.filter((e) => e.name === 'snapshot.read-page').map((e) => e.values.after);
    expect(pages).toEqual([undefined, '["b"]']); // the first page is its own statement, without @after

    cdc.commit([{ table: 'dbo.tblNotes', op: 'update', row: { Code: 'c', Text: 'changed' } }]);
    // The last, empty page closes the copy; then the change arrives.
    const next = await pull(source, chunks[1]!.position, 2);
    expect(next[0]!.events).toEqual([]);
    expect(next[1]!.events.map((e) => [e.op, e.key.Code, e.row?.Text])).toEqual([['update', 'c', 'changed']]);
  });

  it('turns rows into events in commit order with exact values as the driver returns them', async () => {
    const { source } = await open({ snapshot: 'never' });
    const lsn = cdc.commit([{ table: 'dbo.tblPatients', op: 'insert', row: patient(1, 'Ann') }], new Date('2024-03-01T10:00:00Z'));
    cdc.commit([
      { table: 'dbo.tblNotes', op: 'insert', row: { Code: 'n1', Text: 'x' } },
      { table: 'dbo.tblPatients', op: 'update', row: { PersonID: 1, Name: 'Anne' } },
    ]);
    cdc.commit([{ table: 'dbo.tblPatients', op: 'delete', key: { PersonID: 1 } }]);
    const [chunk] = await pull(source, null, 1);
    expect(chunk!.events.map((e) => [e.table, e.op, e.key])).toEqual([
      ['dbo.tblPatients', 'insert', { PersonID: 1 }],
      ['dbo.tblNotes', 'insert', { Code: 'n1' }],
      ['dbo.tblPatients', 'update', { PersonID: 1 }],
      ['dbo.tblPatients', 'delete', { PersonID: 1 }],
    ]);
    const insert = chunk!.events[0]!;
    expect(insert.row).toMatchObject({
      Balance: '12345678901234567890.1234567890',
      Guid: 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11',
      Seen: '2024-01-02T03:04:05.1234567',
      Big: '9007199254740993',
    });
    expect(insert.row!.Born).toEqual(new Date('1990-05-01T00:00:00.000Z'));
    expect(insert.commitTime).toEqual(new Date('2024-03-01T10:00:00Z'));
    expect(chunk!.events[2]!.before).toMatchObject({ Name: 'Ann' });
    expect(chunk!.events[2]!.row).toMatchObject({ Name: 'Anne' });
    expect(CdcPosition.parse(chunk!.position).lsn.toBuffer().equals(lsnBuffer(lsn + 0x200n))).toBe(true);
    expect(chunk!.caughtUp).toBe(true);
  });

  it('makes one update of a deferred update (delete + insert, same seqval) and delete-then-insert when the key changed', async () => {
    const { source } = await open({ snapshot: 'never' });
    cdc.commit([{ table: 'dbo.tblNotes', op: 'insert', row: { Code: 'k1', Text: 'a' } }]);
    cdc.commit([{ table: 'dbo.tblNotes', op: 'deferred-update', row: { Code: 'k1', Text: 'b' } }]);
    const [chunk] = await pull(source, null, 1);
    expect(chunk!.events.map((e) => [e.op, e.key.Code, e.row?.Text ?? null])).toEqual([
      ['insert', 'k1', 'a'],
      ['update', 'k1', 'b'],
    ]);
  });

  it('never reads past what the capture job has published', async () => {
    const { source } = await open({ snapshot: 'never' });
    cdc.autoPublish = false;
    cdc.commit([{ table: 'dbo.tblNotes', op: 'insert', row: { Code: 'late', Text: '' } }]);
    const demand = new Subject<void>();
    const seen: SourceChunk[] = [];
    const sub = source.chunks(null, demand).subscribe((c) => seen.push(c));
    await new Promise((r) => setTimeout(r, 50));
    expect(seen).toEqual([]);
    const reads = server.executed.filter((e) => e.name === 'cdc.read-changes');
    expect(reads.every((r) => Buffer.compare(r.values.to_lsn as Buffer, lsnBuffer(cdc.publishedLsn)) <= 0)).toBe(true);
    cdc.publish();
    await new Promise((r) => setTimeout(r, 50));
    sub.unsubscribe();
    expect(seen.flatMap((c) => c.events.map((e) => e.key.Code))).toEqual(['late']);
  });

  it('reads whole transactions, at most readLimit of them per read however large, and resumes a position taken inside one by older versions', async () => {
    const { source } = await open({ snapshot: 'never', readLimit: 1 });
    cdc.commit([1, 2, 3].map((i) => ({ table: 'dbo.tblNotes', op: 'insert' as const, row: { Code: `a${i}`, Text: '' } })));
    cdc.idle(); // the capture job's idle entry is no transaction
    cdc.commit([1, 2, 3].map((i) => ({ table: 'dbo.tblNotes', op: 'insert' as const, row: { Code: `b${i}`, Text: '' } })));
    const big = cdc.commit([1, 2, 3, 4, 5, 6, 7, 8, 9].map((i) => ({ table: 'dbo.tblNotes', op: 'insert' as const, row: { Code: `c${i}`, Text: '' } })));
    const chunks = await pull(source, null, 3);
    expect(chunks.map((c) => c.events.map((e) => e.key.Code))).toEqual([['a1', 'a2', 'a3'], ['b1', 'b2', 'b3'], ['c1', 'c2', 'c3', 'c4', 'c5', 'c6', 'c7', 'c8', 'c9']]);
    expect(chunks.every((c) => CdcPosition.parse(c.position).seqval === null)).toBe(true);

    // A checkpoint of an older version, inside the big transaction after c3: the rest of c, nothing twice.
    const c3 = cdc.instances.find((i) => i.name === 'dbo_tblNotes')!.changes.find((c) => c.row.Code === 'c3')!;
    const legacy = new CdcPosition(CdcPosition.parse(chunks[1]!.position).lsn, null, {}).with({ lsn: CdcPosition.parse(chunks[2]!.position).lsn, seqval: null });
    const inside = JSON.stringify({ ...JSON.parse(legacy.toString()), seqval: lsnBuffer(c3.seqval).toString('hex').toUpperCase() });
    const { source: again } = await open({ snapshot: 'never', readLimit: 1 });
    const [rest] = await pull(again, inside, 1);
    expect(rest!.events.map((e) => e.key.Code)).toEqual(['c4', 'c5', 'c6', 'c7', 'c8', 'c9']);
    expect(CdcPosition.parse(rest!.position).lsn.toBuffer().equals(lsnBuffer(big))).toBe(true);
  });

  it('orders a transaction by statement and keeps every row of a bulk key move logged insert-first with distinct seqvals', async () => {
    cdc.commit([
      { table: 'dbo.tblNotes', op: 'insert', row: { Code: 'k1', Text: 'one' } },
      { table: 'dbo.tblNotes', op: 'insert', row: { Code: 'k2', Text: 'two' } },
    ]);
    const { source } = await open({ tables: [NOTES], snapshot: 'never' });
    const [start] = await pull(source, null, 1);
    // UPDATE tblNotes SET Code = next code: k1 → k2, k2 → k3, in one statement.
    cdc.commit([{ table: 'dbo.tblNotes', op: 'key-update', moves: [{ from: { Code: 'k1' }, set: { Code: 'k2' } }, { from: { Code: 'k2' }, set: { Code: 'k3' } }] }]);
    const [chunk] = await pull(source, start!.position, 1);
    const target = new Map([['k1', 'one'], ['k2', 'two']]);
    for (const e of chunk!.events) {
      if (e.op === 'delete') target.delete(String(e.key.Code));
      else target.set(String(e.key.Code), String(e.row!.Text));
    }
    expect([...target].sort()).toEqual([['k2', 'one'], ['k3', 'two']]);
    expect(chunk!.events.map((e) => [e.op, e.key.Code])).toEqual([['delete', 'k1'], ['update', 'k2'], ['insert', 'k3']]);
  });

  it('turns an update that changed the key (before and after image) into a delete of the old key and an insert of the new one', async () => {
    cdc.commit([{ table: 'dbo.tblNotes', op: 'insert', row: { Code: 'old', Text: 'x' } }]);
    const { source } = await open({ tables: [NOTES], snapshot: 'never' });
    const [start] = await pull(source, null, 1);
    cdc.commit([{ table: 'dbo.tblNotes', op: 'update', key: { Code: 'old' }, row: { Code: 'new' } }]);
    const [chunk] = await pull(source, start!.position, 1);
    expect(chunk!.events.map((e) => [e.op, e.key.Code, e.row?.Text ?? null])).toEqual([['delete', 'old', null], ['insert', 'new', 'x']]);
  });

  it('keeps the changes of a table whose columns are named like CDC metadata (operation, seqval, start_lsn)', async () => {
    cdc.createTable('dbo', 'tblSteps', [{ name: 'ID', type: 'int' }, { name: 'operation', type: 'nvarchar' }, { name: 'seqval', type: 'int' }, { name: 'start_lsn', type: 'int' }], ['ID']);
    cdc.enableTable('dbo', 'tblSteps');
    const { source } = await open({ tables: [{ source: 'dbo.tblSteps', target: 'public.steps' }], snapshot: 'never' });
    cdc.commit([{ table: 'dbo.tblSteps', op: 'insert', row: { ID: 1, operation: 'scan', seqval: 7, start_lsn: 9 } }]);
    cdc.commit([{ table: 'dbo.tblSteps', op: 'update', row: { ID: 1, operation: 'print' } }]);
    const [chunk] = await pull(source, null, 1);
    expect(chunk!.events.map((e) => [e.op, e.row])).toEqual([
      ['insert', { ID: 1, operation: 'scan', seqval: 7, start_lsn: 9 }],
      ['update', { ID: 1, operation: 'print', seqval: 7, start_lsn: 9 }],
    ]);
  });

  it('reads money with its four decimals, leaves computed columns out (CDC records them as NULL) and gives commit times in UTC on a server in another zone', async () => {
    cdc.utcOffsetMinutes = 120;
    cdc.createTable('dbo', 'tblFees', [{ name: 'ID', type: 'int' }, { name: 'Fee', type: 'money' }, { name: 'Total', type: 'money', computed: true }], ['ID']);
    cdc.enableTable('dbo', 'tblFees');
    const { source } = await open({ tables: [{ source: 'dbo.tblFees', target: 'public.fees' }], snapshot: 'never' });
    cdc.commit([{ table: 'dbo.tblFees', op: 'insert', row: { ID: 1, Fee: 12.3456, Total: 24.6912 } }], new Date('2024-06-01T08:00:00Z'));
    const [chunk] = await pull(source, null, 1);
    expect(chunk!.events[0]!.row).toEqual({ ID: 1, Fee: '12.3456' });
    expect(chunk!.events[0]!.commitTime).toEqual(new Date('2024-06-01T08:00:00Z'));
  });

  it('runs without rights in msdb (or on Azure SQL Database): the Agent check is skipped and said once', async () => {
    cdc.msdbDenied = true;
    const { source, context } = await open({ tables: [NOTES], snapshot: 'never' });
    cdc.commit([{ table: 'dbo.tblNotes', op: 'insert', row: { Code: 'n', Text: '' } }]);
    const [chunk] = await pull(source, null, 1);
    expect(chunk!.events.map((e) => e.key.Code)).toEqual(['n']);
    void context;
  });

  it('refuses a server older than SQL Server 2016 SP1 or a database below compatibility level 130, saying why', async () => {
    cdc.productVersion = '13.0.1601.5';
    await expect(open()).rejects.toThrow(/source\.url: SQL Server 13\.0\.1601\.5 is too old.*2016 SP1/);
    cdc.productVersion = '15.0.2000.5';
    cdc.compatibilityLevel = 120;
    await expect(open()).rejects.toThrow(/compatibility level is 120; OPENJSON needs 130/);
  });

  it('stops a table whose changes the cleanup job removed, says how to recover, and keeps the others going', async () => {
    const { source, context } = await open({ snapshot: 'never' });
    cdc.commit([{ table: 'dbo.tblNotes', op: 'insert', row: { Code: 'n1', Text: '' } }]);
    const [first] = await pull(source, null, 1);
    // The process is down for a long time: changes happen and the cleanup job runs.
    cdc.commit([{ table: 'dbo.tblPatients', op: 'insert', row: patient(7, 'lost') }]);
    cdc.commit([{ table: 'dbo.tblNotes', op: 'insert', row: { Code: 'n2', Text: '' } }]);
    const kept = cdc.commit([{ table: 'dbo.tblNotes', op: 'insert', row: { Code: 'n3', Text: '' } }]);
    cdc.cleanup(kept, 'dbo_tblPatients');

    const { source: again, context: ctx } = await open({ snapshot: 'never' });
    const [chunk] = await pull(again, first!.position, 1);
    expect(ctx.problems.join()).toMatch(/tblPatients .*removed by the CDC cleanup job.*cdc-sync snapshot --stream clinic --table dbo\.tblPatients/);
    expect(chunk!.events.map((e) => e.key)).toEqual([{ Code: 'n2' }, { Code: 'n3' }]);
    const text = await ctx.metrics.registry.metrics();
    expect(text).toContain('cdc_sync_source_gap{stream="clinic",direction="forward",table="dbo.tblPatients"} 1');
    const stopped = CdcPosition.parse(chunk!.position);
    expect(stopped.tables['dbo.tblPatients']!.gap).toMatch(/cleanup/);
    expect(ctx.metrics.registry.getSingleMetric('cdc_sync_source_gap')).toBeDefined();

    // The way out: re-copy the table, which then streams again.
    const resnapshot = again.requestSnapshot(chunk!.position, ['dbo.tblPatients'])!;
    const { source: third } = await open({ snapshot: 'never' });
    const [copy] = await pull(third, resnapshot, 1);
    expect(copy!.events.map((e) => [e.op, e.key])).toEqual([['insert', { PersonID: 7 }]]);
    expect(CdcPosition.parse(copy!.position).tables['dbo.tblPatients']!.gap).toBeUndefined();
    cdc.commit([{ table: 'dbo.tblPatients', op: 'update', row: { PersonID: 7, Name: 'found' } }]);
    const [after] = await pull(third, copy!.position, 1);
    expect(after!.events.map((e) => [e.op, e.row?.Name])).toEqual([['update', 'found']]);
    void context;
  });

  it('copies again only the rows a --where condition holds for, then streams the table on from the copy’s LSN', async () => {
    for (const code of ['a', 'b', 'c', 'd']) cdc.commit([{ table: 'dbo.tblNotes', op: 'insert', row: { Code: code, Text: `text ${code}` } }]);
    const { source } = await open({ tables: [NOTES], readLimit: 10 });
    const [copied] = await pull(source, null, 1);
    expect(copied!.events).toHaveLength(4);
    const asked = source.requestSnapshot(copied!.position, ['dbo.tblNotes'], "Code = 'B' OR [Code] = N'd'")!;
    expect(CdcPosition.parse(asked).tables['dbo.tblNotes']!.snapshot).toMatchObject({ key: null, where: "Code = 'B' OR [Code] = N'd'" });
    const { source: reopened } = await open({ tables: [NOTES], readLimit: 10 });
    const [again] = await pull(reopened, asked, 1);
    // Text compares as the server's default collation does: 'B' holds for b.
    expect(again!.events.map((e) => [e.op, e.key.Code])).toEqual([['insert', 'b'], ['insert', 'd']]);
    const page = server.executed.filter((e) => e.name === 'snapshot.read-page').at(-1)!;
    expect(page.values.after).toBeUndefined();
    cdc.commit([{ table: 'dbo.tblNotes', op: 'update', row: { Code: 'a', Text: 'after the copy' } }]);
    const [next] = await pull(reopened, again!.position, 1);
    expect(next!.events.map((e) => [e.op, e.key.Code, e.row?.Text])).toEqual([['update', 'a', 'after the copy']]);
    expect(CdcPosition.parse(again!.position).tables['dbo.tblNotes']!.snapshot).toBeUndefined();
  });

  it('keeps the LSN of a copy still running when the copy is asked for again, so the table streams on after it without a false cleanup gap', async () => {
    // Rows exist, but the capture job has published nothing yet: the stream starts at LSN 0 and copies from the instance's start.
    cdc.autoPublish = false;
    for (const code of ['a', 'b']) cdc.commit([{ table: 'dbo.tblNotes', op: 'insert', row: { Code: code, Text: code } }]);
    const { source } = await open({ tables: [NOTES], readLimit: 1 });
    const [page] = await pull(source, null, 1);
    const copyLsn = CdcPosition.parse(page!.position).tables['dbo.tblNotes']!.snapshot!.lsn;
    expect(copyLsn).not.toBeNull();

    const again = source.requestSnapshot(page!.position, []);
    expect(CdcPosition.parse(again!).tables['dbo.tblNotes']!.snapshot).toEqual({ lsn: copyLsn, key: null });
    cdc.publish();
    cdc.commit([{ table: 'dbo.tblNotes', op: 'update', row: { Code: 'a', Text: 'changed after the copy' } }]);
    cdc.publish();
    const { source: reopened, context } = await open({ tables: [NOTES], readLimit: 1 });
    // Three copy pages (every row changed after the copy's LSN, so left out of it), then the three transactions.
    const chunks = await pull(reopened, again, 6);
    expect(context.problems).toEqual([]);
    const events = chunks.flatMap((c) => c.events).map((e) => [e.op, e.key.Code, e.row?.Text]);
    expect(events).toEqual([['insert', 'a', 'a'], ['insert', 'b', 'b'], ['update', 'a', 'changed after the copy']]);
  });

  it('moves the checkpoint on an idle database (heartbeat) so cleanup never overtakes it', async () => {
    const { source } = await open({ snapshot: 'never', heartbeatMs: 20 });
    const before = cdc.commit([{ table: 'dbo.tblNotes', op: 'insert', row: { Code: 'x', Text: '' } }]);
    const [first] = await pull(source, null, 1);
    // Other activity moves the published LSN; our tables stay idle.
    cdc.createTable('dbo', 'tblOther', [{ name: 'ID', type: 'int' }], ['ID']);
    cdc.enableTable('dbo', 'tblOther');
    const later = cdc.commit([{ table: 'dbo.tblOther', op: 'insert', row: { ID: 1 } }]);
    const [beat] = await pull(source, first!.position, 1);
    expect(beat!.events).toEqual([]);
    expect(CdcPosition.parse(beat!.position).lsn.toBuffer().equals(lsnBuffer(later))).toBe(true);
    expect(later > before).toBe(true);
  });

  it('reads the old capture instance up to the new one\'s start, then the new one with its new column', async () => {
    const { source } = await open({ tables: [NOTES], snapshot: 'never' });
    cdc.commit([{ table: 'dbo.tblNotes', op: 'insert', row: { Code: 'old', Text: 'a' } }]);
    cdc.addColumn('dbo', 'tblNotes', { name: 'Days', type: 'int' }, 'dbo_tblNotes_v2');
    cdc.commit([{ table: 'dbo.tblNotes', op: 'insert', row: { Code: 'new', Text: 'b', Days: 5 } }]);
    const { source: reopened } = await open({ tables: [NOTES], snapshot: 'never' });
    void source;
    const [chunk] = await pull(reopened, null, 1);
    expect(chunk!.events.map((e) => [e.key.Code, e.row])).toEqual([
      ['old', { Code: 'old', Text: 'a' }],
      ['new', { Code: 'new', Text: 'b', Days: 5 }],
    ]);
    const reads = server.executed.filter((e) => e.name === 'cdc.read-changes').length;
    expect(reads).toBeGreaterThanOrEqual(2);
  });

  it('crosses to a newer capture instance by the read bounds while far behind, skipping none of the other tables\' changes', async () => {
    const { source } = await open({ snapshot: 'never', readLimit: 2 });
    for (let i = 1; i <= 5; i += 1) cdc.commit([{ table: 'dbo.tblNotes', op: 'insert', row: { Code: `o${i}`, Text: '' } }]);
    cdc.addColumn('dbo', 'tblNotes', { name: 'Days', type: 'int' }, 'dbo_tblNotes_v2');
    const start = cdc.instances.find((i) => i.name === 'dbo_tblNotes_v2')!.startLsn;
    for (let i = 1; i <= 3; i += 1) {
      cdc.commit([{ table: 'dbo.tblNotes', op: 'insert', row: { Code: `n${i}`, Text: '', Days: i } }]);
      cdc.commit([{ table: 'dbo.tblPatients', op: 'insert', row: patient(i, `p${i}`) }]);
    }
    const { source: reopened } = await open({ snapshot: 'never', readLimit: 2 });
    void source;
    const chunks = await pull(reopened, null, 6);
    expect(chunks.flatMap((c) => c.events.map((e) => String(e.key.Code ?? e.key.PersonID)))).toEqual(['o1', 'o2', 'o3', 'o4', 'o5', 'n1', '1', 'n2', '2', 'n3', '3']);
    // Every read of the old instance ended before the new one's start: nothing it holds past that was read or counted.
    const reads = server.executed.filter((e) => e.name === 'cdc.read-changes');
    expect(reads.length).toBeGreaterThan(0);
    for (const read of reads) expect(Buffer.compare(read.values.after_lsn as Buffer, read.values.to_lsn as Buffer)).toBeLessThan(0);
    const byInstance = (name: string) => cdc.instances.find((i) => i.name === name)!;
    expect(byInstance('dbo_tblNotes').changes.some((c) => c.lsn >= start)).toBe(true); // the old instance still captures
  });

  it('drops whole transactions that cdc-sync itself wrote (origin marker row) and counts them', async () => {
    cdc.createTable('cdc_sync', 'origin_marker', [{ name: 'id', type: 'int' }, { name: 'stream', type: 'nvarchar' }], ['id']);
    cdc.enableTable('cdc_sync', 'origin_marker');
    cdc.commit([{ table: 'cdc_sync.origin_marker', op: 'insert', row: { id: 1, stream: 'cloud-to-clinic' } }]);
    const { source, context } = await open({ snapshot: 'never' });
    cdc.commit([
      { table: 'cdc_sync.origin_marker', op: 'update', row: { id: 1, stream: 'cloud-to-clinic' } },
      { table: 'dbo.tblNotes', op: 'insert', row: { Code: 'echo', Text: 'written by the reverse stream' } },
    ]);
    cdc.commit([{ table: 'dbo.tblNotes', op: 'insert', row: { Code: 'user', Text: 'typed at the clinic' } }]);
    const [chunk] = await pull(source, null, 1);
    expect(chunk!.events.map((e) => e.key.Code)).toEqual(['user']);
    expect(await context.metrics.registry.metrics()).toContain('cdc_sync_events_suppressed_total{stream="clinic",direction="forward",table="dbo.tblNotes",reason="origin"} 1');
  });

  it('echoes nothing of a large reverse batch (400 updates, readLimit 500), from the start or from a position inside it', async () => {
    cdc.createTable('cdc_sync', 'origin_marker', [{ name: 'id', type: 'int' }, { name: 'stream', type: 'nvarchar' }], ['id']);
    cdc.enableTable('cdc_sync', 'origin_marker');
    cdc.commit([{ table: 'cdc_sync.origin_marker', op: 'insert', row: { id: 1, stream: 'cloud-to-clinic' } }]);
    cdc.commit(Array.from({ length: 400 }, (_, i) => ({ table: 'dbo.tblNotes', op: 'insert' as const, row: { Code: `r${i}`, Text: 'clinic' } })));
    const { source, context } = await open({ tables: [NOTES], snapshot: 'never', readLimit: 500 });
    const [first] = await pull(source, null, 1);
    expect(first!.events).toHaveLength(400);
    const reverse = cdc.commit([
      { table: 'cdc_sync.origin_marker', op: 'update', row: { id: 1, stream: 'cloud-to-clinic' } },
      ...Array.from({ length: 400 }, (_, i) => ({ table: 'dbo.tblNotes', op: 'update' as const, row: { Code: `r${i}`, Text: 'portal' } })),
    ]);
    cdc.commit([{ table: 'dbo.tblNotes', op: 'insert', row: { Code: 'user', Text: 'typed at the clinic' } }]);
    const [next] = await pull(source, first!.position, 1);
    expect(next!.events.map((e) => e.key.Code)).toEqual(['user']);
    expect(await context.metrics.registry.metrics()).toContain('reason="origin"} 400');

    // A checkpoint an older version took inside the reverse transaction (after its 250th row) echoes nothing either.
    const mid = cdc.instances.find((i) => i.name === 'dbo_tblNotes')!.changes.filter((c) => c.lsn === reverse)[499]!;
    const inside = JSON.stringify({ lsn: lsnBuffer(reverse).toString('hex').toUpperCase(), seqval: lsnBuffer(mid.seqval).toString('hex').toUpperCase(), tables: JSON.parse(first!.position).tables });
    const { source: again } = await open({ tables: [NOTES], snapshot: 'never', readLimit: 500 });
    const [rest] = await pull(again, inside, 1);
    expect(rest!.events.map((e) => e.key.Code)).toEqual(['user']);
  });

  it('says clearly at start-up when CDC is not enabled for the database or a table', async () => {
    cdc.cdcEnabled = false;
    await expect(open()).rejects.toThrow(/change data capture is not enabled for this database.*sp_cdc_enable_db/);
    cdc.cdcEnabled = true;
    cdc.createTable('dbo', 'tblPlain', [{ name: 'ID', type: 'int' }], ['ID']);
    const error = await open({ tables: [{ source: 'dbo.tblPlain', target: 'x' }] }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toMatch(/tables\[0\]\.source: change data capture is not enabled for dbo\.tblPlain/);
    await expect(open({ tables: [{ source: 'dbo.nope', target: 'x' }] })).rejects.toThrow(/tables\[0\]\.source: table dbo\.nope does not exist/);
  });

  it('warns when nothing was ever published (SQL Server Agent not running)', async () => {
    const { context } = await open();
    void context;
    const fresh = new FakeSqlServer();
    const empty = new FakeCdc(fresh);
    empty.createTable('dbo', 'tblNotes', [{ name: 'Code', type: 'nvarchar' }], ['Code']);
    empty.enableTable('dbo', 'tblNotes');
    const warnings: string[] = [];
    const source = new MssqlCdcSource({
      url: 'fake', tables: [NOTES], readLimit: 10, pollIntervalMs: 1, idleIntervalMs: 5, heartbeatMs: 1000, snapshot: 'never',
      retry: { attempts: 1, minDelayMs: 1, maxDelayMs: 1 }, connect: fresh.connect,
    });
    const ctx = testContext();
    contexts.push(ctx);
    ctx.log = { ...ctx.log, warn: (m: unknown) => warnings.push(String(m)), info: () => {}, error: () => {} } as never;
    await source.open(ctx);
    expect(warnings.join()).toMatch(/SQL Server Agent/);
  });
});
