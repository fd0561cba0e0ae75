import { enableCdcSql, queueTriggerSql, syncQueueSql } from '../cdc/mssql/queue-setup.js';
import { changelogSetupSql } from '../cdc/postgres/changelog-setup.js';
import { DEFAULT_NAME, walSetupSql } from '../cdc/postgres/wal-setup.js';
import { sqliteChangelogSetupSql } from '../cdc/sqlite/changelog-setup.js';
import { openSqlite } from '../sinks/sqlite/connection.js';
import { supabaseSourceSetupSql } from '../cdc/supabase/setup.js';
import type { Config } from '../config/schema.js';
import { skipNoopSetupSql } from '../sinks/supabase/skip-noop-sql.js';

/**
 * The database set-up the configured streams need, as one script per
 * database, for the operator to review and apply. Sinks create their own
 * bookkeeping tables (cdc_sync.checkpoints, cdc_sync.dead_letters) at start.
 */
export function initSql(config: Config): string {
  const parts: string[] = [];
  for (const [i, stream] of config.streams.entries()) {
    if (!stream.enabled) {
      parts.push(`-- stream "${stream.name}" is disabled: no set-up printed for it\n`);
      continue;
    }
    if (stream.source.type === 'postgres-changelog') {
      parts.push(
        `-- stream "${stream.name}": run on the source database (${redact(stream.source.url)})\n` +
          changelogSetupSql(stream.tables.map((t) => t.source)),
      );
    }
    if (stream.source.type === 'postgres-wal') {
      parts.push(
        `-- stream "${stream.name}": run on the source database (${redact(stream.source.url)})\n` +
          walSetupSql(
            stream.tables.map((t) => t.source),
            stream.source.publication ?? DEFAULT_NAME(stream.name),
            stream.source.slot ?? DEFAULT_NAME(stream.name),
          ),
      );
    }
    if (stream.source.type === 'sqlite-changelog') {
      // The triggers list the tables' columns, so the script is generated from the database itself.
      const db = openSqlite(stream.source.url, `streams[${i}].source.url`, { readonly: true });
      try {
        parts.push(
          `-- stream "${stream.name}": run on the source SQLite database (${stream.source.url}), e.g. sqlite3 FILE < script.sql\n` +
            sqliteChangelogSetupSql(db, stream.tables.map((t) => t.source)),
        );
      } finally {
        db.close();
      }
    }
    const target = `-- stream "${stream.name}": run on the source database (${redact(stream.source.url)}) with sqlcmd or SSMS (GO separates batches)\n`;
    if (stream.source.type === 'mssql-queue') {
      const { queueTable } = stream.source;
      const triggers = stream.tables.map((t, j) => queueTriggerSql({ source: t.source, key: t.key ?? [] }, queueTable, `streams[${i}].tables[${j}]`));
      parts.push(target + [syncQueueSql(queueTable), ...triggers].join('\n'));
    }
    if (stream.source.type === 'mssql-cdc') parts.push(target + enableCdcSql(stream.tables.map((t) => t.source)));
    if (stream.source.type === 'supabase-realtime') {
      parts.push(
        `-- stream "${stream.name}": run on the Supabase (PostgreSQL) database behind ${redact(stream.source.url)}\n` +
          supabaseSourceSetupSql(stream.tables, stream.source.tombstones),
      );
    }
    const sinkPart = sinkSetupSql(stream);
    if (sinkPart) parts.push(sinkPart);
  }
  return parts.length > 0 ? `${parts.join('\n')}` : '-- the configured streams need no database set-up\n';
}

/**
 * Set-up on the sink side. Only the supabase sink needs one: PostgREST's
 * upsert rewrites rows that did not change, so a trigger drops those updates
 * (no Realtime event, no echo). The postgres sink skips them in its own
 * upsert statement (`WHERE … IS DISTINCT FROM …`).
 */
function sinkSetupSql(stream: Config['streams'][number]): string | null {
  if (stream.sink.type !== 'supabase') return null;
  return (
    `-- stream "${stream.name}": run on the Supabase (PostgreSQL) database behind ${redact(stream.sink.url)} (SQL editor or psql)\n` +
    skipNoopSetupSql(stream.tables.map((t) => t.target))
  );
}

/** The URL without credentials: the script may be pasted into tickets. */
function redact(url: string): string {
  try {
    const u = new URL(url);
    u.username = '';
    u.password = '';
    return u.toString();
  } catch {
    return 'configured URL';
  }
}
