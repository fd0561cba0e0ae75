import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { supabaseSourceSetupSql } from '../../../src/cdc/supabase/setup.js';
import { createTestDatabase, type TestDatabase } from '../../support/test-database.js';

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase('supabase_setup');
  await db.query(`CREATE TABLE aligner_notes (id bigint PRIMARY KEY, note text, updated_at timestamptz)`);
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
});
