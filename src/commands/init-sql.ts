import { enableCdcSql, queueTriggerSql, syncQueueSql } from '../db/mssql/queue-setup.js';
import { ConfigError } from '../core/errors.js';
import { changelogSetupSql } from '../cdc/postgres/changelog-setup.js';
import { DEFAULT_NAME, walSetupSql } from '../cdc/postgres/wal-setup.js';
import { sqliteChangelogSetupSql } from '../db/sqlite/changelog-setup.js';
import { openSqlite } from '../db/sqlite/connection.js';
import { supabaseSourceSetupSql } from '../db/supabase/setup.js';
import type { Config } from '../config/schema.js';
import { skipNoopSetupSql } from '../sinks/supabase/skip-noop-sql.js';

/** The kinds of database a set-up script is written for; each script runs as is with its own client (sqlcmd, psql, sqlite3). */
export const SETUP_TARGETS = ['mssql', 'postgres', 'supabase', 'sqlite'] as const;
export type SetupTarget = (typeof SETUP_TARGETS)[number];

interface SetupPart {
  target: SetupTarget;
  text: string;
}

/**
 * The database set-up the configured streams need, for the operator to
 * review and apply: all of it, or only what runs on one kind of database
 * (`target`). Sinks create their own bookkeeping tables
 * (cdc_sync.checkpoints, cdc_sync.dead_letters) at start.
 */
export function initSql(config: Config, target?: SetupTarget): string {
  const parts = setupParts(config).filter((p) => !target || p.target === target);
  if (parts.length === 0) return `-- the configured streams need no ${target ? `${target} ` : 'database '}set-up\n`;
  return parts.map((p) => p.text).join('\n');
}

/** One script per kind of database that needs a set-up, for `init-sql --out DIR`. */
export function initSqlFiles(config: Config): Map<SetupTarget, string> {
  const parts = setupParts(config);
  const files = new Map<SetupTarget, string>();
  for (const target of SETUP_TARGETS) {
    const mine = parts.filter((p) => p.target === target);
    if (mine.length > 0) files.set(target, mine.map((p) => p.text).join('\n'));
  }
  return files;
}

function setupParts(config: Config): SetupPart[] {
  const parts: SetupPart[] = [];
  for (const [i, stream] of config.streams.entries()) {
    if (!stream.enabled) continue;
    if (stream.source.type === 'postgres-changelog') {
      parts.push({
        target: 'postgres',
        text: `-- stream "${stream.name}": run on the source database (${redact(stream.source.url)}), e.g. psql -f\n` + changelogSetupSql(stream.tables.map((t) => t.source)),
      });
    }
    if (stream.source.type === 'postgres-wal') {
      parts.push({
        target: 'postgres',
        text:
          `-- stream "${stream.name}": run on the source database (${redact(stream.source.url)}), e.g. psql -f\n` +
          walSetupSql(
            stream.tables.map((t) => t.source),
            stream.source.publication ?? DEFAULT_NAME(stream.name),
            stream.source.slot ?? DEFAULT_NAME(stream.name),
          ),
      });
    }
    if (stream.source.type === 'sqlite-changelog') {
      // The triggers list the tables' columns, so the script is generated from the database itself.
      const db = openSqlite(stream.source.url, `streams[${i}].source.url`, { readonly: true });
      try {
        parts.push({
          target: 'sqlite',
          text:
            `-- stream "${stream.name}": run on the source SQLite database (${stream.source.url}), e.g. sqlite3 FILE < script.sql\n` +
            sqliteChangelogSetupSql(db, stream.tables.map((t) => t.source)),
        });
      } finally {
        db.close();
      }
    }
    const onSqlServer = `-- stream "${stream.name}": run on the source database (${redact(stream.source.url)}) with sqlcmd -b -i or SSMS (GO separates batches)\n`;
    if (stream.source.type === 'mssql-queue') {
      const { queueTable } = stream.source;
      const triggers = stream.tables.map((t, j) => queueTriggerSql({ source: t.source, key: t.key ?? [] }, queueTable, `streams[${i}].tables[${j}]`));
      parts.push({ target: 'mssql', text: onSqlServer + [syncQueueSql(queueTable), ...triggers].join('\n') });
    }
    if (stream.source.type === 'mssql-cdc') parts.push({ target: 'mssql', text: onSqlServer + enableCdcSql(stream.tables.map((t) => t.source)) });
    if (stream.source.type === 'supabase-realtime') {
      parts.push({
        target: 'supabase',
        text:
          `-- stream "${stream.name}": run on the Supabase (PostgreSQL) database behind ${redact(stream.source.url)} (SQL editor or psql -f)\n` +
          supabaseSourceSetupSql(stream.tables, stream.source.tombstones),
      });
    }
    const sinkPart = sinkSetupSql(stream);
    if (sinkPart) parts.push(sinkPart);
  }
  return parts;
}

/**
 * Set-up on the sink side. Only the supabase sink needs one: PostgREST's
 * upsert rewrites rows that did not change, so a trigger drops those updates
 * (no Realtime event, no echo). The postgres sink skips them in its own
 * upsert statement (`WHERE … IS DISTINCT FROM …`).
 */
function sinkSetupSql(stream: Config['streams'][number]): SetupPart | null {
  if (stream.sink.type !== 'supabase') return null;
  const unnamed = stream.tables.findIndex((t) => !t.target);
  if (unnamed >= 0) throw new ConfigError(`stream ${stream.name}: tables[${unnamed}].target: name the target table; its set-up is written without a connection to the database`);
  return {
    target: 'supabase',
    text:
      `-- stream "${stream.name}": run on the Supabase (PostgreSQL) database behind ${redact(stream.sink.url)} (SQL editor or psql -f)\n` +
      skipNoopSetupSql(stream.tables.map((t) => t.target)),
  };
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
