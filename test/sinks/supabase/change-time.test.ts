import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { ChangeEvent } from '../../../src/core/change-event.js';
import { TableMapping, type TableConfig } from '../../../src/core/mapping.js';
import { OwnWrites } from '../../../src/core/own-writes.js';
import { supabaseSourceSetupSql } from '../../../src/db/supabase/setup.js';
import { skipNoopSetupSql } from '../../../src/sinks/supabase/skip-noop-sql.js';
import { SupabaseSink } from '../../../src/sinks/supabase/supabase-sink.js';
import { startPostgrest, type PostgrestStandIn } from '../../support/postgrest/server.js';
import { testContext } from '../../support/stream-context.js';
import { createTestDatabase, type TestDatabase } from '../../support/test-database.js';

/**
 * Two-way with Supabase: the portal table is also read back by a
 * supabase-realtime stream, so the supabase sink applies the change-time
 * rule in the database (cdc_sync.newer_wins, conditional deletes), with the
 * set-up `cdc-sync init-sql` prints for both streams.
 */
const TABLES: TableConfig[] = [{ source: 'public.notes', target: 'public.visits', key: ['id'] }];
let db: TestDatabase;
let api: PostgrestStandIn;
let sink: SupabaseSink;
const own = new OwnWrites();

const at = (iso: string) => new Date(iso);
function change(op: ChangeEvent['op'], id: number, note: string | null, time: string): ChangeEvent {
  return { table: 'public.notes', op, key: { id }, row: op === 'delete' ? null : { id, note }, position: '1', commitTime: at(time) };
}
const portal = () => db.query<{ id: number; note: string; updated_at: string }>(`SELECT id, note, to_char(updated_at AT TIME ZONE 'UTC', 'HH24:MI:SS.MS') AS updated_at FROM visits ORDER BY id`);

async function openSink(preferIncoming: boolean): Promise<SupabaseSink> {
  const s = new SupabaseSink({ url: api.url, key: api.key, captured: new Map([['public.visits', 'updated_at']]), preferIncoming, ownWrites: own });
  const targets = await s.open(testContext('clinic-to-portal'), TABLES);
  s.bind(TABLES.map((t, i) => new TableMapping(t, targets[i]!, `tables[${i}]`, () => {})));
  return s;
}

beforeAll(async () => {
  db = await createTestDatabase('supabase_change_time');
  api = await startPostgrest({ databaseUrl: db.url });
  await db.query(`CREATE TABLE visits (id int PRIMARY KEY, note text, updated_at timestamptz NOT NULL DEFAULT now())`);
  await db.query(supabaseSourceSetupSql([{ source: 'public.visits', target: 'x', key: ['id'], updatedAt: 'updated_at'}], true));
  await db.query(skipNoopSetupSql(['public.visits']));
  await api.reloadSchema();
  sink = await openSink(true);
});

afterAll(async () => {
  await sink.close();
  await api.close();
  await db.drop();
});

beforeEach(async () => {
  await db.query(`TRUNCATE visits, cdc_sync_tombstones`);
  // Portal edits, stamped by the portal's trigger: 10:00:05.
  await db.query(`INSERT INTO visits (id, note) VALUES (1, 'portal'), (2, 'portal'), (3, 'portal'), (4, 'portal')`);
  await db.query(`ALTER TABLE visits DISABLE TRIGGER cdc_sync_touch; UPDATE visits SET updated_at = '2026-12-03 10:00:05+00'; ALTER TABLE visits ENABLE TRIGGER cdc_sync_touch`);
});

describe('supabase sink, two-way: the newer change wins by change time', () => {
  it('keeps a portal row changed after the incoming change, counts the conflict, and writes over an older one with the change time', async () => {
    const result = await sink.apply({ changes: [change('update', 1, 'clinic, older', '2026-12-03T10:00:04.000Z'), change('update', 2, 'clinic, newer', '2026-12-03T10:00:06.000Z')], deadLetters: [] });
    // Logged with both rows (the stream keeps the entry beside the dead letters).
    expect(result).toMatchObject({
      written: 1,
      conflicts: [
        {
          table: 'public.notes',
          key: { id: 1 },
          entry: { rule: 'change-time', op: 'update', winner: 'stored', incoming: { id: 1, note: 'clinic, older' }, stored: { id: 1, note: 'portal' }, winning: { id: 1, note: 'portal' } },
        },
      ],
    });
    expect(result.conflicts![0]!.entry!.stored_time).toEqual(new Date('2026-12-03T10:00:05.000Z'));
    expect(await portal()).toEqual([
      { id: 1, note: 'portal', updated_at: '10:00:05.000' },
      { id: 2, note: 'clinic, newer', updated_at: '10:00:06.000' },
      { id: 3, note: 'portal', updated_at: '10:00:05.000' },
      { id: 4, note: 'portal', updated_at: '10:00:05.000' },
    ]);
  });

  it('deletes only rows not changed after the delete, and leaves no tombstone of its own deletes', async () => {
    const result = await sink.apply({
      changes: [change('delete', 3, null, '2026-12-03T10:00:04.000Z'), change('delete', 4, null, '2026-12-03T10:00:06.000Z'), change('delete', 9, null, '2026-12-03T10:00:06.000Z')],
      deadLetters: [],
    });
    expect((await portal()).map((r) => r.id)).toEqual([1, 2, 3]);
    // Key 9 was not there: no conflict. Key 3 changed here later: one.
    expect(result).toMatchObject({ written: 1, conflicts: [{ table: 'public.notes', key: { id: 3 }, entry: { op: 'delete', incoming: null, stored: { id: 3, note: 'portal' } } }] });
    expect(await db.query(`SELECT key FROM cdc_sync_tombstones`)).toEqual([]);
  });

  it('does not bring back a row the portal deleted after the incoming change (its tombstone remembers the delete)', async () => {
    await db.query(`DELETE FROM visits WHERE id IN (3, 4)`); // a portal user, now
    const older = new Date(Date.now() - 60_000).toISOString();
    const newer = new Date(Date.now() + 60_000).toISOString();
    const result = await sink.apply({ changes: [change('insert', 3, 'clinic, before the delete', older), change('insert', 4, 'clinic, after the delete', newer)], deadLetters: [] });
    expect(result.conflicts).toMatchObject([{ table: 'public.notes', key: { id: 3 }, entry: { stored: null, winning: null, incoming: { id: 3, note: 'clinic, before the delete' } } }]);
    expect((await portal()).filter((r) => r.id >= 3).map((r) => [r.id, r.note])).toEqual([[4, 'clinic, after the delete']]);
  });

  it('gives a tie to the side the stream prefers', async () => {
    const tie = async (s: SupabaseSink, id: number) => (await s.apply({ changes: [change('update', id, 'clinic, same time', '2026-12-03T10:00:05.000Z')], deadLetters: [] })).conflicts ?? [];
    expect(await tie(sink, 1)).toEqual([]);
    const targetWins = await openSink(false);
    try {
      expect(await tie(targetWins, 2)).toMatchObject([{ table: 'public.notes', key: { id: 2 } }]);
      // The same change again: the row already holds it, which is no conflict.
      expect(await tie(sink, 1)).toEqual([]);
    } finally {
      await targetWins.close();
    }
    expect((await portal()).slice(0, 2).map((r) => r.note)).toEqual(['clinic, same time', 'portal']);
  });

  it('notes what it writes, so the reverse stream knows the echoes: the change time per key, each delete once', async () => {
    await sink.apply({ changes: [change('update', 2, 'clinic', '2026-12-03T10:00:07.000Z'), change('delete', 1, null, '2026-12-03T10:00:07.000Z')], deadLetters: [] });
    // The echo carries the column as the portal stored it.
    const [written] = await db.query<{ updated_at: string }>(`SELECT updated_at::text FROM visits WHERE id = 2`);
    expect(own.isUpsertEcho(api.url, 'public.visits', { id: 2 }, written!.updated_at)).toBe(true);
    expect(own.isUpsertEcho(api.url, 'public.visits', { id: '2' }, '2026-12-03T10:00:07+00:00')).toBe(true);
    expect(own.isUpsertEcho(api.url, 'public.visits', { id: 2 }, '2026-12-03T10:00:07.001+00:00')).toBe(false);
    expect(own.isUpsertEcho(api.url, 'public.visits', { id: 2 }, '2026-12-03T10:00:07.000417+00:00')).toBe(false);
    expect(own.takeDeleteEcho(api.url, 'public.visits', { id: 1 })).toBe(true);
    expect(own.takeDeleteEcho(api.url, 'public.visits', { id: 1 })).toBe(false);
  });

  it('leaves a portal user’s own writes to the portal’s clock and tombstones', async () => {
    await db.query(`UPDATE visits SET note = 'doctor' WHERE id = 1`);
    await db.query(`DELETE FROM visits WHERE id = 2`);
    const [row] = await db.query<{ fresh: boolean }>(`SELECT updated_at > now() - interval '1 minute' AS fresh FROM visits WHERE id = 1`);
    expect(row!.fresh).toBe(true);
    expect(await db.query(`SELECT key FROM cdc_sync_tombstones`)).toEqual([{ key: { id: 2 } }]);
  });
});
