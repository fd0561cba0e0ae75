import { Observable, Subject } from 'rxjs';
import { ReadGeneration } from '../read-generation.js';
import type { SourceChunk } from '../../core/change-event.js';
import { ConfigError } from '../../core/errors.js';
import type { TableConfig } from '../../core/mapping.js';
import { openSqlite, quoteLiteral, sqliteTableName, tableColumns, type SqliteDatabase } from '../../db/sqlite/connection.js';
import { classifySqliteError, isSqliteConnectionError } from '../../db/sqlite/errors.js';
import type { StreamContext } from '../../streams/context.js';
import type { RetryPolicy } from '../../streams/retry.js';
import { IdlePoll } from '../idle-wait.js';
import { UnknownTables } from '../unknown-tables.js';
import { ChangeLogPruning } from '../changelog-pruning.js';
import { readWithRetry } from '../read-with-retry.js';
import { append } from '../../core/arrays.js';
import { countCaptured } from '../count-captured.js';
import { checkSourceColumns } from '../check-columns.js';
import { changeLogEvent, splitRejected, type ChangeLogResult } from '../change-log-row.js';
import type { Source } from '../source.js';
import { TableCopy, splitCopy, withCopy, type CopyChunk, type CopyProgress } from '../table-copy.js';
import { captureTriggerNames, rowImageSql } from '../../db/sqlite/changelog-setup.js';
import { copyChunkSql, COUNT_ROWS_SQL } from './copy-queries.js';
import { COUNT_CHANGES_SQL, PRUNE_SQL, READ_PAGE_SQL, SAVE_READER_SQL } from './changelog-queries.js';

export interface SqliteChangeLogSourceOptions {
  url: string;
  tables: TableConfig[];
  readLimit: number;
  pollIntervalMs: number;
  idleIntervalMs: number;
  retry: RetryPolicy;
  /** Changes every reader checkpointed are pruned once this old (hours). */
  retentionHours?: number;
  /** A stream without checkpoint first copies the rows its tables hold (default), or only streams changes. */
  snapshot?: 'initial' | 'never';
  /** Rows per chunk of that copy (default: readLimit). */
  chunkSize?: number;
}

interface ChangeRow {
  id: number | bigint;
  table_name: string;
  op: string;
  row_data: string | null;
  old_data: string | null;
  origin: string | null;
  captured_at: string;
}

/**
 * Reads `cdc_sync_changes`, which the capture triggers fill (see
 * changelog-setup.ts), in id order and pages of `readLimit` changes. SQLite
 * serializes writers, so id order is commit order and the position is simply
 * the last id read. Reads only when the stream asks; waits adaptively while
 * the log is empty.
 */
export class SqliteChangeLogSource implements Source {
  private db: SqliteDatabase | undefined;
  private context!: StreamContext;
  private readonly wakeUp = new Subject<void>();
  /** Table name as the trigger writes it → configured source name and key columns. */
  private readonly tables = new Map<string, { source: string; key: string[] }>();
  /** Column names of each table (as the trigger writes its name), for the copy's row images. */
  private readonly columns = new Map<string, string[]>();
  private readonly tableCopy: TableCopy;
  private copy: CopyProgress | null = null;
  private after = 0n;
  private lastPendingCheck = 0;
  private readonly unknownTables = new UnknownTables((table) => this.tables.has(table));
  private readonly pruning: ChangeLogPruning;

  private readonly generations = new ReadGeneration();

  constructor(private readonly options: SqliteChangeLogSourceOptions) {
    this.pruning = new ChangeLogPruning(options.retentionHours ?? 72);
    this.tableCopy = new TableCopy(options, this.tables);
  }

  order(tables: string[]): void {
    this.tableCopy.setOrder(tables);
  }

  requestSnapshot(position: string | null, tables: string[], where?: string): string {
    return this.tableCopy.request(position, tables, where);
  }

  copying(position: string): string[] {
    return splitCopy(position).copy?.tables ?? [];
  }

  checkpointed(position: string): void {
    const { log } = splitCopy(position);
    this.pruning.checkpointed(log === '' ? null : log);
    this.tableCopy.checkpointed(this.context, position);
  }

  async open(context: StreamContext): Promise<void> {
    this.context = context;
    this.db ??= openSqlite(this.options.url, 'source.url', { mustExist: true });
    const db = this.db;
    if (!tableColumns(db, 'cdc_sync_changes') || !tableColumns(db, 'cdc_sync_origin')) {
      throw new ConfigError('source: the SQLite database has no cdc_sync_changes table; apply the output of `cdc-sync init-sql`');
    }
    for (const [i, table] of this.options.tables.entries()) {
      const path = `tables[${i}]`;
      const name = sqliteTableName(table.source);
      const columns = tableColumns(db, name);
      if (!columns) throw new ConfigError(`${path}.source: table ${table.source} does not exist in the source database`);
      const names = columns.filter((c) => c.hidden !== 1).map((c) => c.name);
      const triggers = Object.values(captureTriggerNames(name)).map(
        (t) => db.prepare(`SELECT sql FROM sqlite_schema WHERE type = 'trigger' AND name = ?`).get(t) as { sql: string } | undefined,
      );
      if (triggers.some((t) => !t)) {
        throw new ConfigError(`${path}.source: ${table.source} has no cdc-sync capture triggers; apply the output of \`cdc-sync init-sql\``);
      }
      const stale = names.filter((c) => !triggers[0]!.sql.includes(quoteLiteral(c)));
      if (stale.length > 0) {
        context.log.warn({ table: table.source, columns: stale }, 'capture triggers do not record these columns (added later?); apply `cdc-sync init-sql` again');
      }
      const primaryKey = columns.filter((c) => c.pk > 0).sort((a, b) => a.pk - b.pk).map((c) => c.name);
      const key = checkSourceColumns(table, path, names, primaryKey);
      this.tables.set(name, { source: table.source, key });
      this.columns.set(name, names);
    }
    context.setConnected('source', true);
  }

  chunks(from: string | null, demand: Observable<void>): Observable<SourceChunk> {
    return this.generations.chunks(
      demand,
      () => {
        const { log, copy } = this.tableCopy.start(from);
        this.after = parsePosition(log);
        this.copy = copy;
      },
      (stale, stop) => this.nextChunk(stale, stop),
    );
  }

  wake(): void {
    this.wakeUp.next();
  }

  async close(): Promise<void> {
    const db = this.db;
    this.db = undefined;
    db?.close();
  }

  /** Reads until there is something to hand over; waits (adaptively) while the log is empty. */
  private async nextChunk(stale: () => boolean, stop: AbortSignal): Promise<SourceChunk | null> {
    const idle = new IdlePoll(this.options, this.wakeUp);
    for (;;) {
      if (stale()) return null;
      const chunk = await this.readPage();
      if (chunk) return chunk;
      if (!(await idle.wait(this.context, stop))) return null;
    }
  }

  private async readPage(): Promise<SourceChunk | null> {
    const tables = [...this.tables.keys()];
    const limit = this.options.readLimit;
    const copy = this.copy;
    // One read transaction: a copy chunk holds the rows exactly as they are after the log page (see TableCopy).
    const { rows, chunk } = await this.read((db) =>
      db.transaction(() => {
        const rows = db
          .prepare(READ_PAGE_SQL)
          .safeIntegers(true)
          .all({ tables: JSON.stringify(tables), after: this.after, limit }) as ChangeRow[];
        // A full page first: the copy goes on once the log is caught up to the chunk's instant.
        return { rows, chunk: copy && rows.length < limit ? this.readCopyChunk(db, copy) : null };
      })(),
    );
    if (rows.length > 0) this.after = BigInt(rows.at(-1)!.id);
    const copied = chunk ? this.tableCopy.advance(this.context, chunk.copy, chunk, (next) => withCopy(this.after.toString(), next)) : null;
    if (copied) this.copy = copied.copy;
    const caughtUp = rows.length < limit && this.copy === null;
    await this.reportPending(caughtUp);
    if (caughtUp) {
      await this.pruning.maybePrune(this.context, (sql, params) =>
          this.read((db) => {
            const statement = db.prepare(sql);
            return (statement.reader ? statement.all(...params) : (statement.run(...params), [])) as never;
          }), [SAVE_READER_SQL, PRUNE_SQL, COUNT_CHANGES_SQL]);
    }
    const known = this.unknownTables.drop(rows, this.context);
    if (known.length === 0 && !copied) return caughtUp ? null : this.readPage();
    const { events, rejected } = splitRejected(known.map((row) => this.toEvent(row)));
    countCaptured(this.context, events);
    if (copied) {
      append(events, copied.events);
      append(rejected, copied.rejected);
    }
    return { events, rejected, position: withCopy(this.after.toString(), this.copy), caughtUp };
  }

  /** The next chunk of the table being copied, in the log page's read transaction. */
  private readCopyChunk(db: SqliteDatabase, copy: CopyProgress): CopyChunk & { copy: CopyProgress } {
    const table = this.tableCopy.current(copy);
    const statement = copyChunkSql(table.name, rowImageSql('t', this.columns.get(table.name)!), table.key, copy.key !== null, copy.where);
    const rows = db.prepare(statement).all(copy.key === null ? { limit: this.tableCopy.chunkSize } : { key: copy.key, limit: this.tableCopy.chunkSize }) as { row_data: string; copy_key: string }[];
    const total = copy.total ?? Number((db.prepare(COUNT_ROWS_SQL(table.name, copy.where)).get() as { n: number }).n);
    return { rows: rows.map((r) => r.row_data), lastKey: rows.at(-1)?.copy_key ?? copy.key, copy: { ...copy, total } };
  }

  private toEvent(row: ChangeRow): ChangeLogResult {
    // Each change is its own position: everything up to its id is then read.
    const captured = new Date(row.captured_at);
    const commitTime = Number.isNaN(captured.getTime()) ? new Date() : captured;
    return changeLogEvent(row, this.tables.get(row.table_name)!, row.id.toString(), commitTime, this.context.stream);
  }

  private async reportPending(caughtUp: boolean): Promise<void> {
    const now = Date.now();
    if (!caughtUp && now - this.lastPendingCheck < 1000) return;
    this.lastPendingCheck = now;
    const high = await this.read(
      (db) => (db.prepare(`SELECT coalesce(max(id), 0) AS high FROM cdc_sync_changes`).safeIntegers(true).get() as { high: bigint }).high,
    );
    // Upper bound: changes of tables this stream does not read count too.
    const pending = Math.max(0, Number(BigInt(high) - this.after));
    this.context.metrics.pending.set({ stream: this.context.stream, direction: this.context.direction }, pending);
    if (pending === 0) this.context.metrics.lag.set({ stream: this.context.stream, direction: this.context.direction }, 0);
  }

  private read<T>(run: (db: SqliteDatabase) => T): Promise<T> {
    const db = this.db;
    if (!db) throw new ConfigError('sqlite-changelog source used before open()');
    return readWithRetry(
      this.context,
      this.options.retry,
      { error: (error) => classifySqliteError(error, { stream: this.context.stream }), lostConnection: isSqliteConnectionError },
      async () => run(db),
    );
  }
}

function parsePosition(text: string | null): bigint {
  if (text === null || text === '') return 0n;
  if (!/^\d+$/.test(text)) throw new ConfigError(`not a sqlite-changelog position: ${text}`);
  return BigInt(text);
}

