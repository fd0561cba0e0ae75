import { afterEach, describe, expect, it } from 'vitest';
import type { ChangeEvent } from '../../../src/core/change-event.js';
import { ConfigError, PermanentError } from '../../../src/core/errors.js';
import { TableMapping, type TargetTable } from '../../../src/core/mapping.js';
import { coalesce } from '../../../src/streams/operators/coalesce.js';
import { SqlServerError } from '../../support/fake-mssql/fake-server.js';
import { fakeDatabase, harness, pull, pullAndCommit, TABLES } from '../../support/queue-harness.js';

const readers = harness();
afterEach(() => readers.stop());

const patient = (id: number, name = `p${id}`) => ({ PersonID: id, Name: name, Balance: '10.50', Born: '2001-02-03T04:05:06.1234567', Photo: Buffer.from([1, 2, 3]), Active: true });

describe('MssqlQueueSource: claiming', () => {
  it('claims Pending rows of the configured tables in QueueID order, with a lease, as one chunk', async () => {
    const { server, queue } = fakeDatabase();
    queue.insert('dbo.tblPatients', patient(1));
    queue.insert('dbo.tblOther', { Id: 9 });
    queue.insert('dbo.tblLines', { OrderID: 7, LineNo: 2, Qty: 5 });
    queue.update('dbo.tblPatients', { PersonID: 1, Name: 'renamed' });
    queue.delete('dbo.tblLines', { OrderID: 7, LineNo: 2 });
    const source = await readers.open(server);
    const [chunk] = await pull(source, null, 1);
    expect(chunk!.events.map((e) => [e.sourceRef, e.table, e.op, e.key])).toEqual([
      ['1', 'dbo.tblPatients', 'insert', { PersonID: 1 }],
      ['3', 'dbo.tblLines', 'insert', { OrderID: 7, LineNo: 2 }],
      ['4', 'dbo.tblPatients', 'update', { PersonID: 1 }],
      ['5', 'dbo.tblLines', 'delete', { OrderID: 7, LineNo: 2 }],
    ]);
    expect(chunk!.events[3]!.row).toBeNull();
    expect(chunk!.events[3]!.before).toMatchObject({ Qty: 5 });
    expect(chunk!.events[0]!.commitTime).toEqual(queue.row(1).CreatedAt);
    expect(chunk!.caughtUp).toBe(true);
    expect(queue.row(1)).toMatchObject({ LockedBy: 'reader-a', Attempts: 1, Status: 'Pending' });
    expect(queue.row(1).LockedUntil!.getTime() - queue.now().getTime()).toBeGreaterThan(55_000);
    // Not configured: left alone for whoever owns it.
    expect(queue.row(2)).toMatchObject({ LockedBy: null, Attempts: 0, Status: 'Pending' });
    expect(queue.row(5).RecordID).toBe('[7,2]');
    const captured = await source.ctx.metrics.captured.get();
    expect(captured.values.find((v) => v.labels.table === 'dbo.tblLines' && v.labels.op === 'delete')?.value).toBe(1);
  });

  it('gives two readers disjoint rows and holds back a record whose earlier row another session has', async () => {
    const { server, queue } = fakeDatabase();
    for (let id = 1; id <= 6; id += 1) queue.insert('dbo.tblPatients', patient(id));
    const a = await readers.open(server, { owner: 'reader-a', readLimit: 3 });
    const b = await readers.open(server, { owner: 'reader-b', readLimit: 3 });
    const [[fromA], [fromB]] = await Promise.all([pull(a, null, 1), pull(b, null, 1)]);
    const ids = [...fromA!.events, ...fromB!.events].map((e) => Number(e.sourceRef));
    expect(new Set(ids).size).toBe(6);
    expect(fromA!.events.map((e) => e.sourceRef)).not.toEqual(fromB!.events.map((e) => e.sourceRef));
    await a.committed(fromA!.position, []);
    await b.committed(fromB!.position, []);

    const first = queue.update('dbo.tblPatients', { PersonID: 1, Name: 'v2' })!;
    const second = queue.update('dbo.tblPatients', { PersonID: 1, Name: 'v3' })!;
    const other = queue.update('dbo.tblPatients', { PersonID: 2, Name: 'v2' })!;
    queue.locked.add(first.QueueID); // another reader's claim transaction holds it right now (READPAST)
    const [blocked] = await pull(b, null, 1);
    expect(blocked!.events.map((e) => Number(e.sourceRef))).toEqual([other.QueueID]);
    queue.locked.clear();
    const [next] = await pull(b, null, 1);
    expect(next!.events.map((e) => Number(e.sourceRef))).toEqual([first.QueueID, second.QueueID]);
  });

  it('claims the rows of a reader that died again once the lease has expired', async () => {
    const { server, queue } = fakeDatabase();
    queue.insert('dbo.tblPatients', patient(1));
    queue.insert('dbo.tblPatients', patient(2));
    const dead = await readers.open(server, { owner: 'died' });
    await pull(dead, null, 1); // claimed, never committed
    const alive = await readers.open(server, { owner: 'alive', idleIntervalMs: 10 });
    const waiting = pull(alive, null, 1);
    await new Promise((r) => setTimeout(r, 100));
    expect(queue.row(1).LockedBy).toBe('died');
    queue.advance(61_000);
    const [chunk] = await waiting;
    expect(chunk!.events.map((e) => e.sourceRef)).toEqual(['1', '2']);
    expect(queue.row(1)).toMatchObject({ LockedBy: 'alive', Attempts: 2 });
    await alive.committed(chunk!.position, []);
    expect(queue.statuses()).toEqual({ 1: 'Synced', 2: 'Synced' });
  });

  it('takes its own rows back at once when it opens again, and after a stream failure only later', async () => {
    const { server, queue } = fakeDatabase();
    queue.insert('dbo.tblPatients', patient(1));
    const first = await readers.open(server);
    await pull(first, null, 1);
    const restarted = await readers.open(server, { retry: { attempts: 3, minDelayMs: 5000, maxDelayMs: 60_000 } }); // same owner: a new life of the same process
    expect(queue.row(1)).toMatchObject({ LockedBy: null, NextAttemptAt: null });
    await pull(restarted, null, 1);
    await restarted.open(restarted.ctx); // the stream failed and reopens its source
    expect(queue.row(1).LockedBy).toBeNull();
    expect(queue.row(1).NextAttemptAt!.getTime()).toBeGreaterThan(queue.now().getTime());
  });

  it('stops a read of a subscription the stream gave up on, so it orphans no claimed row', async () => {
    const { server, queue } = fakeDatabase();
    const source = await readers.open(server, { pollIntervalMs: 20_000, idleIntervalMs: 30_000 });
    void pull(source, null, 1); // waits on the empty queue ...
    await new Promise((r) => setTimeout(r, 50));
    await source.open(source.ctx); // ... when the stream fails, reopens its source and reads again
    const fresh = pull(source, null, 1);
    await new Promise((r) => setTimeout(r, 50));
    const mark = server.executed.length;
    queue.insert('dbo.tblPatients', patient(1));
    source.wake(); // wakes both reads; only the current one may claim
    const [chunk] = await fresh;
    expect(chunk!.events.map((e) => e.sourceRef)).toEqual(['1']);
    await new Promise((r) => setTimeout(r, 50));
    expect(server.executed.slice(mark).filter((s) => s.name === 'queue.claim')).toHaveLength(1);
  });

  it('keeps renewing the lease of rows handed over but not committed', async () => {
    const { server, queue } = fakeDatabase();
    queue.insert('dbo.tblPatients', patient(1));
    const source = await readers.open(server, { leaseSeconds: 0.3 });
    await pull(source, null, 1);
    const before = queue.row(1).LockedUntil!.getTime();
    await new Promise((r) => setTimeout(r, 250));
    expect(queue.row(1).LockedUntil!.getTime()).toBeGreaterThan(before);
    expect(server.executed.filter((s) => s.name === 'queue.renew').length).toBeGreaterThan(0);
  });
});

describe('MssqlQueueSource: marking', () => {
  it('marks the rows Synced after the commit, and a failed change Failed with LastError for every row of its record', async () => {
    const { server, queue } = fakeDatabase();
    queue.insert('dbo.tblPatients', patient(1));
    queue.insert('dbo.tblPatients', patient(2));
    queue.update('dbo.tblPatients', { PersonID: 1, Name: 'bad' });
    queue.insert('dbo.tblLines', { OrderID: 1, LineNo: 1, Qty: 1 });
    const source = await readers.open(server);
    await pullAndCommit(source, [{ sourceRef: '3', error: 'violates check constraint' }]);
    expect(queue.statuses()).toEqual({ 1: 'Failed', 2: 'Synced', 3: 'Failed', 4: 'Synced' });
    expect(queue.row(1).LastError).toBe('violates check constraint');
    expect(queue.row(2)).toMatchObject({ LockedBy: null, LockedUntil: null, LastError: null });
  });

  it('marks the rows a stored checkpoint covers Synced at the next start when the process died before marking them: they are not applied again, so no older image comes back', async () => {
    const { server, queue } = fakeDatabase();
    queue.insert('dbo.tblPatients', patient(1, 'a'));
    queue.update('dbo.tblPatients', { PersonID: 1, Name: 'b' });
    const first = await readers.open(server);
    // The sink commits the chunk with its checkpoint; the process dies before `committed` marks the rows.
    const [applied] = await pull(first, null, 1);
    const restarted = await readers.open(server);
    queue.update('dbo.tblPatients', { PersonID: 1, Name: 'c' });
    const [next] = await pull(restarted, applied!.position, 1);
    expect(next!.events.map((e) => [e.sourceRef, e.row?.Name])).toEqual([['3', 'c']]);
    expect(queue.statuses()).toMatchObject({ 1: 'Synced', 2: 'Synced' });
  });

  it('collapses several rows of one record in a chunk to the newest change and marks all of them Synced', async () => {
    const { server, queue } = fakeDatabase();
    queue.insert('dbo.tblPatients', patient(1, 'a'));
    queue.update('dbo.tblPatients', { PersonID: 1, Name: 'b' });
    queue.update('dbo.tblPatients', { PersonID: 1, Name: 'c' });
    const source = await readers.open(server);
    const chunk = await pullAndCommit(source);
    const kept = coalesce(chunk.events, TABLES.map((t) => t.source));
    expect(kept.map((e) => [e.sourceRef, e.row?.Name])).toEqual([['3', 'c']]);
    expect(queue.statuses()).toEqual({ 1: 'Synced', 2: 'Synced', 3: 'Synced' });
  });

  it('fails a row claimed maxAttempts times instead of applying it again', async () => {
    const { server, queue } = fakeDatabase();
    const json = '{"PersonID":1,"Name":"x"}';
    queue.enqueue({ TableName: 'dbo.tblPatients', Operation: 'UPDATE', RecordID: '1', JsonData: json, Attempts: 10, LastError: 'Timeout expired' });
    queue.enqueue({ TableName: 'dbo.tblPatients', Operation: 'UPDATE', RecordID: '2', JsonData: '{"PersonID":2}', Attempts: 9 });
    const source = await readers.open(server, { maxAttempts: 10 });
    const [chunk] = await pull(source, null, 1);
    expect(chunk!.events.map((e) => e.sourceRef)).toEqual(['2']);
    expect(chunk!.rejected).toHaveLength(1);
    expect(chunk!.rejected[0]).toMatchObject({ sourceRef: '1', table: 'dbo.tblPatients', payload: json });
    expect(chunk!.rejected[0]!.error.message).toBe('SyncQueue row 1: gave up after 10 attempts; last error: Timeout expired');
    await source.committed(chunk!.position, [{ sourceRef: '1', table: 'dbo.tblPatients', error: chunk!.rejected[0]!.error.message }]);
    expect(queue.statuses()).toEqual({ 1: 'Failed', 2: 'Synced' });
    expect(queue.row(1).LastError).toContain('gave up after 10 attempts');
  });

  it('rejects a row with malformed JSON alone; its neighbours are applied', async () => {
    const { server, queue } = fakeDatabase();
    queue.insert('dbo.tblPatients', patient(1));
    queue.enqueue({ TableName: 'dbo.tblPatients', Operation: 'INSERT', RecordID: '2', JsonData: '{"PersonID": 2, "Name": ' });
    queue.insert('dbo.tblPatients', patient(3));
    const source = await readers.open(server);
    const [chunk] = await pull(source, null, 1);
    expect(chunk!.events.map((e) => e.key.PersonID)).toEqual([1, 3]);
    const [bad] = chunk!.rejected;
    expect(bad).toMatchObject({ sourceRef: '2', payload: '{"PersonID": 2, "Name": ' });
    expect(bad!.error).toBeInstanceOf(PermanentError);
    expect((bad!.error as PermanentError).reason).toBe('malformed');
    await source.committed(chunk!.position, [{ sourceRef: '2', table: bad!.table, error: bad!.error.message }]);
    expect(queue.statuses()).toEqual({ 1: 'Synced', 2: 'Failed', 3: 'Synced' });
    expect(queue.row(2).LastError).toMatch(/malformed JsonData/);
  });
});

describe('MssqlQueueSource: values', () => {
  it('keeps a decimal beyond 2^53 exact', async () => {
    const { server, queue } = fakeDatabase();
    queue.insert('dbo.tblPatients', { ...patient(1), Balance: '12345678901234567890.12' });
    const [chunk] = await pull(await readers.open(server), null, 1);
    expect(queue.row(1).JsonData).toContain('"Balance":12345678901234567890.12');
    expect(chunk!.events[0]!.row!.Balance).toBe('12345678901234567890.12');
  });

  it("maps SQL Server's JSON forms (datetime2 text, base64 binary, bit) to the sink's types", async () => {
    const { server, queue } = fakeDatabase();
    queue.insert('dbo.tblPatients', patient(1));
    // The older triggers: target name, no INCLUDE_NULL_VALUES (a NULL column is simply missing).
    queue.enqueue({ TableName: 'patients', Operation: 'UPDATE', RecordID: '2', JsonData: '{"PersonID":2,"Active":false}' });
    const [chunk] = await pull(await readers.open(server), null, 1);
    const target: TargetTable = {
      name: { schema: 'public', name: 'patients' },
      columns: [
        { name: 'person_id', type: 'integer', generated: false },
        { name: 'name', type: 'text', generated: false },
        { name: 'balance', type: 'decimal', generated: false },
        { name: 'born', type: 'timestamp', generated: false },
        { name: 'photo', type: 'binary', generated: false },
        { name: 'active', type: 'boolean', generated: false },
      ],
      primaryKey: ['person_id'],
      uniqueKeys: [['person_id']],
    };
    const mapping = new TableMapping(TABLES[0]!, target, 'tables[0]', () => undefined);
    const [first, second] = chunk!.events.map((e: ChangeEvent) => mapping.mapEvent(e));
    expect(first!.row).toEqual({ person_id: 1, name: 'p1', balance: 10.5, born: '2001-02-03T04:05:06.1234567', photo: Buffer.from([1, 2, 3]), active: true });
    expect(second!.table).toBe('dbo.tblPatients');
    expect(second!.row).toEqual({ person_id: 2, name: null, balance: null, born: null, photo: null, active: false });
  });
});

describe('MssqlQueueSource: polling, snapshot, housekeeping', () => {
  it('reads at once when woken instead of waiting for the idle interval', async () => {
    const { server, queue } = fakeDatabase();
    const source = await readers.open(server, { pollIntervalMs: 20_000, idleIntervalMs: 30_000 });
    const started = Date.now();
    const arriving = pull(source, null, 1);
    await new Promise((r) => setTimeout(r, 100));
    queue.insert('dbo.tblPatients', patient(1));
    source.wake();
    const [chunk] = await arriving;
    expect(chunk!.events).toHaveLength(1);
    expect(Date.now() - started).toBeLessThan(2000);
    expect(server.executed.filter((s) => s.name === 'queue.claim')).toHaveLength(2);
  });

  it('backs off to idleIntervalMs on an empty queue: one claim per poll and nothing else', async () => {
    const { server } = fakeDatabase();
    const source = await readers.open(server, { idleIntervalMs: 200 });
    void pull(source, null, 1);
    await new Promise((r) => setTimeout(r, 700)); // 50, 100, 200, 200 … ms
    const mark = server.executed.length;
    await new Promise((r) => setTimeout(r, 1000));
    const statements = server.executed.slice(mark).map((s) => s.name);
    expect(statements.length).toBeGreaterThanOrEqual(4);
    expect(statements.length).toBeLessThanOrEqual(6);
    expect(new Set(statements)).toEqual(new Set(['queue.claim']));
  });

  it('copies the tables in key order first, resumes a copy from its checkpoint, then processes the queue', async () => {
    const { server, queue } = fakeDatabase();
    for (const id of [3, 1, 2]) queue.insert('dbo.tblPatients', patient(id));
    queue.insert('dbo.tblLines', { OrderID: 1, LineNo: 1, Qty: 4 });
    for (const r of queue.rows) r.Status = 'Synced';
    queue.insert('dbo.tblPatients', patient(9));
    queue.delete('dbo.tblPatients', { PersonID: 9 });
    const source = await readers.open(server, { snapshot: 'initial', readLimit: 2 });
    const chunks = await pull(source, null, 4);
    expect(chunks.map((c) => c.events.map((e) => [e.table, e.op, e.sourceRef ?? null, Object.values(e.key).join('/')]))).toEqual([
      [['dbo.tblPatients', 'insert', null, '1'], ['dbo.tblPatients', 'insert', null, '2']],
      [['dbo.tblPatients', 'insert', null, '3']],
      [['dbo.tblLines', 'insert', null, '1/1']],
      [['dbo.tblPatients', 'insert', '5', '9'], ['dbo.tblPatients', 'delete', '6', '9']], // the queue after the copy
    ]);
    expect(chunks[0]!.events[0]!.row).toMatchObject({ Balance: '10.50', Active: true }); // snapshot rows as the driver returns them
    expect(JSON.parse(chunks[0]!.position)).toEqual({ seq: 1, snapshot: { 'dbo.tblPatients': [2], 'dbo.tblLines': null } });
    const claims = server.executed.findIndex((s) => s.name === 'queue.claim');
    expect(server.executed.slice(0, claims).filter((s) => s.name === 'snapshot.read-page')).toHaveLength(3);
    const metric = async (name: 'snapshotRows' | 'snapshotProgress', table: string) => (await source.ctx.metrics[name].get()).values.find((v) => v.labels.table === table)?.value;
    expect(await metric('snapshotRows', 'dbo.tblPatients')).toBe(3);
    expect(await metric('snapshotProgress', 'dbo.tblPatients')).toBe(1);
    expect(await metric('snapshotRows', 'dbo.tblLines')).toBe(1);
    // A restart after the first page continues with key 3: nothing copied twice.
    const [resumed] = await pull(await readers.open(server, { snapshot: 'initial', readLimit: 2, owner: 'b' }), chunks[0]!.position, 1);
    expect(resumed!.events.map((e) => e.key.PersonID)).toEqual([3]);
  });

  it('leaves out of a copy page every row whose record still has a Pending queue row: the queue brings its changes in order, so no older image follows a newer one (DBLog)', async () => {
    const { server, queue } = fakeDatabase();
    for (const id of [1, 2, 3]) queue.insert('dbo.tblPatients', patient(id));
    queue.insert('dbo.tblLines', { OrderID: 1, LineNo: 1, Qty: 4 });
    queue.insert('dbo.tblLines', { OrderID: 1, LineNo: 2, Qty: 5 });
    for (const r of queue.rows) r.Status = 'Synced'; // an earlier process synced these
    queue.update('dbo.tblPatients', { PersonID: 2, Name: 'v2' });
    queue.update('dbo.tblPatients', { PersonID: 2, Name: 'v3' });
    queue.update('dbo.tblLines', { OrderID: 1, LineNo: 2, Qty: 6 });
    // A queue row of an older script's trigger names the table by its target.
    queue.enqueue({ TableName: 'patients', RecordID: '3', Operation: 'UPDATE', JsonData: queue.forJson('dbo.tblPatients', { ...queue.rowsOf('dbo.tblPatients')[2]!, Name: 'old' }) });
    const source = await readers.open(server, { snapshot: 'initial', readLimit: 10 });
    const chunks = await pull(source, null, 3);
    expect(chunks.map((c) => c.events.map((e) => [e.sourceRef ?? 'copy', Object.values(e.key).join('/'), e.row?.Name ?? e.row?.Qty]))).toEqual([
      [['copy', '1', 'p1']],
      [['copy', '1/1', 4]],
      [
        ['6', '2', 'v2'],
        ['7', '2', 'v3'],
        ['8', '1/2', 6],
        ['9', '3', 'old'],
      ],
    ]);
    // The copy's rows left out still count as read: the next page starts after them.
    expect(JSON.parse(chunks[0]!.position)).toMatchObject({ snapshot: { 'dbo.tblLines': null } });
  });

  it("copies the tables in the order the stream applies them (parents first by the target's foreign keys), not the configuration's", async () => {
    const { server, queue } = fakeDatabase();
    queue.insert('dbo.tblPatients', patient(1));
    queue.insert('dbo.tblLines', { OrderID: 1, LineNo: 1, Qty: 4 });
    for (const r of queue.rows) r.Status = 'Synced';
    const source = await readers.open(server, { snapshot: 'initial', readLimit: 2 });
    // A child copied first could not wait for its parent: a queue source's batches are marked done.
    source.order(['dbo.tblLines', 'dbo.tblPatients']);
    const chunks = await pull(source, null, 2);
    expect(chunks.map((c) => c.events.map((e) => e.table))).toEqual([['dbo.tblLines'], ['dbo.tblPatients']]);
    expect(JSON.parse(source.requestSnapshot('{"seq":7}', [])!)).toEqual({ seq: 7, snapshot: { 'dbo.tblLines': null, 'dbo.tblPatients': null } });
  });

  it('copies again only the rows a --where condition holds for, the condition in the page statement, kept in the position across a restart', async () => {
    const { server, queue } = fakeDatabase();
    for (const id of [1, 2, 3, 4, 5, 6]) queue.insert('dbo.tblPatients', patient(id));
    for (const r of queue.rows) r.Status = 'Synced';
    const source = await readers.open(server, { readLimit: 2 });
    const position = source.requestSnapshot('{"seq":7}', ['dbo.tblPatients'], '[PersonID] % 2 = 0 OR PersonID = 1')!;
    expect(JSON.parse(position)).toEqual({ seq: 7, snapshot: { 'dbo.tblPatients': null }, where: { 'dbo.tblPatients': '[PersonID] % 2 = 0 OR PersonID = 1' } });
    const [first] = await pull(source, position, 1);
    expect(first!.events.map((e) => e.key.PersonID)).toEqual([1, 2]);
    const pages = server.executed.filter((s) => s.name === 'snapshot.read-page');
    expect(pages).toHaveLength(1);
    // A restart goes on with the condition; the copy ends, and with it the condition.
    const chunks = await pull(await readers.open(server, { readLimit: 2, owner: 'b' }), first!.position, 2);
    expect(chunks.flatMap((c) => c.events.map((e) => e.key.PersonID))).toEqual([4, 6]);
    expect(JSON.parse(chunks.at(-1)!.position)).toEqual({ seq: 10 });
  });

  it('asks for a new copy of some tables through requestSnapshot', async () => {
    const { server } = fakeDatabase();
    const source = await readers.open(server);
    const position = source.requestSnapshot('{"seq":41}', ['dbo.tblLines']);
    expect(JSON.parse(position!)).toEqual({ seq: 41, snapshot: { 'dbo.tblLines': null } });
    expect(() => source.requestSnapshot(null, ['dbo.nope'])).toThrow(ConfigError);
  });

  it('purges Synced rows older than the retention and keeps Pending, Failed and recent ones', async () => {
    const { server, queue } = fakeDatabase();
    const old = new Date(queue.now().getTime() - 73 * 3_600_000);
    queue.enqueue({ TableName: 'x', Operation: 'INSERT', Status: 'Synced', CreatedAt: old });
    queue.enqueue({ TableName: 'x', Operation: 'INSERT', Status: 'Failed', CreatedAt: old });
    queue.enqueue({ TableName: 'x', Operation: 'INSERT', Status: 'Synced' });
    queue.enqueue({ TableName: 'dbo.tblPatients', Operation: 'INSERT', JsonData: '{"PersonID":1}', CreatedAt: old });
    const source = await readers.open(server, { purgeIntervalMs: 60_000 });
    await pull(source, null, 1);
    expect(queue.rows.map((r) => r.QueueID)).toEqual([2, 3, 4]);
    expect(server.executed.filter((s) => s.name === 'queue.purge').map((s) => s.values)).toEqual([{ limit: 1000, hours: 72 }]);
  });

  it('reads an older queue as it is: varchar TableName compared with varchar parameters, GETDATE() CreatedAt as UTC and purged by local time', async () => {
    const { server, queue } = fakeDatabase();
    queue.tableNameType = 'varchar';
    queue.createdAtDefault = '(getdate())';
    queue.utcOffsetMinutes = 180;
    const inserted = queue.insert('dbo.tblPatients', patient(1))!;
    const old = new Date(queue.localNow().getTime() - 73 * 3_600_000);
    queue.enqueue({ TableName: 'x', Operation: 'INSERT', Status: 'Synced', CreatedAt: old });
    queue.enqueue({ TableName: 'x', Operation: 'INSERT', Status: 'Synced', CreatedAt: new Date(queue.localNow().getTime() - 71 * 3_600_000) });
    const source = await readers.open(server, { purgeIntervalMs: 60_000 });
    const [chunk] = await pull(source, null, 1);
    expect(Math.abs(chunk!.events[0]!.commitTime.getTime() - (inserted.CreatedAt.getTime() - 180 * 60_000))).toBeLessThan(1000);
    expect(Math.abs(chunk!.events[0]!.commitTime.getTime() - Date.now())).toBeLessThan(60_000);
    const claims = server.executed.filter((s) => s.name === 'queue.claim');
    expect(claims.length).toBeGreaterThan(0);
    expect(claims.every((c) => c.types.t0 === 'varchar')).toBe(true);
    // The row 73 local hours old goes, the one 71 hours old stays.
    expect(queue.rows.filter((r) => r.TableName === 'x')).toHaveLength(1);
  });

  it('retries a deadlock, reports the queue depth and the connection', async () => {
    const { server, queue } = fakeDatabase();
    for (let id = 1; id <= 3; id += 1) queue.insert('dbo.tblPatients', patient(id));
    const source = await readers.open(server, { readLimit: 2 });
    server.failures.push({ name: 'queue.claim', error: new SqlServerError('Transaction was deadlocked', 1205) });
    const [chunk] = await pull(source, null, 1);
    expect(chunk!.events).toHaveLength(2);
    expect(chunk!.caughtUp).toBe(false);
    const metrics = source.ctx.metrics;
    expect((await metrics.retries.get()).values[0]!.value).toBe(1);
    expect((await metrics.pending.get()).values[0]!.value).toBe(3);
    expect(source.ctx.connected.source).toBe(true);
  });

  it('refuses a missing queue, a queue without lease columns, a missing table or key column', async () => {
    const cases: [(q: ReturnType<typeof fakeDatabase>['queue']) => void, object, RegExp][] = [
      [(q) => (q.exists = false), {}, /source\.queueTable: dbo\.SyncQueue does not exist.*init-sql/],
      [(q) => (q.leaseColumns = false), {}, /lacks the lease columns/],
      [() => undefined, { tables: [{ source: 'dbo.nope', target: 'x' }] }, /tables\[0\]\.source: table dbo\.nope does not exist/],
      [() => undefined, { tables: [{ source: 'dbo.tblPatients', target: 'x', key: ['Nope'] }] }, /tables\[0\]\.key\[0\]: column Nope does not exist/],
    ];
    for (const [prepare, options, message] of cases) {
      const { server, queue } = fakeDatabase();
      prepare(queue);
      const error = await readers.open(server, options).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as Error).message).toMatch(message);
    }
  });
});
