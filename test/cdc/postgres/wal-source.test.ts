import { Subject, firstValueFrom, takeWhile, toArray, tap, timeout } from 'rxjs';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { WalSource } from '../../../src/cdc/postgres/wal-source.js';
import { MARKER_TABLE_SQL } from '../../../src/cdc/postgres/wal-setup.js';
import type { ChangeEvent, SourceChunk } from '../../../src/core/change-event.js';
import { ConfigError } from '../../../src/core/errors.js';
import { JsonText } from '../../../src/core/json.js';
import type { TableConfig } from '../../../src/core/mapping.js';
import { PostgresSink } from '../../../src/sinks/postgres/postgres-sink.js';
import { createTestDatabase, type TestDatabase } from '../../support/test-database.js';
import { testContext } from '../../support/stream-context.js';
import { waitFor } from '../../support/cli.js';
import { follow } from '../../support/pull.js';

let db: TestDatabase;
let slotCounter = 0;
const sources: WalSource[] = [];
const contexts: ReturnType<typeof testContext>[] = [];
const TABLES: TableConfig[] = [{ source: 'items', target: 'items' }];

beforeAll(async () => {
  db = await createTestDatabase('wal');
  await db.query(`CREATE TABLE items (id bigint PRIMARY KEY, name text, amount numeric(40,10), big text, flag boolean, n int)`);
  await db.query(`CREATE TABLE full_items (id int PRIMARY KEY, name text)`);
  await db.query(`ALTER TABLE full_items REPLICA IDENTITY FULL`);
  await db.query(MARKER_TABLE_SQL);
});

afterAll(async () => {
  await db.drop();
});

let slot = '';
beforeEach(async () => {
  slotCounter += 1;
  slot = `wal_test_${slotCounter}`;
  await db.query('TRUNCATE items, full_items');
});

afterEach(async () => {
  for (const c of contexts.splice(0)) c.controller.abort();
  await Promise.all(sources.splice(0).map((s) => s.close()));
  // The cluster has max_replication_slots for every file: a test's slot would hold one for good.
  await waitFor(async () => (await db.query(`SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND active`, [slot])).length === 0, 5000);
  await db.query(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, [slot]);
});

/** Pulls chunks (demanding the next as each arrives) until `done` holds for all events so far. */
async function pullUntil(source: WalSource, from: string | null, done: (events: ChangeEvent[]) => boolean): Promise<SourceChunk[]> {
  const demand = new Subject<void>();
  const chunks: SourceChunk[] = [];
  let failed: unknown;
  const subscription = source.chunks(from, demand).subscribe({
    next: (c) => {
      chunks.push(c);
      setTimeout(() => demand.next(), 0);
    },
    error: (error: unknown) => (failed = error),
  });
  try {
    await waitFor(() => failed !== undefined || done(chunks.flatMap((c) => c.events)), 15_000, () => JSON.stringify(chunks.map((c) => [c.position, c.events.map((e) => `${e.copied ? 'copy' : e.op} ${JSON.stringify(e.key)}`)])));
  } finally {
    subscription.unsubscribe();
  }
  if (failed) throw failed;
  return chunks;
}

async function openSource(
  options: {
    tables?: TableConfig[];
    readLimit?: number;
    truncate?: 'apply' | 'dead-letter' | 'ignore';
    statusIntervalMs?: number;
    snapshot?: 'initial' | 'never';
    url?: string;
    holdMs?: number;
    bufferSize?: number;
    bufferBytes?: number;
  } = {},
) {
  const source = new WalSource({
    url: options.url ?? db.url,
    tables: options.tables ?? TABLES,
    slot,
    publication: slot,
    truncate: options.truncate ?? 'dead-letter',
    snapshot: options.snapshot ?? 'never',
    readLimit: options.readLimit ?? 100,
    bufferSize: options.bufferSize ?? 1000,
    bufferBytes: options.bufferBytes ?? 8 * 1024 * 1024,
    statusIntervalMs: options.statusIntervalMs ?? 200,
    retry: { attempts: 3, minDelayMs: 20, maxDelayMs: 100 },
    ...(options.holdMs !== undefined ? { holdMs: options.holdMs } : {}),
  });
  const context = testContext();
  sources.push(source);
  contexts.push(context);
  await source.open(context);
  return { source, context };
}

/**
 * Pulls chunks until `n` transactions came (a chunk holds one or several whole
 * transactions; split back by position), asking for the next after each.
 */
async function pull(source: WalSource, from: string | null, n: number): Promise<SourceChunk[]> {
  const demand = new Subject<void>();
  let seen = 0;
  const chunks = await firstValueFrom(
    source.chunks(from, demand).pipe(
      tap((c) => (seen += transactions(c).length)),
      takeWhile(() => seen < n, true),
      tap(() => setTimeout(() => demand.next(), 0)),
      toArray(),
      timeout(15_000),
    ),
  );
  return chunks.flatMap(transactions);
}

/** A chunk per transaction: its events carry their commit's position. */
function transactions(chunk: SourceChunk): SourceChunk[] {
  const byPosition = new Map<string, SourceChunk>();
  const entry = (position: string) => {
    let tx = byPosition.get(position);
    if (!tx) byPosition.set(position, (tx = { events: [], rejected: [], position, caughtUp: chunk.caughtUp }));
    return tx;
  };
  for (const e of chunk.events) entry(e.position).events.push(e);
  for (const r of chunk.rejected) entry(r.position).rejected.push(r);
  return [...byPosition.values()];
}

describe('postgres-wal source', () => {
  it('connects for replication while it opens, and streams on that connection: one walsender, none left by a close before streaming', async () => {
    const walsenders = async () =>
      (await db.query<{ pid: number }>(`SELECT pid FROM pg_stat_activity WHERE backend_type = 'walsender' AND application_name = 'cdc-sync-wal' AND datname = current_database()`)).map((r) => r.pid);
    const { source } = await openSource();
    // Opened: the replication connection is made (or being made) before anything asks for chunks.
    await waitFor(async () => (await walsenders()).length === 1, 5000);
    const [ahead] = await walsenders();
    await db.query(`INSERT INTO items (id, name) VALUES (1, 'a')`);
    const streaming = follow(source, null);
    try {
      await waitFor(() => streaming.chunks.some((c) => c.events.length > 0), 10_000);
      expect(await walsenders()).toEqual([ahead]);
    } finally {
      streaming.stop();
    }

    await waitFor(async () => (await walsenders()).length === 0, 5000);

    const { source: unused } = await openSource();
    await waitFor(async () => (await walsenders()).length === 1, 5000);
    await unused.close();
    await waitFor(async () => (await walsenders()).length === 0, 5000);
  });

  it('emits each transaction whole, in commit order, with keys, images and the commit end LSN as position', async () => {
    const { source, context } = await openSource();
    await db.query(`INSERT INTO items (id, name, amount, flag, n) VALUES (1, 'a', 1.5, true, 7), (2, 'b', NULL, false, 8)`);
    await db.query(`UPDATE items SET name = 'a2' WHERE id = 1`);
    await db.query(`DELETE FROM items WHERE id = 2`);
    const chunks = await pull(source, null, 3);
    expect(chunks.map((c) => c.events.map((e) => e.op))).toEqual([['insert', 'insert'], ['update'], ['delete']]);
    const [insert] = chunks[0]!.events;
    expect(insert).toMatchObject({ table: 'items', key: { id: '1' }, row: { id: '1', name: 'a', amount: '1.5000000000', big: null, flag: true, n: 7 } });
    expect(chunks[1]!.events[0]).toMatchObject({ key: { id: '1' }, row: { name: 'a2' } });
    expect(chunks[2]!.events[0]).toMatchObject({ op: 'delete', key: { id: '2' }, row: null });
    const positions = chunks.map((c) => c.position);
    expect(positions.every((p) => /^[0-9A-F]+\/[0-9A-F]+$/.test(p))).toBe(true);
    expect(new Set(positions).size).toBe(3);
    expect(await context.metrics.captured.get().then((m) => m.values.reduce((s, v) => s + v.value, 0))).toBe(4);
    // The buffer's size is shown next to its fill (cdc_sync_buffer_capacity, cdc_sync_buffer_events).
    expect(await context.metrics.bufferCapacity.get().then((m) => m.values.map((v) => v.value))).toEqual([1000]);
  });

  it('leaves an unchanged TOAST column out of the update row, so the sink never overwrites it', async () => {
    const big = 'x'.repeat(20_000) + Math.random().toString(36).repeat(2000); // compressed and stored out of line
    await db.query(`ALTER TABLE items ALTER COLUMN big SET STORAGE EXTERNAL`);
    const { source } = await openSource();
    await db.query(`INSERT INTO items (id, name, big) VALUES (10, 'toast', $1)`, [big]);
    await db.query(`UPDATE items SET name = 'toast2' WHERE id = 10`);
    const chunks = await pull(source, null, 2);
    expect(chunks[0]!.events[0]!.row!.big).toBe(big);
    const update = chunks[1]!.events[0]!;
    expect(update.row).toEqual({ id: '10', name: 'toast2', amount: null, flag: null, n: null });
    expect('big' in update.row!).toBe(false);
  });

  it('gives the full old image under REPLICA IDENTITY FULL and the old key when a key changes', async () => {
    const { source } = await openSource({ tables: [{ source: 'full_items', target: 'full_items' }, ...TABLES] });
    await db.query(`INSERT INTO full_items VALUES (1, 'old')`);
    await db.query(`UPDATE full_items SET name = 'new' WHERE id = 1`);
    await db.query(`INSERT INTO items (id, name) VALUES (5, 'k')`);
    await db.query(`UPDATE items SET id = 6 WHERE id = 5`);
    const chunks = await pull(source, null, 4);
    expect(chunks[1]!.events[0]).toMatchObject({ op: 'update', before: { id: 1, name: 'old' }, row: { id: 1, name: 'new' } });
    expect(chunks[3]!.events.map((e) => [e.op, e.key])).toEqual([
      ['delete', { id: '5' }],
      ['insert', { id: '6' }],
    ]);
  });

  it('a key change moves the row: a delete of the old key, then an insert of the new key, in its transaction, counted once as an update', async () => {
    await db.query(`INSERT INTO items (id, name, n) VALUES (1, 'a', 7), (2, 'b', 8)`);
    const { source, context } = await openSource();
    await db.query(`UPDATE items SET id = id + 1000 WHERE id = 1`);
    await db.query(`UPDATE items SET name = 'b2' WHERE id = 2`);
    const chunks = await pull(source, null, 2);
    expect(chunks.map((c) => c.events.map((e) => [e.op, e.key]))).toEqual([
      [
        ['delete', { id: '1' }],
        ['insert', { id: '1001' }],
      ],
      [['update', { id: '2' }]],
    ]);
    const [moved, arrived] = chunks[0]!.events as [ChangeEvent, ChangeEvent];
    expect(moved.before).toEqual({ id: '1' }); // the old key ('K'): REPLICA IDENTITY DEFAULT logs no more
    expect(arrived.row).toEqual({ id: '1001', name: 'a', amount: null, big: null, flag: null, n: 7 });
    expect(arrived.position).toBe(moved.position);
    expect(arrived.commitTime).toEqual(moved.commitTime);
    const captured = (await context.metrics.captured.get()).values.map((v) => [v.labels.op, v.value]);
    expect(Object.fromEntries(captured)).toEqual({ update: 2 });
  });

  it('a key change keeps an unchanged TOAST value under REPLICA IDENTITY FULL (old image) and dead-letters its loss under DEFAULT', async () => {
    const big = 'y'.repeat(20_000) + Math.random().toString(36).repeat(2000); // stored out of line
    await db.query(`CREATE TABLE IF NOT EXISTS full_big (id int PRIMARY KEY, name text, big text)`);
    await db.query(`ALTER TABLE full_big REPLICA IDENTITY FULL`);
    await db.query(`ALTER TABLE full_big ALTER COLUMN big SET STORAGE EXTERNAL`);
    await db.query(`ALTER TABLE items ALTER COLUMN big SET STORAGE EXTERNAL`);
    await db.query(`TRUNCATE full_big`);
    await db.query(`INSERT INTO full_big VALUES (1, 'f', $1)`, [big]);
    await db.query(`INSERT INTO items (id, name, big) VALUES (1, 'd', $1)`, [big]);
    const { source } = await openSource({ tables: [{ source: 'full_big', target: 'full_big' }, ...TABLES] });
    await db.query(`UPDATE full_big SET id = id + 1000 WHERE id = 1`);
    await db.query(`UPDATE items SET id = id + 1000 WHERE id = 1`);
    const [full, keyOnly] = await pull(source, null, 2);
    expect(full!.events.map((e) => [e.op, e.key])).toEqual([
      ['delete', { id: 1 }],
      ['insert', { id: 1001 }],
    ]);
    expect(full!.events[1]!.row).toEqual({ id: 1001, name: 'f', big });
    expect(full!.rejected).toEqual([]);
    // Under DEFAULT the value is in neither tuple: the row moves without it, and a dead letter says so.
    expect(keyOnly!.events.map((e) => [e.op, e.key])).toEqual([
      ['delete', { id: '1' }],
      ['insert', { id: '1001' }],
    ]);
    expect('big' in keyOnly!.events[1]!.row!).toBe(false);
    expect(keyOnly!.rejected).toHaveLength(1);
    expect(keyOnly!.rejected[0]).toMatchObject({ table: 'items', key: { id: '1001' }, position: keyOnly!.position });
    expect(keyOnly!.rejected[0]!.error.message).toMatch(/key change of public\.items .* TOAST value of big: under REPLICA IDENTITY DEFAULT/);
    expect(JSON.parse(keyOnly!.rejected[0]!.payload)).toEqual({ keyChange: 'public.items', key: { id: '1001' }, missing: ['big'] });
  });

  it('counts and logs once the changes of a published table the stream does not capture (a publication FOR ALL TABLES)', async () => {
    await db.query(`CREATE PUBLICATION ${slot} FOR ALL TABLES`);
    const { source, context } = await openSource();
    await db.query(`INSERT INTO full_items VALUES (1, 'x'), (2, 'y')`);
    await db.query(`INSERT INTO items (id, name) VALUES (1, 'a')`);
    const chunks = await pull(source, null, 1);
    expect(chunks.flatMap((c) => c.events.map((e) => e.table))).toEqual(['items']);
    const suppressed = (await context.metrics.suppressed.get()).values.find((v) => v.labels.table === 'public.full_items' && v.labels.reason === 'unknown-table');
    expect(suppressed?.value).toBe(2);
    await db.query(`DROP PUBLICATION ${slot}`);
  });

  it('refuses, as every source type does, a configured key, column or excluded column that the table does not have', async () => {
    const cases: [TableConfig, RegExp][] = [
      [{ source: 'items', target: 'x', key: ['missing'] }, /tables\[0\]\.key\[0\]: column missing does not exist in items/],
      [{ source: 'items', target: 'x', columns: { Nope: 'nope' } }, /tables\[0\]\.columns\.Nope: column Nope does not exist in items/],
      [{ source: 'items', target: 'x', exclude: ['Nope'] }, /tables\[0\]\.exclude\[0\]: column Nope does not exist in items/],
    ];
    for (const [table, message] of cases) {
      await expect(openSource({ tables: [table] })).rejects.toThrow(message);
    }
  });

  it("drops transactions that cdc-sync's own PostgreSQL sink wrote (origin marker) and counts them", async () => {
    const { source, context } = await openSource();
    const sink = new PostgresSink(db.url);
    const sinkContext = testContext('reverse');
    await sink.open(sinkContext, TABLES);
    sink.bind([{ source: 'items', target: { name: { schema: 'public', name: 'items' }, columns: [] }, targetKey: ['id'], conflict: 'source-wins', owned: null } as never]);
    await sink.apply({ changes: [{ table: 'items', op: 'insert', key: { id: 20 }, row: { id: 20, name: 'echo' }, position: 'x', commitTime: new Date() }], deadLetters: [] } as never);
    await sink.close();
    await db.query(`INSERT INTO items (id, name) VALUES (21, 'user')`);
    const chunks = await pull(source, null, 1);
    expect(chunks[0]!.events.map((e) => e.key)).toEqual([{ id: '21' }]);
    const suppressed = await context.metrics.suppressed.get();
    expect(suppressed.values.find((v) => v.labels.reason === 'origin')?.value).toBe(1);
    expect((await db.query<{ stream: string }>(`SELECT stream FROM cdc_sync.origin_marker`))[0]!.stream).toBe('reverse');
  });

  it('dead-letters a TRUNCATE of a captured table with a clear message (or ignores it when configured)', async () => {
    const { source } = await openSource();
    await db.query(`INSERT INTO items (id, name) VALUES (30, 't')`);
    await db.query(`TRUNCATE items`);
    const chunks = await pull(source, null, 2);
    expect(chunks[1]!.events).toEqual([]);
    expect(chunks[1]!.rejected).toHaveLength(1);
    expect(chunks[1]!.rejected[0]!.error.message).toMatch(/TRUNCATE of public\.items was not applied/);
  });

  it('with truncate: apply, passes a TRUNCATE on as a truncate change of each captured table, in its transaction', async () => {
    const { source } = await openSource({ truncate: 'apply', tables: [...TABLES, { source: 'full_items', target: 'full_items' }] });
    await db.query(`INSERT INTO items (id, name) VALUES (31, 't')`);
    await db.query(`BEGIN; TRUNCATE items, full_items; INSERT INTO items (id, name) VALUES (32, 'after'); COMMIT`);
    const chunks = await pull(source, null, 2);
    expect(chunks[1]!.rejected).toEqual([]);
    expect(chunks[1]!.events.map((e) => [e.op, e.table, e.key])).toEqual([
      ['truncate', 'items', {}],
      ['truncate', 'full_items', {}],
      ['insert', 'items', { id: '32' }],
    ]);
  });

  it('picks up new columns from the Relation message after ALTER TABLE ADD COLUMN', async () => {
    await db.query(`ALTER TABLE full_items DROP COLUMN IF EXISTS extra`);
    const { source } = await openSource({ tables: [{ source: 'full_items', target: 'full_items' }] });
    await db.query(`INSERT INTO full_items VALUES (1, 'a')`);
    await db.query(`ALTER TABLE full_items ADD COLUMN extra int`);
    await db.query(`INSERT INTO full_items VALUES (2, 'b', 42)`);
    const chunks = await pull(source, null, 2);
    expect(chunks[1]!.events[0]!.row).toEqual({ id: 2, name: 'b', extra: 42 });
    await db.query(`ALTER TABLE full_items DROP COLUMN extra`);
  });

  it('fills chunks in a backlog, keeping to its transactions, and hands a lone transaction over once the server has sent all it has', async () => {
    // No time limit to speak of: on a loaded machine the walsender may pause longer than the default 100 ms.
    const { source } = await openSource({ readLimit: 100, holdMs: 20_000 });
    // Rounds of three transactions (60 inserts, 30 updates, 10 deletes of those rows): 100 changes, one chunk each.
    for (let round = 0; round < 20; round += 1) {
      const base = round * 100;
      await db.query(`INSERT INTO items (id, n) SELECT g, 0 FROM generate_series($1::int, $1::int + 59) AS g`, [base]);
      await db.query(`UPDATE items SET n = 1 WHERE id BETWEEN $1::int AND $1::int + 29`, [base]);
      await db.query(`DELETE FROM items WHERE id BETWEEN $1::int + 50 AND $1::int + 59`, [base]);
    }
    // The test cluster commits asynchronously, and the walsender sends only flushed WAL: wait for the whole backlog to be.
    const [{ lsn }] = (await db.query<{ lsn: string }>(`SELECT pg_current_wal_insert_lsn()::text AS lsn`)) as [{ lsn: string }];
    await waitFor(async () => (await db.query<{ done: boolean }>(`SELECT pg_current_wal_flush_lsn() >= $1::pg_lsn AS done`, [lsn]))[0]!.done);
    const following = follow(source, null);
    const chunks = following.chunks;
    try {
      await waitFor(() => chunks.reduce((n, c) => n + c.events.length, 0) >= 2000);
      // Not whatever happened to be decoded when asked: full chunks, so a round's insert, update and delete of a row meet in one.
      expect(chunks.map((c) => c.events.length)).toEqual(new Array(20).fill(100));
      expect(chunks.map((c) => c.events[0]!.op)).toEqual(new Array(20).fill('insert'));
      await db.query(`INSERT INTO items (id, n) VALUES (99999, 1)`);
      await waitFor(() => chunks.length === 21);
      // Handed over on the server's keepalive (caught up), not after waiting for a chunk to fill.
      expect(chunks[20]).toMatchObject({ events: [{ op: 'insert', key: { id: '99999' } }], caughtUp: true });
    } finally {
      following.stop();
    }
  });

  it('stops reading the socket when the undecoded changes waiting reach bufferBytes, however few they are: wide rows wait in the server, not in memory', async () => {
    const { source, context } = await openSource({ readLimit: 10, bufferSize: 100_000, bufferBytes: 256 * 1024 });
    // 300 transactions of one 20 kB row each (6 MB of WAL to send), a chunk of 10 changes read and no more asked for.
    await db.query(`DO $$ BEGIN
      FOR i IN 1 .. 300 LOOP
        INSERT INTO items (id, big) VALUES (i, (SELECT string_agg(md5(i::text || g::text), '') FROM generate_series(1, 625) g));
        COMMIT;
      END LOOP;
    END $$`);
    const [{ lsn }] = (await db.query<{ lsn: string }>(`SELECT pg_current_wal_insert_lsn()::text AS lsn`)) as [{ lsn: string }];
    await waitFor(async () => (await db.query<{ done: boolean }>(`SELECT pg_current_wal_flush_lsn() >= $1::pg_lsn AS done`, [lsn]))[0]!.done);
    const held = async () => (await context.metrics.bufferEvents.get()).values.reduce((n, v) => n + v.value, 0);
    const demand = new Subject<void>();
    const chunks: SourceChunk[] = [];
    const subscription = source.chunks(null, demand).subscribe((chunk) => chunks.push(chunk));
    try {
      await waitFor(() => chunks.length === 1);
      let most = 0;
      for (let i = 0; i < 40; i += 1) {
        most = Math.max(most, await held());
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
      // The gauge counts decoded changes (up to readLimit, 10) and undecoded messages: three a transaction here
      // (BEGIN, INSERT, COMMIT). 256 kB is 13 rows; the socket pauses after the read that passed it (at most
      // 64 kB more). Bounded by the count alone (100,000), all 300 transactions would be held: 900 messages.
      expect(most).toBeGreaterThan(10);
      expect(most).toBeLessThanOrEqual(10 + 3 * (13 + 4));
      // Nothing lost by pausing: the rest comes as it is asked for, in order.
      while (chunks.flatMap((c) => c.events).length < 300) {
        const before = chunks.length;
        demand.next();
        await waitFor(() => chunks.length > before);
      }
      expect(chunks.flatMap((c) => c.events).map((e) => Number(e.key.id))).toEqual(Array.from({ length: 300 }, (_, i) => i + 1));
    } finally {
      subscription.unsubscribe();
    }
  });

  it('shows the changes it holds in cdc_sync_buffer_events once a burst has come in, though reads report at most every 100 ms', async () => {
    const { source, context } = await openSource({ readLimit: 10 });
    const held = async () => (await context.metrics.bufferEvents.get()).values.reduce((n, v) => n + v.value, 0);
    const demand = new Subject<void>();
    const chunks: SourceChunk[] = [];
    const subscription = source.chunks(null, demand).subscribe((chunk) => chunks.push(chunk));
    try {
      await db.query(`INSERT INTO items (id) SELECT g FROM generate_series(1, 10) g`);
      await waitFor(() => chunks.length === 1);
      // Right after the chunk's own report: these come in within the 100 ms its reads do not report in.
      await db.query(`INSERT INTO items (id) SELECT g FROM generate_series(11, 15) g`);
      await db.query(`INSERT INTO items (id) SELECT g FROM generate_series(16, 22) g`);
      await waitFor(async () => (await held()) === 12);
      await new Promise((resolve) => setTimeout(resolve, 250));
      expect(await held()).toBe(12);
      demand.next();
      await waitFor(() => chunks.length === 2);
      expect(chunks[1]!.events).toHaveLength(5);
      await waitFor(async () => (await held()) === 7);
    } finally {
      subscription.unsubscribe();
    }
  });

  it('streams over TLS as hosted servers (Supabase) require, reading the replication messages off the TLS socket', async () => {
    const { source } = await openSource({ url: `${db.url}?sslmode=no-verify` });
    const pulled = pull(source, null, 2);
    const walsender = `SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
                        WHERE a.backend_type = 'walsender' AND a.application_name = 'cdc-sync-wal' AND a.datname = current_database()`;
    await waitFor(async () => (await db.query(walsender)).length > 0);
    expect((await db.query<{ ssl: boolean }>(walsender)).map((r) => r.ssl)).toEqual([true]);
    await db.query(`INSERT INTO items (id, name) VALUES (1, 'über TLS')`);
    await db.query(`UPDATE items SET name = 'changed' WHERE id = 1`);
    const chunks = await pulled;
    expect(chunks.map((c) => c.events.map((e) => [e.op, e.row?.name]))).toEqual([[['insert', 'über TLS']], [['update', 'changed']]]);
  });

  it('resumes from the slot after a restart: unacknowledged transactions come again, checkpointed ones do not', async () => {
    const first = await openSource();
    await db.query(`INSERT INTO items (id, name) VALUES (40, 'a')`);
    await db.query(`INSERT INTO items (id, name) VALUES (41, 'b')`);
    await db.query(`INSERT INTO items (id, name) VALUES (42, 'c')`);
    // The stream stays subscribed (as a running stream does) while the sink commits.
    const demand = new Subject<void>();
    const received: SourceChunk[] = [];
    const subscription = first.source.chunks(null, demand).subscribe((c) => {
      received.push(...transactions(c));
      setTimeout(() => demand.next(), 0);
    });
    await waitFor(() => received.length >= 3);
    const chunks = received;
    // The sink committed the first transaction; the second was checkpointed but the process died before acknowledging it.
    await first.source.committed(chunks[0]!.position);
    await waitFor(async () => {
      const [row] = await db.query<{ confirmed: string }>(`SELECT confirmed_flush_lsn::text AS confirmed FROM pg_replication_slots WHERE slot_name = $1`, [slot]);
      return row!.confirmed === chunks[0]!.position;
    });
    subscription.unsubscribe();
    await first.source.close();
    sources.splice(sources.indexOf(first.source), 1);
    await db.query(`INSERT INTO items (id, name) VALUES (43, 'd')`);
    const second = await openSource();
    const again = await pull(second.source, chunks[1]!.position, 2);
    expect(again.flatMap((c) => c.events.map((e) => e.key.id))).toEqual(['42', '43']);
  });

  it('confirms WAL it passed over (other tables, once everything is applied) at once, not at the next status interval', async () => {
    await db.query(`CREATE TABLE IF NOT EXISTS unpublished (id int PRIMARY KEY)`);
    // An hour between status updates: only the prompt answer to the server's keepalive can move the slot.
    const { source } = await openSource({ statusIntervalMs: 3_600_000 });
    await db.query(`INSERT INTO items (id, name) VALUES (50, 'a')`);
    const demand = new Subject<void>();
    const received: SourceChunk[] = [];
    const subscription = source.chunks(null, demand).subscribe((c) => received.push(c));
    await waitFor(() => received.length === 1);
    await source.committed(received[0]!.position);
    await db.query(`INSERT INTO unpublished SELECT generate_series(1, 100)`);
    const [{ lsn }] = (await db.query<{ lsn: string }>(`SELECT pg_current_wal_lsn()::text AS lsn`)) as [{ lsn: string }];
    await waitFor(async () => {
      const [row] = await db.query<{ done: boolean }>(`SELECT confirmed_flush_lsn >= $2::pg_lsn AS done FROM pg_replication_slots WHERE slot_name = $1`, [slot, lsn]);
      return row!.done;
    }, 10_000);
    subscription.unsubscribe();
    expect(received.flatMap((c) => c.events.map((e) => e.key.id))).toEqual(['50']);
  });

  it('copies a row with the same key and values as the stream then decodes for it, so a streamed delete meets the copied insert', async () => {
    await db.query(`CREATE TABLE IF NOT EXISTS typed (id bigint PRIMARY KEY, at timestamptz, d date, flag boolean, amount numeric(12,2), data bytea,
                      doc jsonb, tags text[], n int, r float8, total int GENERATED ALWAYS AS (n * 2) STORED)`);
    await db.query(`TRUNCATE typed`);
    await db.query(`INSERT INTO typed (id, at, d, flag, amount, data, doc, tags, n, r)
                    VALUES (9007199254740993, '2021-01-01 10:00:00.5+00', '2021-02-03', true, 12.30, '\\xcafe', '{"a": [1, "x"]}', '{a,"b c"}', 7, 0.1),
                           (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)`);
    const { source } = await openSource({ tables: [{ source: 'typed', target: 'typed' }], snapshot: 'initial', readLimit: 10 });
    await db.query(`UPDATE typed SET n = n`); // every column's new image, as pgoutput sends it
    const chunks = await pullUntil(source, null, (all) => all.filter((e) => e.copied).length === 2 && all.filter((e) => e.op === 'update').length === 2);
    const copied = chunks.flatMap((c) => c.events).filter((e) => e.copied);
    const streamed = chunks.flatMap((c) => c.events).filter((e) => e.op === 'update');
    expect(copied.map((e) => e.key)).toEqual([{ id: '2' }, { id: '9007199254740993' }]);
    for (const update of streamed) {
      const copy = copied.find((e) => e.key.id === update.key.id)!;
      expect(copy.key).toStrictEqual(update.key);
      expect(copy.row).toStrictEqual(update.row);
    }
    // jsonb as its output text (JsonText), exactly as written to the target.
    expect(copied[1]!.row).toMatchObject({ flag: true, n: 7, r: 0.1, doc: new JsonText('{"a": [1, "x"]}'), amount: '12.30' });
    await db.query(`DROP TABLE typed`);
  });

  it('copies existing rows in keyset chunks beside the stream (resumable), each chunk a copy (epoch change time) that no change it missed follows', async () => {
    await db.query(`INSERT INTO items (id, name, amount) SELECT i, 'row ' || i, i / 3.0 FROM generate_series(1, 25) AS i`);
    const { source } = await openSource({ snapshot: 'initial', readLimit: 10 });
    // Made after the slot exists, before the copy reads: streamed, and seen by the copy.
    await db.query(`UPDATE items SET name = 'changed' WHERE id = 3`);
    await db.query(`DELETE FROM items WHERE id = 25`);
    const chunks = await pullUntil(source, null, (all) => all.some((e) => e.op === 'delete') && all.filter((e) => e.copied).length === 24);
    const copied = chunks.filter((c) => c.events.some((e) => e.copied));
    // Chunks of 10 in key order; each chunk's position says where to go on after a restart.
    expect(copied.map((c) => c.events.filter((e) => e.copied).map((e) => Number(e.key.id)))).toEqual([
      [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
      [11, 12, 13, 14, 15, 16, 17, 18, 19, 20],
      [21, 22, 23, 24],
    ]);
    expect(JSON.parse(copied[0]!.position).copy).toEqual({ tables: ['items'], after: { id: '10' } });
    expect(copied[2]!.position).toMatch(/^\d+\/[0-9A-F]+$/); // the copy is done: a bare LSN again
    expect(copied[0]!.events.find((e) => e.key.id === '3')).toMatchObject({ row: { id: '3', name: 'changed', amount: '1.0000000000' }, commitTime: new Date(0) });
    const streamed = chunks.flatMap((c) => c.events.filter((e) => !e.copied).map((e) => [e.op, Number(e.key.id)]));
    expect(streamed).toEqual([['update', 3], ['delete', 25]]);

    // A restart inside the copy goes on after the last copied key.
    await source.close();
    sources.splice(sources.indexOf(source), 1);
    const again = await openSource({ snapshot: 'initial', readLimit: 10 });
    const resumed = await pullUntil(again.source, copied[0]!.position, (all) => all.filter((e) => e.copied).length >= 10);
    expect(resumed.flatMap((c) => c.events.filter((e) => e.copied)).slice(0, 10).map((e) => Number(e.key.id))).toEqual([11, 12, 13, 14, 15, 16, 17, 18, 19, 20]);
  });

  it('copies only the rows a --where condition holds for when asked (cdc-sync snapshot --where)', async () => {
    await db.query(`INSERT INTO items (id, name, amount) SELECT i, 'row ' || i, i FROM generate_series(1, 30) AS i`);
    const { source } = await openSource({ snapshot: 'never', readLimit: 4 });
    const position = source.requestSnapshot('0/0', ['items'], 'amount > 20 AND id % 2 = 0');
    expect(JSON.parse(position!).copy).toEqual({ tables: ['items'], after: null, where: 'amount > 20 AND id % 2 = 0' });
    const chunks = await pullUntil(source, position, (all) => all.some((e) => e.copied && e.key.id === '30'));
    expect(chunks.flatMap((c) => c.events.filter((e) => e.copied).map((e) => Number(e.key.id)))).toEqual([22, 24, 26, 28, 30]);
    // Each chunk's position carries the condition, so a restart goes on copying only those rows.
    expect(JSON.parse(chunks.find((c) => c.events.some((e) => e.copied))!.position).copy).toMatchObject({ where: 'amount > 20 AND id % 2 = 0' });
  });

  it('stops with what to do when the login may not write the watermark (no EXECUTE on pg_logical_emit_message), instead of retrying for ever', async () => {
    await db.query(`DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'wal_reader') THEN CREATE ROLE wal_reader LOGIN REPLICATION; END IF; END $$`);
    // No USAGE on schema cdc_sync: a read-only login of the source, which the WAL source must not need.
    await db.query(`GRANT SELECT ON items TO wal_reader`);
    await db.query(`CREATE PUBLICATION ${slot} FOR TABLE items, cdc_sync.origin_marker`);
    await db.query(`REVOKE EXECUTE ON FUNCTION pg_logical_emit_message(boolean, text, text) FROM PUBLIC`);
    try {
      const url = new URL(db.url);
      url.username = 'wal_reader';
      const { source } = await openSource({ url: url.toString(), snapshot: 'initial' });
      const failed = await pullUntil(source, null, () => false).then(
        () => null,
        (error: unknown) => error,
      );
      expect(failed).toBeInstanceOf(ConfigError);
      expect(String((failed as Error).message)).toMatch(/pg_logical_emit_message.*GRANT EXECUTE ON FUNCTION pg_logical_emit_message\(boolean, text, text\)/s);
    } finally {
      await db.query(`GRANT EXECUTE ON FUNCTION pg_logical_emit_message(boolean, text, text) TO PUBLIC`);
    }
  });

  it('cdc-sync snapshot: copies the named tables again, then streams on from the stored position', async () => {
    const { source } = await openSource();
    expect(JSON.parse(source.requestSnapshot('0/16B3748', ['items'])!)).toEqual({ lsn: '0/16B3748', copy: { tables: ['items'], after: null } });
    expect(() => source.requestSnapshot('0/16B3748', ['nope'])).toThrow(/not a table of this stream/);
    // Asked while a copy of other tables goes on: those stay to be copied, after the one asked for.
    const two = new WalSource({ url: db.url, tables: [{ source: 'items', target: 'items' }, { source: 'other', target: 'other' }], slot, publication: slot, truncate: 'dead-letter', snapshot: 'never', readLimit: 10, bufferSize: 100, bufferBytes: 8 * 1024 * 1024, statusIntervalMs: 200, retry: { attempts: 1, minDelayMs: 1, maxDelayMs: 1 } });
    const going = JSON.stringify({ lsn: '0/10', copy: { tables: ['other', 'items'], after: { id: '5' } } });
    expect(JSON.parse(two.requestSnapshot(going, ['items'])!)).toEqual({ lsn: '0/10', copy: { tables: ['items', 'other'], after: null } });
  });
});
