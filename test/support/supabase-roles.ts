import type { TestDatabase } from './test-database.js';

/** Supabase's API roles (supabase/postgres migrations: anon and authenticated NOLOGIN, service_role NOLOGIN BYPASSRLS); cluster-wide. */
export async function createSupabaseRoles(database: TestDatabase): Promise<void> {
  await database.query(`DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN CREATE ROLE anon NOLOGIN NOINHERIT; END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN CREATE ROLE authenticated NOLOGIN NOINHERIT; END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS; END IF;
  END $$`).catch(() => undefined); // another test file may create them at the same moment
}
