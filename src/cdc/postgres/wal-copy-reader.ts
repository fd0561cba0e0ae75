import { CdcSyncError, ConfigError, errorMessage } from '../../core/errors.js';
import { toJsonText } from '../../core/json.js';
import { qualify, quoteTable } from '../../db/postgres/identifiers.js';
import type { WalCopyReader, WalTable } from './wal-copy.js';
import { ROW_ESTIMATE_SQL, walCopyChunkSql } from './wal-setup.js';

/** The postgres-wal copy's reads (WalCopier): a chunk with its snapshot and watermark, and a row estimate for progress. */
export function walCopyReader(query: <T>(sql: string, params: unknown[]) => Promise<T[]>, table: (source: string) => WalTable, stream: string): WalCopyReader {
  return {
    async chunk(source, after, limit, where) {
      const t = table(source);
      const rows = await query<Record<string, string | null>>(walCopyChunkSql(source, t.key, t.columns, after === null, where), [after === null ? null : toJsonText(after), limit, stream]).catch(
        (error: unknown) => {
          throw refused(error, source) ?? error;
        },
      );
      const columns = t.columns.map((_, i) => `c${i}`);
      // One row without `found` when the chunk is empty (the LEFT JOIN of the watermark's row).
      const found = rows.filter((r) => r.found !== null);
      return { marker: rows[0]!.marker!, snapshot: rows[0]!.snapshot!, rows: found.map((r) => columns.map((c) => r[c] ?? null)) };
    },
    async estimate(source) {
      const [row] = await query<{ n: number | null }>(ROW_ESTIMATE_SQL, [quoteTable(qualify(source))]);
      return row?.n !== null && row?.n !== undefined && row.n > 0 ? row.n : null;
    },
  };
}

/**
 * The server refused the copy's read: no EXECUTE on pg_logical_emit_message
 * or no SELECT on the table (42501), a read-only transaction (25006), or a
 * standby (55000: no WAL can be written during recovery). Waiting does not
 * help: a configuration error, which stops the stream with what to do.
 */
function refused(error: unknown, table: string): ConfigError | null {
  const code = error instanceof CdcSyncError ? error.context.code : undefined;
  if (code !== '42501' && code !== '25006' && code !== '55000') return null;
  if (code === '42501' && !/pg_logical_emit_message/.test(errorMessage(error))) {
    return new ConfigError(`source.url: the copy of ${table} cannot read it (${errorMessage(error)}); grant SELECT on it to this login`);
  }
  return new ConfigError(
    `source.url: the copy of ${table} writes its watermark with pg_logical_emit_message, which the server refused (${errorMessage(error)}); ` +
      'grant EXECUTE on it to this login (GRANT EXECUTE ON FUNCTION pg_logical_emit_message(boolean, text, text) TO …), point source.url at the primary, or set source.snapshot: never',
  );
}

