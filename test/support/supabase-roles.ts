/**
 * Supabase's API roles and the login PostgREST connects as (supabase/postgres:
 * migrations/db/init-scripts/00000000000000-initial-schema.sql — anon and
 * authenticated NOLOGIN NOINHERIT, service_role NOLOGIN NOINHERIT BYPASSRLS,
 * `authenticator` LOGIN NOINHERIT and granted the three; usage on schema
 * public for the three). No default privileges on tables: a table made in
 * public on a current project is granted to no API role until its owner
 * says so (https://supabase.com/docs/guides/api/securing-your-api).
 */
const ROLES_SQL = `DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN CREATE ROLE anon NOLOGIN NOINHERIT; END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN CREATE ROLE authenticated NOLOGIN NOINHERIT; END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS; END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticator') THEN CREATE ROLE authenticator LOGIN NOINHERIT; END IF;
END $$;
GRANT anon, authenticated, service_role TO authenticator;
GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;`;

/** Makes the roles (cluster-wide) and grants schema usage in the database `db` is connected to. */
export async function createSupabaseRoles(db: { query(sql: string): Promise<unknown> }): Promise<void> {
  for (let attempt = 0; ; attempt += 1) {
    try {
      await db.query(ROLES_SQL);
      return;
    } catch (error) {
      // Roles are cluster-wide: another test file may be making them at this moment.
      if (attempt >= 3) throw error;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}
