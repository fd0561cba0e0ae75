import { inOrder } from '../../core/arrays.js';
import { Observable } from 'rxjs';
import type { SourceChunk } from '../../core/change-event.js';
import { ConfigError } from '../../core/errors.js';
import { createPool, type Pool } from '../../db/postgres/connection.js';
import { qualifiedText, qualify, quoteIdent, quoteTable } from '../../db/postgres/identifiers.js';
import type { StreamContext } from '../../streams/context.js';
import { readRows } from './read-rows.js';
import { checkSourceColumns } from '../check-columns.js';
import type { Source } from '../source.js';
import { MARKER_EXISTS_SQL, PUBLICATION_SQL, RETAINED_SQL, SERVER_VERSION_SQL, SLOT_SQL, TABLE_INFO_SQL } from './wal-setup.js';
import { walCopyReader } from './wal-copy-reader.js';
import { WalCopier, type WalCopyItem, type WalTable } from './wal-copy.js';
import { WalPosition } from './wal-position.js';
import { ORIGIN_MARKER_TABLE } from './wal-transactions.js';
import { COPY_TIME } from '../table-copy.js';
import type { WalSourceOptions } from './wal-source-options.js';
import { WalStream } from './wal-stream.js';

export type { WalSourceOptions } from './wal-source-options.js';

/**
 * Logical replication (pgoutput) from a slot. One chunk holds whole
 * transactions; its position is the last commit's end LSN. The server is told
 * a position is flushed only after `committed()` said the sink stored it, so a
 * restart replays from the slot whatever was not applied, and transactions
 * at or before the stored checkpoint are skipped.
 */
export class WalSource implements Source {
  private pool: Pool | undefined;
  private context!: StreamContext;
  private readonly tables = new Map<string, WalTable>();
  private readonly textTables = new Set<string>();
  private readonly stream: WalStream;
  /** The copy's last page was read: "finished" is logged once a checkpoint without a copy is committed. */
  private copyEnding = false;
  /** PostgreSQL 14 and later send logical messages (the copy's watermarks) when asked. */
  private messages = false;
  private tableOrder: string[] = [];
  private retainedTimer: NodeJS.Timeout | undefined;

  constructor(private readonly options: WalSourceOptions) {
    this.stream = new WalStream(options, {
      tables: this.tables,
      textTables: this.textTables,
      messages: () => this.messages,
      query: <T>(sql: string, params: unknown[]) => this.query<T>(sql, params),
    });
  }

  async open(context: StreamContext): Promise<void> {
    this.context = context;
    this.stream.reopen(context);
    // A new backend takes a while to start: the replication connection's starts while the tables are checked.
    if (!context.checkOnly) this.stream.connectAhead();
    this.pool ??= createPool(this.options.url, { log: context.log, timeoutMs: this.options.timeoutMs, urlKey: 'source.url' });
    const qualifiedNames: string[] = [];
    for (const [i, table] of this.options.tables.entries()) {
      const path = `tables[${i}]`;
      const [row] = await this.query<{ exists: boolean; columns: string[]; published: string[]; types: number[]; primary_key: string[] }>(TABLE_INFO_SQL, [
        quoteTable(qualify(table.source)),
      ]);
      if (!row?.exists) throw new ConfigError(`${path}.source: table ${table.source} does not exist in the source database`);
      const key = checkSourceColumns(table, path, row.columns, row.primary_key);
      this.tables.set(qualifiedText(table.source), { source: table.source, key, columns: row.published, types: row.types });
      qualifiedNames.push(qualifiedText(table.source));
    }
    if (context.checkOnly) return;
    const [server] = await this.query<{ version: number }>(SERVER_VERSION_SQL, []);
    this.messages = (server?.version ?? 0) >= 140000;
    await this.ensurePublication(qualifiedNames);
    await this.ensureSlot();
    context.metrics.bufferCapacity.set({ stream: context.stream, direction: context.direction }, this.options.bufferSize);
    this.sampleRetained();
    this.retainedTimer ??= setInterval(() => this.sampleRetained(), this.options.retainedIntervalMs ?? 5000).unref();
    context.setConnected('source', true);
  }

  chunks(from: string | null, demand: Observable<void>): Observable<SourceChunk> {
    return new Observable<SourceChunk>((subscriber) => {
      const start = WalPosition.parse(from);
      const all = inOrder(this.options.tables.map((t) => t.source), this.tableOrder);
      const position = from === null && this.options.snapshot === 'initial' ? start.withCopy(all) : start;
      // The copy runs beside replication, a chunk at a time between watermarks (WalCopier).
      const copier = new WalCopier(this.context, {
        table: (source) => {
          const table = this.tables.get(qualifiedText(source));
          if (!table) throw new ConfigError(`the copy names table ${source}, which this stream does not capture; reset the stream`);
          return table;
        },
        reader: walCopyReader((sql, params) => this.query(sql, params), (source) => this.tables.get(qualifiedText(source))!, this.context.stream),
        limit: this.options.chunkSize ?? this.options.readLimit,
        sentThrough: () => this.stream.sentThrough,
        push: (item) => this.queueCopy(item),
        fail: (error) => this.stream.error(error),
      });
      copier.start(position.copy);
      if (position.copy) {
        const { tables, after } = position.copy;
        this.context.log.info({ tables, resumedAfter: after ?? undefined }, 'initial copy started; changes stream beside it');
      }
      return this.stream.subscribe(subscriber, start.lsn, copier, demand);
    });
  }

  /** The position that copies `tables` (all when empty) again, then streams on from where the stream was. */
  requestSnapshot(position: string | null, tables: string[], where?: string): string | null {
    const known = this.options.tables.map((t) => t.source);
    for (const table of tables) {
      if (!known.includes(table)) throw new ConfigError(`--table ${table}: not a table of this stream (${known.join(', ')})`);
    }
    const current = WalPosition.parse(position);
    const wanted = inOrder(tables.length > 0 ? tables : known, this.tableOrder);
    // A copy already going keeps its other tables, after the wanted ones (the one being copied starts again from its first row).
    const going = (current.copy?.tables ?? []).filter((t) => !wanted.includes(t));
    return current.withCopy([...wanted, ...going], where).toString();
  }

  /** The stream's apply order (parents first): tables are copied in it, so no copied child meets a missing parent. */
  order(tables: string[]): void {
    this.tableOrder = tables;
  }

  /** Their inserts go on as COPY lines (wal-row-text.ts), from the next Relation message on. */
  textRows(tables: string[]): void {
    this.textTables.clear();
    for (const table of tables) this.textTables.add(table);
  }

  copying(position: string): string[] {
    return WalPosition.parse(position).copy?.tables ?? [];
  }

  /** A copied chunk joins the queue where its watermark fell. */
  private queueCopy(item: WalCopyItem): void {
    if (item.after === null) this.copyEnding = true;
    this.stream.push({ endLsn: 0n, xid: 0, commitTime: COPY_TIME, events: item.events, rejected: [], ownWrite: false, copyAfter: item.after });
  }

  async committed(position: string): Promise<void> {
    const parsed = WalPosition.parse(position);
    if (this.copyEnding && parsed.copy === null) {
      this.copyEnding = false;
      this.context.log.info({ slot: this.options.slot }, 'initial copy finished; streaming changes');
    }
    this.stream.committed(parsed.lsn);
  }

  wake(): void {}

  async close(): Promise<void> {
    this.stream.stop();
    clearInterval(this.retainedTimer);
    this.retainedTimer = undefined;
    const pool = this.pool;
    this.pool = undefined;
    await pool?.end();
  }

  private async ensurePublication(tables: string[]): Promise<void> {
    const name = this.options.publication;
    const [marker] = await this.query<{ exists: boolean }>(MARKER_EXISTS_SQL, []);
    const wanted = marker?.exists ? [...tables, ORIGIN_MARKER_TABLE] : tables;
    const [publication] = await this.query<{ all_tables: boolean; tables: string[] }>(PUBLICATION_SQL, [name]);
    const quoted = (list: string[]) => list.map((t) => quoteTable(qualify(t))).join(', ');
    if (!publication) {
      await this.query(`CREATE PUBLICATION ${quoteIdent(name)} FOR TABLE ${quoted(wanted)}`, []);
      this.context.log.info({ publication: name, tables: wanted }, 'publication created');
      return;
    }
    if (publication.all_tables) return;
    const missing = wanted.filter((t) => !publication.tables.includes(t));
    if (missing.length > 0) {
      await this.query(`ALTER PUBLICATION ${quoteIdent(name)} ADD TABLE ${quoted(missing)}`, []);
      this.context.log.info({ publication: name, tables: missing }, 'tables added to the publication');
    }
  }

  private async ensureSlot(): Promise<void> {
    const [slot] = await this.query<{ plugin: string }>(SLOT_SQL, [this.options.slot]);
    if (slot) {
      if (slot.plugin !== 'pgoutput') throw new ConfigError(`source.slot: slot ${this.options.slot} uses ${slot.plugin}, not pgoutput`);
      return;
    }
    try {
      await this.query(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [this.options.slot]);
      this.context.log.info({ slot: this.options.slot }, 'replication slot created');
    } catch (error) {
      if ((error as { context?: { code?: string } }).context?.code !== '42710') throw error; // created concurrently
    }
  }

  private sampleRetained(): void {
    const pool = this.pool;
    if (!pool) return;
    pool.query<{ bytes: number | null }>(RETAINED_SQL, [this.options.slot]).then(
      (result) => {
        const bytes = result.rows[0]?.bytes;
        if (bytes !== undefined && bytes !== null) {
          this.context.metrics.sourceRetainedBytes.set({ stream: this.context.stream, direction: this.context.direction }, Number(bytes));
        }
      },
      (error: Error) => this.context.log.debug({ err: error.message }, 'could not sample retained WAL'),
    );
  }

  private query<T>(sql: string, params: unknown[]): Promise<T[]> {
    return readRows<T>(this.pool, 'postgres-wal', this.context, this.options.retry, sql, params);
  }
}
