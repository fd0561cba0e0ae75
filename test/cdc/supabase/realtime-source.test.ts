import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SupabaseRealtimeSource } from '../../../src/cdc/supabase/realtime-source.js';
import { supabaseSourceSetupSql } from '../../../src/cdc/supabase/setup.js';
import type { SourceChunk } from '../../../src/core/change-event.js';
import type { TableConfig } from '../../../src/core/mapping.js';
import { startPostgrest, type PostgrestStandIn } from '../../support/postgrest/server.js';
import { publishTables, startRealtimeServer, type RealtimeServer } from '../../support/realtime/index.js';
import { createTestDatabase, type TestDatabase } from '../../support/test-database.js';
import { testContext } from '../../support/stream-context.js';
import { stepper } from '../../support/pull.js';
import { waitFor } from '../../support/cli.js';

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
  await cloud.query(`CREATE TABLE notes (id bigint PRIMARY KEY, note text NOT NULL, updated_at timestamptz)`);
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

async function openSource(): Promise<{ source: SupabaseRealtimeSource; context: ReturnType<typeof testContext> }> {
  const source = new SupabaseRealtimeSource({
    url: realtime.url,
    key: rest.key,
    tables: TABLES,
    maxSize: 100,
    bufferSize: 10_000,
    // No margin: a catch-up read sees the newest commits, as a slow or late Realtime makes it see them.
    catchUp: { intervalMinutes: 60, lookbackHours: 1, maxRecords: 100, marginSeconds: 0 },
    tombstones: true,
    private: false,
    retry: { attempts: 3, minDelayMs: 10, maxDelayMs: 50 },
  });
  const context = testContext('cloud-to-clinic');
  cleanups.push(() => source.close(), () => context.controller.abort());
  await source.open(context);
  return { source, context };
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
});
