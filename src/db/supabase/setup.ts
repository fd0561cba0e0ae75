import { quoteIdent, quoteTable, qualify } from '../postgres/identifiers.js';
import type { TableConfig } from '../../core/mapping.js';

export const TOMBSTONES = { schema: 'public', name: 'cdc_sync_tombstones' };

/**
 * PostgreSQL (Supabase) set-up for a supabase-realtime source:
 * - the tables in the `supabase_realtime` publication, so Realtime streams them;
 * - REPLICA IDENTITY FULL, so updates and deletes carry the old row image;
 * - an updated-at column kept by a trigger, and an index on (updated-at, key)
 *   for the catch-up reads;
 * - optionally a tombstone table filled by delete triggers, because a read by
 *   timestamp cannot see a row that is gone.
 * Idempotent: safe to run again.
 */
export function supabaseSourceSetupSql(tables: TableConfig[], tombstones: boolean): string {
  const parts = [
    `CREATE SCHEMA IF NOT EXISTS cdc_sync;

-- Sets the column named by the trigger argument to the time of the write.
CREATE OR REPLACE FUNCTION cdc_sync.touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  -- A write by cdc-sync carries the other side's time: keep it, or the two sides would never agree.
  IF coalesce(current_setting('cdc_sync.origin', true), '') <> ''
     OR coalesce(nullif(current_setting('request.headers', true), '')::json ->> 'x-cdc-sync-origin', '') <> '' THEN
    RETURN NEW;
  END IF;
  NEW := jsonb_populate_record(NEW, jsonb_build_object(TG_ARGV[0], clock_timestamp()));
  RETURN NEW;
END
$$;

-- Two-way: cdc-sync's upsert of a row carries its change's time in the column named by the
-- trigger argument, and asks for this rule with the x-cdc-sync-ties header (the side a tie goes
-- to). A row changed here later is kept (the update is skipped); times compare to the
-- millisecond, as everywhere in cdc-sync. Its own change already travels the other way.
CREATE OR REPLACE FUNCTION cdc_sync.newer_wins() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  ties text := nullif(current_setting('request.headers', true), '')::json ->> 'x-cdc-sync-ties';
  stored timestamptz;
  incoming timestamptz;
BEGIN
  IF ties IS NULL THEN
    RETURN NEW;
  END IF;
  stored := date_trunc('milliseconds', (to_jsonb(OLD) ->> TG_ARGV[0])::timestamptz);
  incoming := (to_jsonb(NEW) ->> TG_ARGV[0])::timestamptz;
  IF stored > incoming OR (stored = incoming AND ties = 'target') THEN
    RETURN NULL;
  END IF;
  RETURN NEW;
END
$$;

DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'supabase_realtime') THEN
    CREATE PUBLICATION supabase_realtime;
  END IF;
END $$;
`,
  ];
  if (tombstones) {
    parts.push(`-- Deletes, for catch-up reads (Realtime delivers them live, but at most once).
CREATE TABLE IF NOT EXISTS ${TOMBSTONES.schema}.${TOMBSTONES.name} (
  id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  table_name text NOT NULL,
  key        jsonb NOT NULL,
  deleted_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS cdc_sync_tombstones_deleted ON ${TOMBSTONES.schema}.${TOMBSTONES.name} (deleted_at, id);
CREATE INDEX IF NOT EXISTS cdc_sync_tombstones_key ON ${TOMBSTONES.schema}.${TOMBSTONES.name} (table_name, key);

-- A tombstone makes cdc-sync delete the clinic's row: nobody but cdc-sync may read or write one.
-- Row level security without a policy shuts out every role but the owner and BYPASSRLS roles
-- (service_role), and no grant is left to the public API roles: new tables in public are granted
-- to anon and authenticated on older projects (default privileges), to nobody on current ones.
ALTER TABLE ${TOMBSTONES.schema}.${TOMBSTONES.name} ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON ${TOMBSTONES.schema}.${TOMBSTONES.name} FROM PUBLIC;
DO $$ BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN REVOKE ALL ON ${TOMBSTONES.schema}.${TOMBSTONES.name} FROM anon; END IF;
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN REVOKE ALL ON ${TOMBSTONES.schema}.${TOMBSTONES.name} FROM authenticated; END IF;
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN GRANT SELECT ON ${TOMBSTONES.schema}.${TOMBSTONES.name} TO service_role; END IF;
END $$;

-- The trigger arguments name the key columns. It runs as its owner (SECURITY DEFINER), so a portal
-- user who may delete a row can record its tombstone without any right on the table; the fixed
-- search_path keeps that user from redirecting the names it uses.
CREATE OR REPLACE FUNCTION cdc_sync.record_tombstone() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
DECLARE
  k jsonb := '{}';
  column_name text;
BEGIN
  -- cdc-sync's own deletes came from the other side, which has them already: no echo.
  IF coalesce(nullif(current_setting('request.headers', true), '')::json ->> 'x-cdc-sync-origin', '') <> '' THEN
    RETURN NULL;
  END IF;
  FOREACH column_name IN ARRAY TG_ARGV LOOP
    k := k || jsonb_build_object(column_name, to_jsonb(OLD) -> column_name);
  END LOOP;
  INSERT INTO ${TOMBSTONES.schema}.${TOMBSTONES.name} (table_name, key) VALUES (TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, k);
  RETURN NULL;
END
$$;

-- Two-way: a row deleted here after the change that would insert it again stays deleted (its
-- tombstone is the only trace of the delete). Arguments: the updated-at column, then the key columns.
-- Same header and tie rule as cdc_sync.newer_wins.
CREATE OR REPLACE FUNCTION cdc_sync.newer_than_tombstone() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
DECLARE
  ties text := nullif(current_setting('request.headers', true), '')::json ->> 'x-cdc-sync-ties';
  incoming timestamptz;
  deleted timestamptz;
  k jsonb := '{}';
  i int;
BEGIN
  IF ties IS NULL THEN
    RETURN NEW;
  END IF;
  incoming := (to_jsonb(NEW) ->> TG_ARGV[0])::timestamptz;
  FOR i IN 1 .. TG_NARGS - 1 LOOP
    k := k || jsonb_build_object(TG_ARGV[i], to_jsonb(NEW) -> TG_ARGV[i]);
  END LOOP;
  SELECT date_trunc('milliseconds', max(t.deleted_at)) INTO deleted
    FROM ${TOMBSTONES.schema}.${TOMBSTONES.name} t
   WHERE t.table_name = TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME AND t.key = k;
  IF deleted > incoming OR (deleted = incoming AND ties = 'target') THEN
    RETURN NULL;
  END IF;
  RETURN NEW;
END
$$;
`);
  }
  for (const table of tables) {
    const name = qualify(table.source);
    const t = quoteTable(name);
    const key = table.key ?? ['id'];
    const literal = (s: string) => `'${s.replace(/'/g, "''")}'`;
    const lines = [
      `-- ${name.schema}.${name.name}`,
      `DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_publication_tables WHERE pubname = 'supabase_realtime' AND schemaname = ${literal(name.schema!)} AND tablename = ${literal(name.name)}) THEN
    ALTER PUBLICATION supabase_realtime ADD TABLE ${t};
  END IF;
END $$;`,
      `ALTER TABLE ${t} REPLICA IDENTITY FULL;`,
      // cdc-sync reads through the API as service_role, which a table in public on current projects is not granted.
      grantToServiceRole(t, 'SELECT'),
    ];
    if (table.updatedAt) {
      lines.push(
        // Named to fire first: BEFORE triggers run in name order (cdc_sync_newer_wins, cdc_sync_skip_noop, cdc_sync_touch).
        `DROP TRIGGER IF EXISTS cdc_sync_newer_wins ON ${t};`,
        `CREATE TRIGGER cdc_sync_newer_wins BEFORE UPDATE ON ${t} FOR EACH ROW EXECUTE FUNCTION cdc_sync.newer_wins(${literal(table.updatedAt)});`,
        `DROP TRIGGER IF EXISTS cdc_sync_touch ON ${t};`,
        `CREATE TRIGGER cdc_sync_touch BEFORE INSERT OR UPDATE ON ${t} FOR EACH ROW EXECUTE FUNCTION cdc_sync.touch_updated_at(${literal(table.updatedAt)});`,
        `CREATE INDEX IF NOT EXISTS ${quoteIdent(`${name.name}_cdc_sync_catch_up`)} ON ${t} (${[table.updatedAt, ...key].map(quoteIdent).join(', ')});`,
      );
    }
    if (tombstones) {
      lines.push(
        `DROP TRIGGER IF EXISTS cdc_sync_tombstone ON ${t};`,
        `CREATE TRIGGER cdc_sync_tombstone AFTER DELETE ON ${t} FOR EACH ROW EXECUTE FUNCTION cdc_sync.record_tombstone(${key.map(literal).join(', ')});`,
        ...(table.updatedAt
          ? [
              `DROP TRIGGER IF EXISTS cdc_sync_newer_than_tombstone ON ${t};`,
              `CREATE TRIGGER cdc_sync_newer_than_tombstone BEFORE INSERT ON ${t} FOR EACH ROW EXECUTE FUNCTION cdc_sync.newer_than_tombstone(${[table.updatedAt, ...key].map(literal).join(', ')});`,
            ]
          : []),
        // An update that moves the row to another key leaves the old key behind as surely as a delete.
        `DROP TRIGGER IF EXISTS cdc_sync_tombstone_moved ON ${t};`,
        `CREATE TRIGGER cdc_sync_tombstone_moved AFTER UPDATE OF ${key.map(quoteIdent).join(', ')} ON ${t} FOR EACH ROW
  WHEN (${key.map((k) => `OLD.${quoteIdent(k)} IS DISTINCT FROM NEW.${quoteIdent(k)}`).join(' OR ')})
  EXECUTE FUNCTION cdc_sync.record_tombstone(${key.map(literal).join(', ')});`,
      );
    }
    parts.push(`${lines.join('\n')}\n`);
  }
  return parts.join('\n');
}

/** A GRANT to Supabase's service_role, skipped where the role does not exist (plain PostgreSQL). */
export function grantToServiceRole(table: string, privileges: string): string {
  return `DO $$ BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN GRANT ${privileges} ON ${table} TO service_role; END IF;
END $$;`;
}
