// SQL of the replication poller. Realtime's postgres_cdc_rls extension reads changes by
// polling a temporary logical replication slot with wal2json (supabase/realtime
// lib/extensions/postgres_cdc_rls/replications.ex, prepare_replication + list_changes, and
// priv/repo/tenant_schema/realtime/functions/list_changes.sql), and shapes each change with
// realtime.apply_rls (…/functions/apply_rls.sql) and realtime.cast (…/functions/cast.sql).
// Those functions live in the tenant's `realtime` schema; this stand-in keeps its equivalents
// in the poller session's pg_temp schema so that it never changes the database under test.
// The per-role part of apply_rls (column privileges, 401, RLS) runs after routing, once per claims
// role (Poller.shape). Left out on purpose: `select` column lists.

/** Session set-up, run once on the connection that owns the slot. */
export const SETUP_SQL = String.raw`
-- Supabase databases run in UTC; timestamptz values are written in the session's zone.
SET TimeZone = 'UTC';

-- realtime.cast: a wal2json value (text) → to_jsonb of the value read as its column type, so
-- numbers stay JSON numbers, json/jsonb become nested JSON, arrays JSON arrays, timestamps
-- ISO 8601 text as PostgreSQL's to_jsonb writes them; bytea stays the text wal2json sent:
-- hex digits without the \x (wal2json.c, BYTEAOID; migration FixByteaDoubleEncodingInCast).
CREATE FUNCTION pg_temp.rt_cast(val text, typ regtype) RETURNS jsonb LANGUAGE plpgsql AS $fn$
DECLARE result jsonb;
BEGIN
  IF typ = 'bytea'::regtype THEN RETURN to_jsonb(val); END IF;
  EXECUTE format('SELECT to_jsonb(%L::%s)', val, typ) INTO result;
  RETURN result;
END $fn$;

-- realtime.check_equality_op: both sides read as the column type, compared with the operator.
CREATE FUNCTION pg_temp.rt_check(op text, typ regtype, lhs text, rhs text) RETURNS boolean LANGUAGE plpgsql AS $fn$
DECLARE result boolean;
BEGIN
  IF op = 'in' THEN
    EXECUTE format('SELECT %L::%s = ANY (%L::%s[])', lhs, typ, rhs, typ) INTO result;
  ELSE
    EXECUTE format('SELECT %L::%s %s %L::%s', lhs, typ,
      CASE op WHEN 'eq' THEN '=' WHEN 'neq' THEN '<>' WHEN 'lt' THEN '<' WHEN 'lte' THEN '<='
              WHEN 'gt' THEN '>' WHEN 'gte' THEN '>=' END, rhs, typ) INTO result;
  END IF;
  RETURN coalesce(result, false);
END $fn$;

-- realtime.subscription_check_filters: a filter must name a column and its value must be
-- readable as that column's type, or the subscription is refused.
CREATE FUNCTION pg_temp.rt_check_filter(rel regclass, col text, op text, val text) RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE typ regtype;
BEGIN
  SELECT a.atttypid::regtype INTO typ FROM pg_attribute a
   WHERE a.attrelid = rel AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped;
  IF typ IS NULL THEN RAISE EXCEPTION 'invalid column for filter %', col; END IF;
  EXECUTE format('SELECT %L::%s', val, typ::text || CASE WHEN op = 'in' THEN '[]' ELSE '' END);
END $fn$;

-- realtime.apply_rls, output side: one wal2json v2 change → the pieces of the message data.
CREATE FUNCTION pg_temp.rt_change(wal jsonb, max_bytes int,
  OUT entity oid, OUT commit_timestamp text, OUT columns_json text, OUT record_json text,
  OUT old_record_json text, OUT errors text[], OUT filter_values jsonb)
LANGUAGE plpgsql AS $fn$
DECLARE
  rel regclass := to_regclass(format('%I.%I', wal->>'schema', wal->>'table'));
  act text := wal->>'action';
  oversized boolean := octet_length(wal::text) > max_bytes;
  rls boolean;
  pks text[];
  new_cols jsonb;
  old_cols jsonb;
BEGIN
  IF rel IS NULL THEN RETURN; END IF;
  entity := rel;
  SELECT c.relrowsecurity INTO rls FROM pg_class c WHERE c.oid = rel;
  SELECT coalesce(array_agg(p->>'name'), '{}') INTO pks FROM jsonb_array_elements(coalesce(wal->'pk', '[]')) p;
  -- [{n: name, t: type, v: value as JSON}] for the new tuple and the replica identity
  SELECT coalesce(jsonb_agg(jsonb_build_object('n', x->>'name', 't', ty::text,
           'v', pg_temp.rt_cast((x->'value') #>> '{}', ty)) ORDER BY i), '[]')
    INTO new_cols
    FROM jsonb_array_elements(coalesce(wal->'columns', '[]')) WITH ORDINALITY AS e(x, i),
         LATERAL (SELECT coalesce((x->>'typeoid')::regtype, (x->>'type')::regtype) AS ty) t;
  SELECT coalesce(jsonb_agg(jsonb_build_object('n', x->>'name', 't', ty::text,
           'v', pg_temp.rt_cast((x->'value') #>> '{}', ty)) ORDER BY i), '[]')
    INTO old_cols
    FROM jsonb_array_elements(coalesce(wal->'identity', '[]')) WITH ORDINALITY AS e(x, i),
         LATERAL (SELECT coalesce((x->>'typeoid')::regtype, (x->>'type')::regtype) AS ty) t;
  filter_values := jsonb_build_object(
    'new', (SELECT coalesce(jsonb_object_agg(c->>'n', jsonb_build_array(c->>'t', c->'v' #>> '{}')), '{}') FROM jsonb_array_elements(new_cols) c),
    'old', (SELECT coalesce(jsonb_object_agg(c->>'n', jsonb_build_array(c->>'t', c->'v' #>> '{}')), '{}') FROM jsonb_array_elements(old_cols) c));

  IF act <> 'D' AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(new_cols) c WHERE c->>'n' = ANY (pks)) THEN
    errors := ARRAY['Error 400: Bad Request, no primary key'];
    RETURN;
  END IF;

  commit_timestamp := to_char((wal->>'timestamp')::timestamptz AT TIME ZONE 'utc', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"');
  SELECT jsonb_agg(jsonb_build_object('name', a.attname, 'type', t.typname) ORDER BY a.attnum)::text
    INTO columns_json
    FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
   WHERE a.attrelid = rel AND a.attnum > 0;
  IF act IN ('I', 'U') THEN
    -- values missing from the new tuple (unchanged TOAST) come from the identity
    SELECT jsonb_object_agg(coalesce(n.c->>'n', o.c->>'n'), CASE WHEN n.c IS NULL THEN o.c->'v' ELSE n.c->'v' END)::text
      INTO record_json
      FROM jsonb_array_elements(new_cols) n(c) FULL JOIN jsonb_array_elements(old_cols) o(c) ON n.c->>'n' = o.c->>'n'
     WHERE NOT oversized OR octet_length((n.c->'v')::text) <= 64;
  END IF;
  IF act IN ('U', 'D') THEN
    -- the old image is the replica identity: key columns under DEFAULT, every column under FULL;
    -- deletes on tables with RLS enabled keep only the key
    SELECT jsonb_object_agg(o.c->>'n', o.c->'v')::text
      INTO old_record_json
      FROM jsonb_array_elements(old_cols) o(c)
     WHERE (NOT oversized OR octet_length((o.c->'v')::text) <= 64)
       AND (act = 'U' OR NOT rls OR o.c->>'n' = ANY (pks));
  END IF;
  IF oversized THEN errors := ARRAY['Error 413: Payload Too Large']; END IF;
END $fn$;
`;

/**
 * One poll: drain up to $3 changes of slot $2, restricted to the tables and actions of
 * publication $1 the way list_changes.sql asks wal2json for them, in commit order.
 * Tables are named for wal2json's add-tables with `\`, `,`, `.` and blanks escaped
 * (…/functions/wal2json_escape_identifier.sql).
 */
export const POLL_SQL = String.raw`
WITH pub AS (
  SELECT concat_ws(',',
           CASE WHEN bool_or(p.pubinsert) THEN 'insert' END,
           CASE WHEN bool_or(p.pubupdate) THEN 'update' END,
           CASE WHEN bool_or(p.pubdelete) THEN 'delete' END) AS actions,
         coalesce(string_agg(
           regexp_replace(t.schemaname, '([\\,.[:space:]])', '\\\1', 'g') || '.' ||
           regexp_replace(t.tablename, '([\\,.[:space:]])', '\\\1', 'g'), ',')
           FILTER (WHERE t.tablename IS NOT NULL), '') AS add_tables
    FROM pg_publication p
    LEFT JOIN pg_publication_tables t ON t.pubname = p.pubname
   WHERE p.pubname = $1
   GROUP BY p.pubname
), raw AS MATERIALIZED (
  SELECT c.n, c.lsn, c.data::jsonb AS wal, pub.add_tables
    FROM pub, pg_logical_slot_get_changes($2, NULL, $3,
      'include-pk', 'true',
      'include-transaction', 'false',
      'include-timestamp', 'true',
      'include-type-oids', 'true',
      'format-version', '2',
      'actions', pub.actions,
      'add-tables', pub.add_tables) WITH ORDINALITY AS c(lsn, xid, data, n)
)
SELECT raw.lsn::text AS lsn, raw.wal->>'action' AS action, raw.wal->>'schema' AS schema,
       raw.wal->>'table' AS "table", ch.*
  FROM raw CROSS JOIN LATERAL pg_temp.rt_change(raw.wal, $4) ch
 WHERE raw.add_tables <> '' AND raw.wal->>'action' IN ('I', 'U', 'D')
 ORDER BY raw.n`;

/** Publication tables a binding covers (Subscriptions.create's sub_tables, '*' = any). */
export const SUBSCRIPTION_TABLES_SQL = `
SELECT format('%I.%I', schemaname, tablename)::regclass::oid AS oid
  FROM pg_publication_tables
 WHERE pubname = $1
   AND schemaname LIKE (CASE $2 WHEN '*' THEN '%' ELSE $2 END) ESCAPE ''
   AND tablename LIKE (CASE $3 WHEN '*' THEN '%' ELSE $3 END) ESCAPE ''`;
