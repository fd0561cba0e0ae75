import { quoteTable, qualify } from '../../db/postgres/identifiers.js';

/**
 * Set-up for the `postgres-changelog` source: one change table, one trigger
 * function, one trigger per captured table. Idempotent: safe to run again
 * after adding a table.
 */
export const CHANGELOG_SCHEMA_SQL = `-- cdc-sync change log (postgres-changelog source)
CREATE SCHEMA IF NOT EXISTS cdc_sync;

CREATE TABLE IF NOT EXISTS cdc_sync.changes (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  table_name  text NOT NULL,                         -- schema.table
  op          char(1) NOT NULL CHECK (op IN ('I', 'U', 'D')),
  row_data    text,                                  -- after-image as JSON text (null for deletes)
  old_data    text,                                  -- before-image as JSON text (null for inserts)
  origin      text,                                  -- application_name of the writer
  xid         xid8 NOT NULL DEFAULT pg_current_xact_id(),
  captured_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
-- The reader finds each range of committed transactions by xid, then pages by id.
CREATE INDEX IF NOT EXISTS changes_xid ON cdc_sync.changes (xid);
-- Where each stream reading this log stands: the oldest transaction its checkpoint
-- may still need. Changes older than every reader's are applied everywhere and are
-- pruned after source.retentionHours. Delete the row of a stream you remove.
CREATE TABLE IF NOT EXISTS cdc_sync.readers (
  stream     text PRIMARY KEY,
  oldest_xid xid8 NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- Rows written by cdc-sync carry the session setting cdc_sync.origin (or, written
-- through Supabase's REST API, the request header x-cdc-sync-origin) and are
-- not captured again: that is what stops a two-way sync from echoing.
-- Updates that change nothing are not captured either.
CREATE OR REPLACE FUNCTION cdc_sync.capture() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF coalesce(current_setting('cdc_sync.origin', true), '') <> ''
     OR coalesce(nullif(current_setting('request.headers', true), '')::json ->> 'x-cdc-sync-origin', '') <> '' THEN
    RETURN NULL;
  END IF;
  -- *= compares the stored images: unlike IS NOT DISTINCT FROM it works for json, point and xml columns too.
  IF TG_OP = 'UPDATE' AND OLD *= NEW THEN
    RETURN NULL;
  END IF;
  INSERT INTO cdc_sync.changes (table_name, op, row_data, old_data, origin)
  VALUES (TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME,
          left(TG_OP, 1),
          CASE WHEN TG_OP <> 'DELETE' THEN row_to_json(NEW)::text END,
          CASE WHEN TG_OP <> 'INSERT' THEN row_to_json(OLD)::text END,
          nullif(current_setting('application_name', true), ''));
  RETURN NULL;
END
$$;
`;

export function changelogTriggerSql(table: string): string {
  const name = quoteTable(qualify(table));
  return `DROP TRIGGER IF EXISTS cdc_sync_capture ON ${name};
CREATE TRIGGER cdc_sync_capture AFTER INSERT OR UPDATE OR DELETE ON ${name}
  FOR EACH ROW EXECUTE FUNCTION cdc_sync.capture();
`;
}

export function changelogSetupSql(tables: string[]): string {
  return [CHANGELOG_SCHEMA_SQL, ...tables.map(changelogTriggerSql)].join('\n');
}

