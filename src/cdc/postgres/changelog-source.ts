import { Observable, Subject } from 'rxjs';
import { ReadGeneration } from '../read-generation.js';
import type { SourceChunk } from '../../core/change-event.js';
import { CdcSyncError, ConfigError } from '../../core/errors.js';
import type { TableConfig } from '../../core/mapping.js';
import { createPool, type Pool } from '../../db/postgres/connection.js';
import { qualifiedText, qualify, quoteTable } from '../../db/postgres/identifiers.js';
import type { StreamContext } from '../../streams/context.js';
import type { RetryPolicy } from '../../streams/retry.js';
import { readRows } from './read-rows.js';
import { append } from '../../core/arrays.js';
import { countCaptured } from '../count-captured.js';
import { checkSourceColumns } from '../check-columns.js';
import { changeLogEvent, splitRejected, type ChangeLogResult, type ChangeLogTable } from '../change-log-row.js';
import type { Source } from '../source.js';
import { ChangeLogPosition } from './changelog-position.js';
import { readChangePage } from './changelog-page.js';
import {
  CHECKPOINT_NEXT_XID_SQL,
  NEXT_RANGE_SQL,
  SERVER_RUN_SQL,
  PENDING_SQL,
  RANGE_BOUNDS_SQL,
  TABLE_INFO_SQL,
  SAVE_READER_SQL,
  PRUNE_SQL,
  COUNT_CHANGES_SQL,
  copyChunkSql,
  countRowsSql,
  type ChangeRow,
  type CopyRow,
} from './changelog-queries.js';
import { TableCopy, splitCopy, withCopy, type CopyChunk, type CopyProgress } from '../table-copy.js';
import { IdlePoll } from '../idle-wait.js';
import { UnknownTables } from '../unknown-tables.js';
import { ChangeLogPruning } from '../changelog-pruning.js';

interface RangeBounds {
  low: string | null;
  high: string | null;
}

export interface ChangeLogSourceOptions {
  url: string;
  tables: TableConfig[];
  readLimit: number;
  pollIntervalMs: number;
  idleIntervalMs: number;
  retry: RetryPolicy;
  /** A statement without an answer this long ends its connection (liveness.timeoutMs). */
  timeoutMs?: number;
  /** Changes every reader checkpointed are pruned once this old (hours). */
  retentionHours?: number;
  /** A stream without checkpoint first copies the rows its tables hold (default), or only streams changes. */
  snapshot?: 'initial' | 'never';
  /** Rows per chunk of that copy (default: readLimit). */
  chunkSize?: number;
}

/**
 * Reads `cdc_sync.changes`, which the capture triggers fill, in commit-safe
 * ranges (see ChangeLogPosition) and pages of `readLimit` changes. Reads only
 * when the stream asks, so a backlog of any size costs one page of memory.
 */
export class ChangeLogSource implements Source {
  private pool: Pool | undefined;
  private context!: StreamContext;
  private readonly wakeUp = new Subject<void>();
  /** Qualified table name (as the trigger writes it) → configured source name and key columns. */
  private readonly tables = new Map<string, ChangeLogTable>();
  private cursor = ChangeLogPosition.start;
  /** Highest change id of the current range; undefined until looked up. */
  private high: bigint | undefined;
  private lastPendingCheck = 0;
  private readonly tableCopy: TableCopy;
  private copy: CopyProgress | null = null;
  /** A copy chunk read at the snapshot the current range ends at: handed over with the range's last page. */
  private held: (CopyChunk & { copy: CopyProgress }) | null = null;
  private readonly unknownTables = new UnknownTables((table) => this.tables.has(table));
  private readonly pruning: ChangeLogPruning;

  private readonly generations = new ReadGeneration();

  constructor(private readonly options: ChangeLogSourceOptions) {
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
    this.pruning.checkpointed(ChangeLogPosition.parse(splitCopy(position).log).done);
    this.tableCopy.checkpointed(this.context, position);
  }

  async open(context: StreamContext): Promise<void> {
    this.context = context;
    this.pool ??= createPool(this.options.url, { log: context.log, timeoutMs: this.options.timeoutMs, urlKey: 'source.url' });
    for (const [i, table] of this.options.tables.entries()) {
      const qualified = qualifiedText(table.source);
      const info = await this.query<{ exists: boolean; changelog: boolean; captured: boolean; columns: string[]; primary_key: string[]; json_columns: string[] }>(
        TABLE_INFO_SQL,
        [quoteTable(qualify(table.source))],
      );
      const row = info[0]!;
      const path = `tables[${i}]`;
      if (!row.exists) throw new ConfigError(`${path}.source: table ${table.source} does not exist in the source database`);
      if (!row.changelog || !row.captured) {
        throw new ConfigError(`${path}.source: ${table.source} has no cdc-sync capture trigger; apply the output of \`cdc-sync init-sql\``);
      }
      const key = checkSourceColumns(table, path, row.columns, row.primary_key);
      this.tables.set(qualified, { source: table.source, key, json: new Set(row.json_columns) });
    }
    context.setConnected('source', true);
  }

  chunks(from: string | null, demand: Observable<void>): Observable<SourceChunk> {
    return this.generations.chunks(
      demand,
      () => {
        const { log, copy } = this.tableCopy.start(from);
        this.cursor = ChangeLogPosition.parse(log);
        this.copy = copy;
        this.held = null;
        this.high = undefined;
      },
      (stale, stop) => this.nextChunk(stale, stop),
    );
  }

  wake(): void {
    this.wakeUp.next();
  }

  async close(): Promise<void> {
    const pool = this.pool;
    this.pool = undefined;
    await pool?.end();
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
    let found: RangeBounds | undefined;
    if (this.cursor.upto === null) {
      // With a copy going, the next range ends at the snapshot its next chunk is read in.
      const before = this.cursor;
      const [next] = this.copy
        ? await this.readCopyChunk(this.copy)
        : await this.query<RangeBounds & { snapshot: string; server: string }>(NEXT_RANGE_SQL, [this.cursor.done]);
      await this.checkServerRun(next!.server);
      this.cursor = this.cursor.withRange(next!.snapshot);
      this.high = undefined;
      // Found with the position as it was: good unless a restart of the server took it back.
      if (!this.copy && this.cursor.done === before.done) found = next as RangeBounds;
    } else {
      const [run] = await this.query<{ server: string }>(SERVER_RUN_SQL, []);
      await this.checkServerRun(run!.server);
    }
    if (this.high === undefined) {
      // New range, or a restart inside one: find where its changes lie.
      const [bounds] = found ? [found] : await this.query<RangeBounds>(RANGE_BOUNDS_SQL, [this.cursor.done, this.cursor.upto]);
      if (!bounds?.low || BigInt(bounds.high!) <= this.cursor.after) {
        this.cursor = this.cursor.completed();
        await this.reportPending(this.copy === null);
        await this.pruning.maybePrune(this.context, (sql, params) => this.query(sql, params), [SAVE_READER_SQL, PRUNE_SQL, COUNT_CHANGES_SQL]);
        return this.held ? this.withHeldChunk({ events: [], rejected: [], position: '', caughtUp: true }) : null;
      }
      if (this.cursor.after < BigInt(bounds.low)) this.cursor = this.cursor.advancedTo(BigInt(bounds.low) - 1n);
      this.high = BigInt(bounds.high!);
    }
    const { rows, rangeEnd, after } = await readChangePage((sql, params) => this.query(sql, params), this.cursor, tables, this.high, this.options.readLimit);
    this.cursor = rangeEnd ? this.cursor.completed() : this.cursor.advancedTo(after);
    if (rangeEnd) this.high = undefined;
    const held = rangeEnd && this.held !== null;
    const caughtUp = rangeEnd && this.copy === null;
    await this.reportPending(caughtUp);
    const known = this.unknownTables.drop(rows, this.context);
    if (known.length === 0 && !held) return caughtUp ? null : this.readPage();
    const position = withCopy(this.cursor.toString(), this.copy);
    const { events, rejected } = splitRejected(known.map((row) => this.toEvent(row, position)));
    countCaptured(this.context, events);
    return held ? this.withHeldChunk({ events, rejected, position, caughtUp: rangeEnd }) : { events, rejected, position, caughtUp };
  }

  /**
   * Reads the next chunk of the table being copied and holds it until the
   * log is read up to the snapshot it was read in, which this returns.
   */
  private async readCopyChunk(copy: CopyProgress): Promise<CopyRow[]> {
    const table = this.tableCopy.current(copy);
    const quoted = quoteTable(qualify(table.name));
    const params = copy.key === null ? [this.tableCopy.chunkSize] : [copy.key, this.tableCopy.chunkSize];
    const rows = await this.query<CopyRow>(copyChunkSql(quoted, table.key, copy.key !== null, copy.where), params);
    const total = copy.total ?? (await this.query<{ n: number }>(countRowsSql(quoted, copy.where), []))[0]!.n;
    const found = rows.filter((r) => r.row_data !== null);
    this.held = { rows: found.map((r) => r.row_data!), lastKey: found.at(-1)?.copy_key ?? copy.key, copy: { ...copy, total } };
    return rows;
  }

  /**
   * `chunk` ends the range the held copy chunk was read at: the copy chunk
   * goes after it. Caught up (`chunk.caughtUp`: the range's end) once the copy is done.
   */
  private withHeldChunk(chunk: SourceChunk): SourceChunk {
    const held = this.held!;
    this.held = null;
    const copied = this.tableCopy.advance(this.context, held.copy, held, (next) => withCopy(this.cursor.toString(), next));
    this.copy = copied.copy;
    const position = withCopy(this.cursor.toString(), this.copy);
    for (const e of chunk.events) e.position = position;
    for (const r of chunk.rejected) r.position = position;
    return {
      events: append(chunk.events, copied.events),
      rejected: append(chunk.rejected, copied.rejected),
      position,
      caughtUp: this.copy === null && chunk.caughtUp,
    };
  }


  /**
   * The snapshots of the position were taken in server run `server`, or the
   * server has restarted since and may hand out again ids they call finished
   * (see ChangeLogPosition): then they are taken back out of them. A position
   * stored before runs were recorded has none, and takes the current one.
   */
  private async checkServerRun(server: string): Promise<void> {
    if (this.cursor.server === server) return;
    if (this.cursor.server === null || (this.cursor.done === null && this.cursor.upto === null)) {
      this.cursor = this.cursor.onServer(server);
      return;
    }
    let row: { next_xid: string } | undefined;
    try {
      [row] = await this.query<{ next_xid: string }>(CHECKPOINT_NEXT_XID_SQL, []);
    } catch (error) {
      if (!(error instanceof CdcSyncError) || error.transient) throw error;
      // A server that hides its control data (some managed services): go on as before this check existed.
      this.context.log.warn({ err: error.message }, 'the source database restarted, and its checkpoint data cannot be read: a transaction that got a reused id after a crash could be missed');
      this.cursor = this.cursor.onServer(server);
      return;
    }
    const [epoch, xid] = row!.next_xid.split(':').map((n) => BigInt(n));
    const first = (epoch! << 32n) + xid!;
    const before = this.cursor;
    this.cursor = this.cursor.reissuedFrom(first, server);
    this.high = undefined;
    // A clean restart hands out no id twice: nothing to say then.
    if (before.done !== this.cursor.done || before.upto !== this.cursor.upto) {
      this.context.log.warn({ from: first.toString() }, 'the source database restarted after a crash: transactions from this id on are read even where the checkpoint had counted them');
    }
  }

  private toEvent(row: ChangeRow, position: string): ChangeLogResult {
    // Inside a page the chunk position covers every event; a per-event
    // position would be a change id, which alone is no safe checkpoint.
    return changeLogEvent(row, this.tables.get(row.table_name)!, position, row.captured_at, this.context.stream);
  }

  private async reportPending(caughtUp: boolean): Promise<void> {
    const now = Date.now();
    if (!caughtUp && now - this.lastPendingCheck < 1000) return;
    this.lastPendingCheck = now;
    // Caught up at a range's end: nothing is pending, and an idle poll sends no statement to say so.
    const pending = caughtUp && this.cursor.upto === null ? 0 : Math.max(0, Number(BigInt((await this.query<{ high: string }>(PENDING_SQL, []))[0]!.high) - this.cursor.after));
    this.context.metrics.pending.set({ stream: this.context.stream, direction: this.context.direction }, pending);
    if (pending === 0) this.context.metrics.lag.set({ stream: this.context.stream, direction: this.context.direction }, 0);
  }

  private query<T>(sql: string, params: unknown[]): Promise<T[]> {
    return readRows<T>(this.pool, 'change-log', this.context, this.options.retry, sql, params);
  }
}
