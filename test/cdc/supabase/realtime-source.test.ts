import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SupabaseRealtimeSource } from '../../../src/cdc/supabase/realtime-source.js';
import { supabaseSourceSetupSql } from '../../../src/db/supabase/setup.js';
import type { ChangeEvent, SourceChunk } from '../../../src/core/change-event.js';
import { JsonText } from '../../../src/core/json.js';
import type { TableConfig } from '../../../src/core/mapping.js';
import { startPostgrest, type PostgrestStandIn } from '../../support/postgrest/server.js';
import { publishTables, startRealtimeServer, type RealtimeServer } from '../../support/realtime/index.js';
import { createTestDatabase, type TestDatabase } from '../../support/test-database.js';
import { testContext } from '../../support/stream-context.js';
import { stepper } from '../../support/pull.js';
import { waitFor } from '../../support/cli.js';
import { dropNoops } from '../../../src/streams/operators/drop-noops.js';

/**
 * The supabase-realtime source driven directly, with the real supabase-js
 * client against the PostgREST and Realtime stand-ins, so that the test
 * decides when the stream asks for the next chunk (as a slow sink does).
 */
const TABLES: TableConfig[] = [{ source: 'public.notes', target: 'notes', key: ['id'], updatedAt: 'updated_at' }];
let cloud: TestDatabase;
let rest: PostgrestStandIn;
let realtime: RealtimeServer;
const cleanups: (() => Promise<void> | void)[] = [];

beforeAll(async () => {
  cloud = await createTestDatabase('realtime_source');
  await cloud.query(`CREATE TABLE notes (id bigint PRIMARY KEY, note text NOT NULL, updated_at timestamptz, doc jsonb)`);
  rest = await startPostgrest({ databaseUrl: cloud.url });
  realtime = await startRealtimeServer({ databaseUrl: cloud.url, forwardHttpTo: rest.url });
  await cloud.query(supabaseSourceSetupSql(TABLES, true));
  await publishTables(cloud.url, ['public.notes'], { replicaIdentityFull: true });
  await rest.reloadSchema();
});

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  await cloud.query('TRUNCATE notes, cdc_sync_tombstones');
});

afterAll(async () => {
  await realtime?.close();
  await rest?.close();
  await cloud.drop();
});

async function openSource(snapshot: 'initial' | 'never' = 'initial', bufferSize = 10_000, marginSeconds = 0): Promise<{ source: SupabaseRealtimeSource; context: ReturnType<typeof testContext> }> {
  const source = new SupabaseRealtimeSource({
    snapshot,
    url: realtime.url,
    key: rest.key,
    tables: TABLES,
    maxSize: 100,
    bufferSize,
    // No margin: a catch-up read sees the newest commits, as a slow or late Realtime makes it see them.
    catchUp: { intervalMinutes: 60, lookbackHours: 1, maxRecords: 100, marginSeconds },
    tombstones: true,
    private: false,
    retry: { attempts: 3, minDelayMs: 10, maxDelayMs: 50 },
  });
  const context = testContext('cloud-to-clinic');
  cleanups.push(() => source.close(), () => context.controller.abort());
  await source.open(context);
  return { source, context };
}

/** A source without the initial copy, its start's reads done and its feed connected, read one chunk at a time. */
async function readingLive(marginSeconds: number) {
  const { source, context } = await openSource('never', 10_000, marginSeconds);
  const reader = stepper(source, null);
  cleanups.push(() => reader.stop());
  for (let chunk = await reader.next(2000); chunk; chunk = await reader.next(1000));
  await waitFor(async () => context.connected.source === true, 10_000);
  return { source, context, reader };
}

/** What a sink ends with after applying the chunks in the order given. */
function applied(chunks: SourceChunk[]): Map<string, string> {
  const rows = new Map<string, string>();
  for (const event of chunks.flatMap((c) => c.events)) {
    const id = String(event.key.id);
    if (event.op === 'delete') rows.delete(id);
    else rows.set(id, String(event.row!.note));
  }
  return rows;
}

const buffered = (context: ReturnType<typeof testContext>) => context.metrics.bufferEvents.get().then((m) => m.values[0]?.value ?? 0);

describe('SupabaseRealtimeSource', () => {
  it('hands on json values as written, read by the catch-up and live: trailing zeros, digits beyond a double, a string that reads as JSON', async () => {
    await cloud.query(`INSERT INTO notes (id, note, doc) VALUES (1, 'a', '{"n": 2.50, "big": 123456789012345678901234567890}'), (2, 'b', '"1.0"'), (3, 'c', NULL)`);
    const { source, context } = await openSource();
    const reader = stepper(source, null);
    cleanups.push(() => reader.stop());
    const read: SourceChunk[] = [];
    for (let chunk = await reader.next(2000); chunk; chunk = await reader.next(1000)) read.push(chunk);
    const docs = (chunks: SourceChunk[]) => Object.fromEntries(chunks.flatMap((c) => c.events).map((e) => [String(e.key.id), e.row?.doc]));
    expect(docs(read)).toEqual({ 1: new JsonText('{"n": 2.50, "big": 123456789012345678901234567890}'), 2: new JsonText('"1.0"'), 3: null });
    await waitFor(async () => context.connected.source === true, 10_000, () => JSON.stringify([context.connected, realtime.stats()]));
    await cloud.query(`UPDATE notes SET doc = '[1.0, "2.0", {"x": 1.000}]' WHERE id = 1`);
    const live = await reader.next(5000);
    expect(docs([live!])).toEqual({ 1: new JsonText('[1.0, "2.0", {"x": 1.000}]') });
  });

  it('hands on live changes that waited in its buffer before a catch-up read of newer images, never after them', async () => {
    const { source, context } = await openSource();
    const reader = stepper(source, null);
    cleanups.push(() => reader.stop());
    // The start's catch-up finds nothing; then the feed is subscribed.
    while ((await reader.next(2000)) !== null);
    await waitFor(async () => context.connected.source === true, 10_000, () => JSON.stringify([context.connected, realtime.stats()]));

    // The read still asked for is answered by a first live change; then the sink is busy and live inserts wait in the buffer.
    await cloud.query(`INSERT INTO notes (id, note) VALUES (100, 'first')`);
    const first = await reader.next(5000);
    expect(first?.events.map((e) => e.key.id)).toEqual([100]);
    await cloud.query(`INSERT INTO notes (id, note) SELECT g, 'note ' || g FROM generate_series(1, 5) g`);
    await waitFor(async () => (await buffered(context)) === 5, 10_000);
    // Edited while they wait; Realtime is slow with these, and a catch-up read is due.
    realtime.pause();
    cleanups.push(() => realtime.resume());
    await cloud.query(`UPDATE notes SET note = 'edited' WHERE id <= 5`);
    await cloud.query(`DELETE FROM notes WHERE id = 5`);
    // The read's cutoff comes from the HTTP Date header (whole seconds, taken as the middle of the second).
    await new Promise((r) => setTimeout(r, 1100));
    source.wake();

    const chunks: SourceChunk[] = [];
    for (let chunk = await reader.next(2000); chunk; chunk = await reader.next(1000)) chunks.push(chunk);
    const expected = new Map((await cloud.query<{ id: string; note: string }>(`SELECT id::text, note FROM notes`)).map((r) => [r.id, r.note]));
    expect(expected.size).toBe(5);
    expect(applied([first!, ...chunks])).toEqual(expected);
  });

  it('copies every existing row at the first start (older than the lookback too), resumably by page, and again on request, beside live changes', async () => {
    // Two days old: a catch-up with its one-hour lookback would never read these.
    // Loaded before cdc-sync's touch trigger, which stamps every write with now().
    await cloud.query(`ALTER TABLE notes DISABLE TRIGGER cdc_sync_touch`);
    await cloud.query(`INSERT INTO notes (id, note, updated_at) SELECT g, 'old ' || g, now() - interval '2 days' + g * interval '1 ms' FROM generate_series(1, 250) g`);
    await cloud.query(`ALTER TABLE notes ENABLE TRIGGER cdc_sync_touch`);
    const never = await openSource('never');
    const skipped = stepper(never.source, null);
    cleanups.push(() => skipped.stop());
    expect(await skipped.next(2000)).toBeNull();

    const { source } = await openSource();
    const reader = stepper(source, null);
    cleanups.push(() => reader.stop());
    const chunks: SourceChunk[] = [];
    for (let chunk = await reader.next(5000); chunk; chunk = await reader.next(1000)) chunks.push(chunk);
    expect(applied(chunks).size).toBe(250);
    // Pages of maxRecords (100): each page's position is a resumable watermark, marked as copying until the empty page,
    // whose position (without a change) says the copy is done.
    expect(chunks.map((c) => c.events.length)).toEqual([100, 100, 50, 0]);
    expect(source.copying(chunks.at(-1)!.position)).toEqual([]);
    expect(source.copying(chunks[0]!.position)).toEqual(['public.notes']);
    expect(JSON.parse(chunks[0]!.position).tables['public.notes'].key).toEqual([100]);
    const done = chunks.at(-1)!.position;
    reader.stop();

    // A restart inside the copy goes on after the last page applied.
    const resumed = stepper((await openSource()).source, chunks[0]!.position);
    cleanups.push(() => resumed.stop());
    const first = await resumed.next(5000);
    expect(first?.events.map((e) => Number(e.key.id))[0]).toBe(101);
    resumed.stop();

    // `cdc-sync snapshot`: every row again from a finished position, with a live edit made meanwhile kept.
    const again = await openSource();
    const position = again.source.requestSnapshot(done, []);
    expect(again.source.copying(position)).toEqual(['public.notes']);
    expect(() => again.source.requestSnapshot(done, ['public.nope'])).toThrow(/not a table of this stream/);
    const copy = stepper(again.source, position);
    cleanups.push(() => copy.stop());
    const recopied: SourceChunk[] = [(await copy.next(5000))!];
    await cloud.query(`UPDATE notes SET note = 'live' WHERE id = 7`);
    for (let chunk = await copy.next(5000); chunk; chunk = await copy.next(1500)) recopied.push(chunk);
    const rows = applied(recopied);
    expect(rows.size).toBe(250);
    expect(rows.get('7')).toBe('live');
    expect(again.source.copying(recopied.at(-1)!.position)).toEqual([]);
  });

  it('hands on again, after a restart, the live changes it had handed on that the stopped stream never applied', async () => {
    const { source, context } = await openSource();
    const reader = stepper(source, null);
    cleanups.push(() => reader.stop());
    let position: string | null = null;
    for (let chunk = await reader.next(2000); chunk; chunk = await reader.next(1000)) position = chunk.position;
    await waitFor(async () => context.connected.source === true, 10_000);
    await cloud.query(`INSERT INTO notes (id, note) VALUES (1, 'taken, never applied'), (2, 'taken, never applied')`);
    const taken: SourceChunk[] = [];
    while (taken.flatMap((c) => c.events).length < 2) taken.push((await reader.next(5000))!);
    // The stream stops before it applies them (a copy request, a sink failure) and starts again from its checkpoint.
    reader.stop();
    const restarted = stepper(source, position);
    cleanups.push(() => restarted.stop());
    const again: SourceChunk[] = [];
    for (let chunk = await restarted.next(5000); chunk; chunk = await restarted.next(1500)) again.push(chunk);
    expect(applied(again)).toEqual(new Map([['1', 'taken, never applied'], ['2', 'taken, never applied']]));
  });

  it('says a read is still to come while the catch-up after a reconnection’s margin has not run, so a child waits for its lost parent', async () => {
    const { reader } = await readingLive(3);
    // The start's catch-up after its margin has run: nothing is scheduled.
    await new Promise((r) => setTimeout(r, 4500));
    for (let chunk = await reader.next(500); chunk; chunk = await reader.next(500));
    // An outage: the connection drops and the change made meanwhile (a parent) is lost with it.
    // An outage, as the checker makes one: every change is lost for 300 ms (a parent) and the connections drop.
    const sent = realtime.stats().messagesSent;
    realtime.pause();
    await cloud.query(`INSERT INTO notes (id, note) VALUES (1, 'parent, lost')`);
    realtime.dropConnections();
    await new Promise((r) => setTimeout(r, 300));
    realtime.resume();
    // Back, and a live change (the child) comes while the catch-up after the margin is still to run.
    await waitFor(async () => {
      await cloud.query(`INSERT INTO notes (id, note) VALUES (2, 'child, live') ON CONFLICT (id) DO UPDATE SET note = excluded.note || '.'`);
      await new Promise((r) => setTimeout(r, 100));
      return realtime.stats().messagesSent > sent;
    }, 10_000);
    const beforeMargin: SourceChunk[] = [];
    while (!beforeMargin.some((c) => c.events.some((e) => e.key.id === 2))) beforeMargin.push((await reader.next(5000))!);
    // Every chunk handed on before the read after the margin (which finds the lost parent) says that read is to come,
    // caught up or not: the stream holds a child whose parent is missing instead of dead-lettering it.
    expect(beforeMargin.map((c) => c.readsPending)).toEqual(beforeMargin.map(() => true));
    // After the margin the follow-up catch-up has read what the outage lost; then nothing more is scheduled.
    await new Promise((r) => setTimeout(r, 4500));
    await cloud.query(`INSERT INTO notes (id, note) VALUES (3, 'later')`);
    const afterMargin: SourceChunk[] = [];
    while (!afterMargin.some((c) => c.events.some((e) => e.key.id === 3))) afterMargin.push((await reader.next(5000))!);
    expect(afterMargin.at(-1)!.readsPending).toBe(false);
    expect(applied([...beforeMargin, ...afterMargin]).get('1')).toBe('parent, lost');
  });

  it('hands on without its before-image a live update of a key whose earlier image it never handed on (an insert lost in an outage), so a sink that skips updates changing nothing still writes the row', async () => {
    // A margin longer than the test: no catch-up reads the lost insert, only the live feed tells of the row.
    const { reader } = await readingLive(30);
    const sent = realtime.stats().messagesSent;
    realtime.pause();
    await cloud.query(`INSERT INTO notes (id, note) VALUES (1, 'insert lost')`);
    realtime.dropConnections();
    await new Promise((r) => setTimeout(r, 300));
    realtime.resume();
    // The same values written again by a write that keeps its time (as cdc-sync's own do): an update that changes
    // nothing, whose before-image the target never received. Again until the resubscribed feed sends one.
    const sameAgain = `BEGIN; SET LOCAL cdc_sync.origin = 'portal'; UPDATE notes SET note = note WHERE id = 1; COMMIT`;
    await waitFor(async () => {
      await cloud.query(sameAgain);
      await new Promise((r) => setTimeout(r, 100));
      return realtime.stats().messagesSent > sent;
    }, 10_000);
    const live: SourceChunk[] = [];
    while (!live.some((c) => c.events.some((e) => e.key.id === 1))) live.push((await reader.next(5000))!);
    const first = live.flatMap((c) => c.events).find((e) => e.key.id === 1)!;
    expect(first.op).toBe('update');
    expect(first.before ?? null).toBeNull();
    expect(applied([{ ...live[0]!, events: dropNoops(live.flatMap((c) => c.events)).kept }]).get('1')).toBe('insert lost');

    // Once an image of the key was handed on, an update from it keeps its before-image (a sink may skip it when the
    // columns it keeps are the same: here only updated_at moves).
    for (let chunk = await reader.next(300); chunk; chunk = await reader.next(300)) live.push(chunk);
    const handedOn = live.flatMap((c) => c.events).filter((e) => e.key.id === 1).at(-1)!;
    await cloud.query(`UPDATE notes SET note = note WHERE id = 1`);
    let update: ChangeEvent | undefined;
    while (!update) update = (await reader.next(5000))?.events.find((e) => e.key.id === 1);
    expect(update.before).toEqual(handedOn.row);
    expect(update.row!.updated_at).not.toEqual(handedOn.row!.updated_at);
  });

  it('hands on by catch-up the live changes a full buffer dropped', async () => {
    const { source, context } = await openSource('initial', 3);
    const reader = stepper(source, null);
    cleanups.push(() => reader.stop());
    for (let chunk = await reader.next(2000); chunk; chunk = await reader.next(1000));
    await waitFor(async () => context.connected.source === true, 10_000);
    // The sink is busy (nothing asked for): ten changes arrive for a buffer of three.
    for (let id = 1; id <= 10; id += 1) await cloud.query(`INSERT INTO notes (id, note) VALUES ($1, 'overflowed')`, [id]);
    await new Promise((r) => setTimeout(r, 1100));
    const chunks: SourceChunk[] = [];
    for (let chunk = await reader.next(5000); chunk; chunk = await reader.next(1500)) chunks.push(chunk);
    expect(applied(chunks).size).toBe(10);
  });

  it('copies again only the rows PostgREST filters hold for (--where), then reads on from its watermark before the copy; refuses SQL', async () => {
    await cloud.query(`INSERT INTO notes (id, note) SELECT g, CASE WHEN g % 2 = 0 THEN 'keep ' ELSE 'skip ' END || g FROM generate_series(1, 20) g`);
    const { source } = await openSource();
    const reader = stepper(source, null);
    cleanups.push(() => reader.stop());
    let done: string | null = null;
    for (let chunk = await reader.next(5000); chunk; chunk = await reader.next(1500)) done = chunk.position;
    reader.stop();
    const before = JSON.parse(done!).tables['public.notes'];
    expect(before.copying).toBeUndefined();

    expect(() => source.requestSnapshot(done, ['public.notes'], "note like 'keep%'")).toThrow(/PostgREST.*status\.eq\.active/);
    const position = source.requestSnapshot(done, ['public.notes'], 'note.like.keep*,id.lte.10');
    expect(source.copying(position)).toEqual(['public.notes']);
    const copy = stepper(source, position);
    cleanups.push(() => copy.stop());
    const chunks: SourceChunk[] = [];
    for (let chunk = await copy.next(5000); chunk; chunk = await copy.next(1500)) chunks.push(chunk);
    expect([...applied(chunks).keys()].sort((a, b) => Number(a) - Number(b))).toEqual(['2', '4', '6', '8', '10']);
    // The copy's last row says nothing about the rows it left out: the table is back at its watermark before the copy.
    expect(JSON.parse(chunks.at(-1)!.position).tables['public.notes']).toEqual(before);
    expect(source.copying(chunks.at(-1)!.position)).toEqual([]);
  });
});
