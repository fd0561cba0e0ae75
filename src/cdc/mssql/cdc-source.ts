import { append, inOrder } from '../../core/arrays.js';
import { noWhere } from '../copy-filter.js';
import { ReadGeneration } from '../read-generation.js';
import { Observable, Subject } from 'rxjs';
import { checkSourceColumns } from '../check-columns.js';
import type { Row, SourceChunk } from '../../core/change-event.js';
import { ConfigError } from '../../core/errors.js';
import type { TableConfig } from '../../core/mapping.js';
import type { StreamContext } from '../../streams/context.js';
import type { RetryPolicy } from '../../streams/retry.js';
import { IdlePoll } from '../idle-wait.js';
import { readWithRetry } from '../read-with-retry.js';
import { countCaptured } from '../count-captured.js';
import type { Source } from '../source.js';
import { afterLegacySeqval, compareRows, toEvents, type CdcRow } from './cdc-changes.js';
import { ALL, CdcPosition } from './cdc-position.js';
import {
  AGENT_JOBS,
  CAPTURE_INSTANCES,
  CAPTURED_COLUMNS,
  COMMIT_TIMES,
  DATABASE_STATE,
  MAX_LSN,
  MIN_LSN,
  PENDING_TRANSACTIONS,
  READ_WINDOW,
  TABLE_EXISTS,
  changedSinceCopySql,
  columnList,
  readChanges,
} from './cdc-queries.js';
import { loadMssqlDriver, openClient, type MssqlClient, type MssqlConnect } from '../../db/mssql/client.js';
import { MSSQL_ERRORS } from '../../db/mssql/errors.js';
import { checkServer, type ServerState } from './server-check.js';
import { Lsn } from './lsn.js';
import { TableSnapshot } from './snapshot.js';
import { splitTable } from '../../db/mssql/identifiers.js';

const MARKER = 'cdc_sync.origin_marker';

export interface MssqlCdcSourceOptions {
  url: string;
  tables: TableConfig[];
  readLimit: number;
  pollIntervalMs: number;
  idleIntervalMs: number;
  /** Save the position on an idle database this often, so cleanup never overtakes it. */
  heartbeatMs: number;
  snapshot: 'initial' | 'never';
  retry: RetryPolicy;
  /** The driver; defaults to `mssql` (or the test stand-in named by CDC_SYNC_MSSQL_DRIVER). */
  connect?: MssqlConnect;
}

interface Instance {
  name: string;
  start: Lsn;
  read: ReturnType<typeof readChanges>;
}

interface CapturedTable {
  /** schema.table as configured */
  source: string;
  key: string[];
  instances: Instance[];
  snapshot: TableSnapshot;
}

/**
 * Reads SQL Server's change data capture: for each configured table the
 * capture instance(s) of cdc.change_tables, read with
 * cdc.fn_cdc_get_all_changes_<instance> in LSN ranges that end at what the
 * capture job has published (sys.fn_cdc_get_max_lsn), merged in commit order.
 * A stream without a checkpoint first snapshots every table (keyset pages)
 * and then reads changes from the LSN recorded before the copy.
 */
export class MssqlCdcSource implements Source {
  private client: MssqlClient | undefined;
  private context!: StreamContext;
  private readonly wakeUp = new Subject<void>();
  private tables: CapturedTable[] = [];
  private tableOrder: string[] = [];
  /** cdc_sync.origin_marker, when CDC captures it: transactions that wrote it were made by cdc-sync. */
  private marker: CapturedTable | null = null;
  /** The reader's own position; set from `from` at the first read after `chunks(from)`. */
  private position!: CdcPosition;
  private from: string | null = null;
  private started = false;
  private lastEmit = 0;
  private lastPendingCheck = 0;
  private retentionMinutes: number | null = null;
  private readonly generations = new ReadGeneration();

  constructor(private readonly options: MssqlCdcSourceOptions) {}

  async open(context: StreamContext): Promise<void> {
    this.context = context;
    const connect = this.options.connect ?? (await loadMssqlDriver());
    this.client ??= await openClient(connect, this.options.url, 'source.url');
    const [state] = await this.query(() => this.client!.query<ServerState & { cdc_enabled: boolean }>(DATABASE_STATE));
    if (!state?.cdc_enabled) {
      throw new ConfigError('source.url: change data capture is not enabled for this database; run EXEC sys.sp_cdc_enable_db (see `cdc-sync init-sql`)');
    }
    checkServer(state, 'source.url');
    await this.readAgentJobs(context);
    this.tables = [];
    for (const [i, table] of this.options.tables.entries()) this.tables.push(await this.describe(table, `tables[${i}]`));
    // Copies go parents first (the first table still copying is the one read).
    const order = inOrder(this.tables.map((t) => t.source), this.tableOrder);
    this.tables.sort((x, y) => order.indexOf(x.source) - order.indexOf(y.source));
    this.marker = await this.describe({ source: MARKER, target: MARKER, key: ['id'] }, 'origin marker').catch(() => null);
    if (!this.marker) context.log.info('cdc_sync.origin_marker is not captured: writes of a reverse stream into this database are not recognised as echoes (see `cdc-sync init-sql`)');
    const [max] = await this.query(() => this.client!.query<{ lsn: Buffer | null }>(MAX_LSN));
    if (!max?.lsn) context.log.warn('no change has ever been published by CDC: is SQL Server Agent running?');
    context.setConnected('source', true);
  }

  chunks(from: string | null, demand: Observable<void>): Observable<SourceChunk> {
    return this.generations.chunks(
      demand,
      () => {
        // A reopened stream resumes from its checkpoint, not from where this reader stopped.
        this.started = false;
        this.from = from;
      },
      (stale, stop) => this.nextChunk(stale, stop),
    );
  }

  wake(): void {
    this.wakeUp.next();
  }

  /** Position that makes the next run re-copy `tables` (all when empty), then stream them from the copy's LSN. */
  order(tables: string[]): void {
    this.tableOrder = tables;
  }

  copying(position: string): string[] {
    const { tables } = CdcPosition.parse(position);
    return this.options.tables.map((t) => t.source).filter((t) => tables[t]?.snapshot);
  }

  requestSnapshot(position: string | null, tables: string[], where?: string): string | null {
    noWhere('mssql-cdc', where);
    if (position === null) return null; // a stream without checkpoint snapshots everything anyway
    let next = CdcPosition.parse(position);
    for (const table of tables.length > 0 ? tables : this.options.tables.map((t) => t.source)) {
      if (!this.options.tables.some((t) => t.source === table)) throw new ConfigError(`--table: ${table} is not a table of this stream`);
      // The copy streams on from where the table stood, so a delete not yet applied is not lost (a copy only
      // upserts); after a cleanup gap those changes are gone, and it starts from the LSN its copy begins at.
      // A copy still running keeps its LSN: the stream's own may lie before the table's capture instance began.
      const progress = next.tables[table];
      const resume = next.resumeFor(table);
      const lsn = progress?.snapshot ? progress.snapshot.lsn : progress?.gap ? null : (resume.seqval.equals(ALL) ? resume.lsn : resume.lsn.predecessor()).toString();
      next = next.withTable(table, { snapshot: { lsn, key: null } });
    }
    return next.toString();
  }

  async close(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    await client?.close();
  }

  /** The capture job's presence and the cleanup job's retention, where msdb can be read. */
  private async readAgentJobs(context: StreamContext): Promise<void> {
    let jobs: { capture_jobs: number; retention_minutes?: number | null } | undefined;
    try {
      [jobs] = await this.client!.query<{ capture_jobs: number; retention_minutes?: number | null }>(AGENT_JOBS);
    } catch (error) {
      const code = (error as { context?: { code?: string } }).context?.code;
      if (code !== '229' && code !== '208') throw error;
      context.log.info({ code }, 'msdb.dbo.cdc_jobs cannot be read (no rights in msdb, or Azure SQL Database): the capture job check and the retention headroom are skipped');
      this.retentionMinutes = null;
      return;
    }
    if (!jobs?.capture_jobs) context.log.warn('no CDC capture job exists for this database: changes will not be published');
    this.retentionMinutes = jobs?.retention_minutes ?? null;
  }

  private async describe(table: TableConfig, path: string): Promise<CapturedTable> {
    const client = this.client!;
    const [schema, name] = splitTable(table.source);
    const params = { schema: { type: 'nvarchar' as const, value: schema }, table: { type: 'nvarchar' as const, value: name } };
    const [exists] = await this.query(() => client.query<{ primary_key: string | null }>(TABLE_EXISTS, params));
    if (!exists) throw new ConfigError(`${path}.source: table ${table.source} does not exist in the source database`);
    const key = table.key ?? (JSON.parse(exists.primary_key ?? '[]') as { name: string }[]).map((c) => c.name);
    if (key.length === 0) throw new ConfigError(`${path}.key: ${table.source} has no primary key; name the key columns`);
    const found = await this.query(() =>
      client.query<{ capture_instance: string; object_id: number; change_table: string; start_lsn: Buffer }>(CAPTURE_INSTANCES, params),
    );
    if (found.length === 0) {
      throw new ConfigError(`${path}.source: change data capture is not enabled for ${table.source}; run sys.sp_cdc_enable_table (see \`cdc-sync init-sql\`)`);
    }
    const instances: Instance[] = [];
    for (const instance of found) {
      const columns = await this.query(() =>
        client.query<{ column_name: string; column_type: string }>(CAPTURED_COLUMNS, { object_id: { type: 'int', value: instance.object_id } }),
      );
      for (const [j, k] of key.entries()) {
        if (!columns.some((c) => c.column_name === k)) throw new ConfigError(`${path}.key[${j}]: column ${k} is not captured for ${table.source}`);
      }
      if (instance === found.at(-1)) {
        checkSourceColumns({ ...table, key: undefined }, path, columns.map((c) => c.column_name), key, ' (or is not captured)');
      }
      instances.push({ name: instance.capture_instance, start: Lsn.fromBuffer(instance.start_lsn), read: readChanges(instance.change_table, columnList(columns)) });
    }
    // A row changed after the copy's LSN is left out of it: the stream brings its changes in order.
    const changed = { sql: changedSinceCopySql(found.map((i) => i.change_table), key), params: {} };
    return { source: table.source, key, instances, snapshot: new TableSnapshot(client, table.source, key, changed) };
  }

  private async nextChunk(stale: () => boolean, stop: AbortSignal): Promise<SourceChunk | null> {
    if (stale()) return null;
    if (!this.started) {
      this.position = await this.initialPosition(this.from);
      this.started = true;
    }
    const idle = new IdlePoll(this.options, this.wakeUp);
    for (;;) {
      if (stale()) return null;
      const snapshotting = this.tables.find((t) => this.position.tables[t.source]?.snapshot);
      const chunk = snapshotting ? await this.snapshotChunk(snapshotting) : await this.changesChunk();
      if (chunk) return this.emit(chunk);
      if (Date.now() - this.lastEmit >= this.options.heartbeatMs) {
        // An idle database still moves the checkpoint, so the cleanup job never removes what it points at.
        return this.emit({ events: [], rejected: [], position: this.position.toString(), caughtUp: true });
      }
      if (!(await idle.wait(this.context, stop))) return null;
    }
  }

  private emit(chunk: SourceChunk): SourceChunk {
    this.lastEmit = Date.now();
    countCaptured(this.context, chunk.events);
    return chunk;
  }

  /**
   * A stream without checkpoint: with `snapshot: initial` every table is
   * copied first and streamed from the LSN recorded before its copy; with
   * `never` no copy is made and every change CDC still holds is read.
   */
  private async initialPosition(from: string | null): Promise<CdcPosition> {
    this.lastEmit = Date.now();
    if (from !== null) return CdcPosition.parse(from);
    const max = (await this.maxLsn()) ?? Lsn.zero;
    const tables: Record<string, { after?: string; snapshot?: { lsn: string; key: null } }> = {};
    for (const table of this.tables) {
      if (this.options.snapshot === 'initial') tables[table.source] = { snapshot: { lsn: (await this.startLsn(table, max)).toString(), key: null } };
      else tables[table.source] = { after: (await this.minLsn(table.instances[0]!)).predecessor().toString() };
    }
    return new CdcPosition(this.options.snapshot === 'initial' ? max : Lsn.zero, null, tables);
  }

  /**
   * Where a table's changes start for a copy made now: the published max LSN,
   * or just before its capture instance's first LSN when the instance is
   * newer than anything published yet (a freshly enabled table).
   */
  private async startLsn(table: CapturedTable, max: Lsn): Promise<Lsn> {
    return Lsn.max(max, (await this.minLsn(table.instances[0]!)).predecessor());
  }

  private async minLsn(instance: Instance): Promise<Lsn> {
    const [row] = await this.query(() => this.client!.query<{ lsn: Buffer | null }>(MIN_LSN, { instance: { type: 'nvarchar', value: instance.name } }));
    return row?.lsn ? Lsn.fromBuffer(row.lsn) : Lsn.zero;
  }

  private async snapshotChunk(table: CapturedTable): Promise<SourceChunk> {
    const progress = this.position.tables[table.source]!.snapshot!;
    const lsn = progress.lsn ?? (await this.startLsn(table, (await this.maxLsn()) ?? Lsn.zero)).toString();
    if (!progress.lsn) this.context.log.info({ table: table.source, lsn }, 'snapshot started');
    const limit = this.options.readLimit;
    const page = await this.query(() => table.snapshot.next(progress.key, limit, { copy_lsn: { type: 'binary10', value: Lsn.parse(lsn).toBuffer() } }));
    const done = page.read < limit;
    this.position = this.position.withTable(table.source, done ? { after: lsn } : { snapshot: { lsn, key: page.last } });
    table.snapshot.counted(this.context, page, done);
    if (done) this.context.log.info({ table: table.source }, 'snapshot finished; streaming changes');
    const position = this.position.toString();
    return { events: table.snapshot.toEvents(page.rows, position, table.source), rejected: [], position, caughtUp: false };
  }

  /**
   * The changes of the next whole transactions: up to `readLimit`
   * transactions after the position (cdc.lsn_time_mapping), every table
   * read over the same LSN window, merged in commit and statement order.
   */
  private async changesChunk(): Promise<SourceChunk | null> {
    const max = await this.maxLsn();
    await this.reportPending(max);
    if (!max) return null;
    const from = this.position.lsn;
    const upto = await this.windowEnd(from, max);
    const rows: CdcRow[] = [];
    let gapped = false;
    for (const table of this.tables) {
      const progress = this.position.tables[table.source];
      if (progress?.gap || progress?.snapshot) continue;
      const resume = this.position.resumeFor(table.source);
      const after = resume.seqval.equals(ALL) ? resume.lsn : resume.lsn.predecessor();
      const result = await this.readTable(table, after, upto);
      if (result === 'gap') gapped = true;
      else append(rows, result);
    }
    // A checkpoint taken inside a transaction (older versions) resumes after its seqval, but the
    // origin marker is looked up in the whole transaction: it has the transaction's lowest seqval.
    const inside = this.position.seqval ? from.predecessor() : from;
    const marker = this.marker ? await this.readTable(this.marker, inside, upto, false) : [];
    rows.sort(compareRows);
    const own = new Set((marker === 'gap' ? [] : marker).map((r) => r.lsn.toString()));
    const fresh = this.dropOwn(afterLegacySeqval(rows, from, this.position.seqval), own);
    this.position = this.position.with({ lsn: upto, seqval: null });
    if (fresh.length === 0 && !gapped) {
      this.context.metrics.lag.set({ stream: this.context.stream, direction: this.context.direction }, 0);
      return null;
    }
    const times = await this.commitTimes(fresh);
    const position = this.position.toString();
    const byName = new Map(this.tables.map((t) => [t.source, t]));
    const events = toEvents(
      fresh,
      (table, row) => Object.fromEntries(byName.get(table)!.key.map((k) => [k, row[k] ?? null])) as Row,
      (table) => table,
      (lsn) => times.get(lsn.toString()) ?? new Date(),
      position,
    );
    return { events, rejected: [], position, caughtUp: upto.equals(max) };
  }

  /** The commit LSN that ends the next read: `readLimit` transactions on, or the published max. */
  private async windowEnd(after: Lsn, max: Lsn): Promise<Lsn> {
    if (after.compare(max) >= 0) return after;
    const [row] = await this.query(() =>
      this.client!.query<{ lsn: Buffer | null }>(READ_WINDOW, {
        transactions: { type: 'int', value: Math.max(1, this.options.readLimit) },
        after_lsn: { type: 'binary10', value: after.toBuffer() },
        max_lsn: { type: 'binary10', value: max.toBuffer() },
      }),
    );
    return row?.lsn ? Lsn.fromBuffer(row.lsn) : max;
  }

  /**
   * Echo suppression: `own` holds the commit LSNs of transactions that
   * changed cdc_sync.origin_marker. Such a transaction was
   * written by cdc-sync's SQL Server sink (it marks every transaction), so
   * all of it is dropped and counted, and nothing goes back where it came from.
   */
  private dropOwn(rows: CdcRow[], own: Set<string>): CdcRow[] {
    if (own.size === 0) return rows;
    const kept: CdcRow[] = [];
    for (const r of rows) {
      if (!own.has(r.lsn.toString())) kept.push(r);
      else if (r.operation !== 3) {
        this.context.metrics.suppressed.inc({ stream: this.context.stream, direction: this.context.direction, table: r.table, reason: 'origin' });
      }
    }
    return kept;
  }

  /**
   * Changes of one table committed in (after, upto], across its capture
   * instances: an older instance up to the LSN before the newer one's start
   * (by the read's bounds, so nothing it holds past that point is read or
   * counted), the newer one from there on.
   */
  private async readTable(table: CapturedTable, after: Lsn, upto: Lsn, reportGaps = true): Promise<CdcRow[] | 'gap'> {
    const rows: CdcRow[] = [];
    let readAny = false;
    for (const [i, instance] of table.instances.entries()) {
      const next = table.instances[i + 1];
      const to = next ? Lsn.min(upto, next.start.predecessor()) : upto;
      if (to.compare(after) <= 0) continue; // this instance's range is behind us, or the window ends before it
      const min = await this.minLsn(instance);
      // The first instance still to read must hold every change after `after`:
      // if its minimum moved past it, the cleanup job removed some of them.
      // (The origin marker has no such duty: it is read from what is there.)
      if (reportGaps && !readAny && min.predecessor().compare(after) > 0) {
        this.reportGap(table, after, min);
        return 'gap';
      }
      readAny = true;
      const from = Lsn.max(after, min.predecessor());
      if (to.compare(from) <= 0) continue;
      const found = await this.query(() =>
        this.client!.query<Row & { __$start_lsn: Buffer; __$command_id: number; __$seqval: Buffer; __$operation: number }>(instance.read, {
          after_lsn: { type: 'binary10', value: from.toBuffer() },
          to_lsn: { type: 'binary10', value: to.toBuffer() },
        }),
      );
      for (const r of found) {
        const { __$start_lsn, __$command_id, __$seqval, __$operation, ...row } = r;
        rows.push({ table: table.source, lsn: Lsn.fromBuffer(__$start_lsn), commandId: __$command_id, seqval: Lsn.fromBuffer(__$seqval), operation: __$operation, row: row as Row });
      }
    }
    return rows;
  }

  private reportGap(table: CapturedTable, checkpoint: Lsn, min: Lsn): void {
    const message =
      `changes of ${table.source} between LSN ${checkpoint} and ${min} were removed by the CDC cleanup job; ` +
      `the table is stopped. Re-copy it: cdc-sync snapshot --stream ${this.context.stream} --table ${table.source}`;
    this.position = this.position.withTable(table.source, { ...this.position.tables[table.source], gap: message });
    this.context.metrics.sourceGap.set({ stream: this.context.stream, direction: this.context.direction, table: table.source }, 1);
    this.context.reportProblem(message);
  }

  private async maxLsn(): Promise<Lsn | null> {
    const [row] = await this.query(() => this.client!.query<{ lsn: Buffer | null }>(MAX_LSN));
    return row?.lsn ? Lsn.fromBuffer(row.lsn) : null;
  }

  private async commitTimes(rows: CdcRow[]): Promise<Map<string, Date>> {
    if (rows.length === 0) return new Map();
    const found = await this.query(() =>
      this.client!.query<{ start_lsn: Buffer; tran_end_time: Date }>(COMMIT_TIMES, {
        from_lsn: { type: 'binary10', value: rows[0]!.lsn.toBuffer() },
        to_lsn: { type: 'binary10', value: rows.at(-1)!.lsn.toBuffer() },
      }),
    );
    return new Map(found.map((r) => [Lsn.fromBuffer(r.start_lsn).toString(), r.tran_end_time]));
  }

  private async reportPending(max: Lsn | null): Promise<void> {
    if (Date.now() - this.lastPendingCheck < 5000) return;
    this.lastPendingCheck = Date.now();
    const labels = { stream: this.context.stream, direction: this.context.direction };
    const [row] = await this.query(() =>
      this.client!.query<{ pending: number; checkpoint_time: Date | null }>(PENDING_TRANSACTIONS, {
        after_lsn: { type: 'binary10', value: this.position.lsn.toBuffer() },
      }),
    );
    this.context.metrics.pending.set(labels, max ? (row?.pending ?? 0) : 0);
    if (this.retentionMinutes !== null && row?.checkpoint_time) {
      const age = (Date.now() - row.checkpoint_time.getTime()) / 1000;
      this.context.metrics.retentionHeadroom.set(labels, this.retentionMinutes * 60 - age);
    }
  }

  private query<T>(run: () => Promise<T>): Promise<T> {
    return readWithRetry(this.context, this.options.retry, MSSQL_ERRORS, run);
  }
}

