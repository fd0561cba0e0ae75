import { grantToServiceRole } from '../../db/supabase/setup.js';
import { qualify, quoteTable } from '../../db/postgres/identifiers.js';

/**
 * Set-up for tables a `supabase` sink writes. PostgREST's merge-duplicates
 * upsert is `ON CONFLICT … DO UPDATE SET` every sent column, unconditionally
 * (PostgREST/postgrest: src/PostgREST/Query/QueryBuilder.hs, mutatePlanToQuery
 * Insert), so re-sending a row that is already there would make a new row
 * version, a WAL record and a Realtime event — an echo back to the source.
 * This BEFORE UPDATE trigger drops such updates in the database: returning
 * NULL skips the row, so nothing is written, logged or broadcast. It is what
 * guarantees that no-op updates stay silent on the Supabase side.
 *
 * `OLD *= NEW` (record image equality) rather than `IS NOT DISTINCT FROM`:
 * the latter needs an equality operator for every column type and fails on
 * json, point, xml…; image equality works for every type, treats NULLs as
 * equal and compares TOASTed values by content. A numeric written as 1.00
 * over 1.0 counts as a change (it shows differently), which is harmless.
 *
 * BEFORE triggers of one table fire in name order: `cdc_sync_skip_noop` runs
 * before e.g. `cdc_sync_updated_at` or `handle_updated_at`, so a trigger that
 * stamps updated_at does not turn a no-op into a change.
 *
 * Changes written through PostgREST are recognizable in the database: PostgREST
 * sets the request headers as the transaction setting `request.headers`, and
 * cdc-sync sends `x-cdc-sync-origin: <stream>`, so a trigger can read
 * `current_setting('request.headers', true)::json->>'x-cdc-sync-origin'`.
 */
export const SKIP_NOOP_FUNCTION_SQL = `-- cdc-sync: updates that change nothing are not written (no row version, no WAL, no Realtime event)
CREATE SCHEMA IF NOT EXISTS cdc_sync;

CREATE OR REPLACE FUNCTION cdc_sync.skip_noop_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF OLD *= NEW THEN
    RETURN NULL;
  END IF;
  RETURN NEW;
END
$$;
`;

export function skipNoopTriggerSql(table: string): string {
  const name = quoteTable(qualify(table));
  return `DROP TRIGGER IF EXISTS cdc_sync_skip_noop ON ${name};
CREATE TRIGGER cdc_sync_skip_noop BEFORE UPDATE ON ${name}
  FOR EACH ROW EXECUTE FUNCTION cdc_sync.skip_noop_update();
-- The sink writes through the API as service_role, which a table in public on current projects is not granted.
${grantToServiceRole(name, 'SELECT, INSERT, UPDATE, DELETE')}
`;
}

/** The whole script for the target tables of one stream; idempotent. */
export function skipNoopSetupSql(tables: string[]): string {
  return [SKIP_NOOP_FUNCTION_SQL, ...[...new Set(tables)].map(skipNoopTriggerSql)].join('\n');
}
