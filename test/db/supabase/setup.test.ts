import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { supabaseSourceSetupSql } from '../../../src/db/supabase/setup.js';
import { createTestDatabase, type TestDatabase } from '../../support/test-database.js';
import { createSupabaseRoles } from '../../support/supabase-roles.js';

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase('supabase_setup');
  await createSupabaseRoles(db);
  await db.query(`GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role`);
  // The portal's table as on a current project: granted to no API role.
  await db.query(`CREATE TABLE aligner_notes (id bigint PRIMARY KEY, note text, updated_at timestamptz)`);
  await db.query(`GRANT DELETE, SELECT ON aligner_notes TO authenticated`);
  // The tombstone table as on an older project, whose default privileges grant new tables in public to every API role.
  await db.query(`ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON TABLES TO anon, authenticated, service_role`);
  const sql = supabaseSourceSetupSql([{ source: 'public.aligner_notes', target: 'dbo.tblAlignerNotes', key: ['id'], updatedAt: 'updated_at' }], true);
  await db.query(sql);
  await db.query(sql); // idempotent
});

afterAll(async () => {
  await db.drop();
});

describe('supabase-realtime set-up SQL', () => {
  it('puts the table in the supabase_realtime publication with full old images', async () => {
    expect(await db.query(`SELECT tablename FROM pg_publication_tables WHERE pubname = 'supabase_realtime'`)).toEqual([{ tablename: 'aligner_notes' }]);
    expect(await db.query(`SELECT relreplident FROM pg_class WHERE relname = 'aligner_notes'`)).toEqual([{ relreplident: 'f' }]);
  });

  it('keeps the updated-at column current on every write and indexes it with the key for catch-up reads', async () => {
    await db.query(`INSERT INTO aligner_notes (id, note) VALUES (1, 'a')`);
    const [first] = await db.query<{ updated_at: Date }>(`SELECT updated_at FROM aligner_notes WHERE id = 1`);
    expect(first!.updated_at).toBeInstanceOf(Date);
    await db.query(`UPDATE aligner_notes SET note = 'b' WHERE id = 1`);
    const [second] = await db.query<{ updated_at: Date }>(`SELECT updated_at FROM aligner_notes WHERE id = 1`);
    expect(second!.updated_at.getTime()).toBeGreaterThanOrEqual(first!.updated_at.getTime());
    const [index] = await db.query<{ indexdef: string }>(`SELECT indexdef FROM pg_indexes WHERE indexname = 'aligner_notes_cdc_sync_catch_up'`);
    expect(index!.indexdef).toContain('(updated_at, id)');
  });

  it('records a tombstone with the key of every deleted row', async () => {
    await db.query(`INSERT INTO aligner_notes (id, note) VALUES (2, 'x')`);
    await db.query(`DELETE FROM aligner_notes WHERE id = 2`);
    expect(await db.query(`SELECT table_name, key FROM cdc_sync_tombstones`)).toEqual([{ table_name: 'public.aligner_notes', key: { id: 2 } }]);
  });

  it('lets a portal user delete a row (its tombstone written for it), while anon can neither write nor read tombstones and service_role reads them', async () => {
    await db.query(`INSERT INTO aligner_notes (id, note) VALUES (3, 'portal row')`);
    // One statement per call: a pool may hand the next call another connection.
    const as = (role: string, sql: string) =>
      db.query(`DO $$ BEGIN SET LOCAL ROLE ${role}; ${sql}; END $$`).then(
        () => 'ok',
        (e: { code?: string }) => e.code,
      );
    expect(await as('authenticated', `DELETE FROM public.aligner_notes WHERE id = 3`)).toBe('ok');
    expect(await db.query(`SELECT key FROM cdc_sync_tombstones WHERE key = '{"id": 3}'`)).toEqual([{ key: { id: 3 } }]);
    expect(await as('anon', `INSERT INTO public.cdc_sync_tombstones (table_name, key) VALUES ('public.aligner_notes', '{"id": 1}')`)).toBe('42501');
    expect(await as('anon', `PERFORM * FROM public.cdc_sync_tombstones`)).toBe('42501');
    expect(await as('authenticated', `PERFORM * FROM public.cdc_sync_tombstones`)).toBe('42501');
    expect(await as('service_role', `PERFORM * FROM public.cdc_sync_tombstones`)).toBe('ok');
    expect(await db.query(`SELECT rolbypassrls FROM pg_roles WHERE rolname = 'service_role'`)).toEqual([{ rolbypassrls: true }]);
    expect(await db.query(`SELECT relrowsecurity FROM pg_class WHERE relname = 'cdc_sync_tombstones'`)).toEqual([{ relrowsecurity: true }]);
    expect(await db.query(`SELECT prosecdef, proconfig FROM pg_proc WHERE proname = 'record_tombstone'`)).toEqual([{ prosecdef: true, proconfig: ['search_path=""'] }]);
  });

  it('grants service_role what the catch-up reads need on the source table', async () => {
    expect(await db.query(`SELECT has_table_privilege('service_role', 'public.aligner_notes', 'SELECT') AS ok`)).toEqual([{ ok: true }]);
  });
});
