import { enableCdcSql, queueTriggerSql, syncQueueSql } from '../cdc/mssql/queue-setup.js';
import { changelogSetupSql } from '../cdc/postgres/changelog-setup.js';
import type { Config } from '../config/schema.js';

/**
 * The database set-up the configured streams need, as one script per
 * database, for the operator to review and apply. Sinks create their own
 * bookkeeping tables (cdc_sync.checkpoints, cdc_sync.dead_letters) at start.
 */
export function initSql(config: Config): string {
  const parts: string[] = [];
  for (const [i, stream] of config.streams.entries()) {
    if (stream.source.type === 'postgres-changelog') {
      parts.push(
        `-- stream "${stream.name}": run on the source database (${redact(stream.source.url)})\n` +
          changelogSetupSql(stream.tables.map((t) => t.source)),
      );
    }
    const target = `-- stream "${stream.name}": run on the source database (${redact(stream.source.url)}) with sqlcmd or SSMS (GO separates batches)\n`;
    if (stream.source.type === 'mssql-queue') {
      const { queueTable } = stream.source;
      const triggers = stream.tables.map((t, j) => queueTriggerSql({ source: t.source, key: t.key ?? [] }, queueTable, `streams[${i}].tables[${j}]`));
      parts.push(target + [syncQueueSql(queueTable), ...triggers].join('\n'));
    }
    if (stream.source.type === 'mssql-cdc') parts.push(target + enableCdcSql(stream.tables.map((t) => t.source)));
  }
  return parts.length > 0 ? `${parts.join('\n')}` : '-- the configured streams need no database set-up\n';
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
