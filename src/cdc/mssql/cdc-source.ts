import { append, inOrder } from '../../core/arrays.js';
import { ReadGeneration } from '../read-generation.js';
import { Observable, Subject } from 'rxjs';
import type { Row, SourceChunk } from '../../core/change-event.js';
import { ConfigError } from '../../core/errors.js';
import type { TableConfig } from '../../core/mapping.js';
import type { StreamContext } from '../../streams/context.js';
import type { RetryPolicy } from '../../streams/retry.js';
import { IdlePoll } from '../idle-wait.js';
import { readWithRetry } from '../read-with-retry.js';
import { countCaptured } from '../count-captured.js';
import type { Source } from '../source.js';
import { afterLegacySeqval, compareRows, dropOwn, toEvents, type CdcRow } from './cdc-changes.js';
import { ALL, CdcPosition } from './cdc-position.js';
import { DATABASE_STATE, MAX_LSN } from './cdc-queries.js';
import { CdcReads, type CapturedTable } from './cdc-reads.js';
import { loadMssqlDriver, openClient, type MssqlClient, type MssqlConnect } from '../../db/mssql/client.js';
import { MSSQL_ERRORS } from '../../db/mssql/errors.js';
import { checkServer, type ServerState } from './server-check.js';
import { Lsn } from './lsn.js';

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
  private readonly reads = new CdcReads(() => this.client!, (run) => this.query(run));

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
    this.retentionMinutes = await this.reads.agentJobs(context);
    this.tables = [];
    for (const [i, table] of this.options.tables.entries()) this.tables.push(await this.reads.describe(table, `tables[${i}]`));
    // Copies go parents first (the first table still copying is the one read).
    const order = inOrder(this.tables.map((t) => t.source), this.tableOrder);
    this.tables.sort((x, y) => order.indexOf(x.source) - order.indexOf(y.source));
    this.marker = await this.reads.describe({ source: MARKER, target: MARKER, key: ['id'] }, 'origin marker').catch(() => null);
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
      next = next.withTable(table, { snapshot: { lsn, key: null, ...(where === undefined ? {} : { where }) } });
    }
    return next.toString();
  }

  async close(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    await client?.close();
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
    const max = (await this.reads.maxLsn()) ?? Lsn.zero;
    const tables: Record<string, { after?: string; snapshot?: { lsn: string; key: null } }> = {};
    for (const table of this.tables) {
      if (this.options.snapshot === 'initial') tables[table.source] = { snapshot: { lsn: (await this.startLsn(table, max)).toString(), key: null } };
      else tables[table.source] = { after: (await this.reads.minLsn(table.instances[0]!)).predecessor().toString() };
    }
    return new CdcPosition(this.options.snapshot === 'initial' ? max : Lsn.zero, null, tables);
  }

  /**
   * Where a table's changes start for a copy made now: the published max LSN,
   * or just before its capture instance's first LSN when the instance is
   * newer than anything published yet (a freshly enabled table).
   */
  private async startLsn(table: CapturedTable, max: Lsn): Promise<Lsn> {
    return Lsn.max(max, (await this.reads.minLsn(table.instances[0]!)).predecessor());
  }

  private async snapshotChunk(table: CapturedTable): Promise<SourceChunk> {
    const progress = this.position.tables[table.source]!.snapshot!;
    const lsn = progress.lsn ?? (await this.startLsn(table, (await this.reads.maxLsn()) ?? Lsn.zero)).toString();
    if (!progress.lsn) this.context.log.info({ table: table.source, lsn }, 'snapshot started');
    const limit = this.options.readLimit;
    const page = await this.query(() => table.snapshot.next(progress.key, limit, { copy_lsn: { type: 'binary10', value: Lsn.parse(lsn).toBuffer() } }, progress.where));
    const done = page.read < limit;
    this.position = this.position.withTable(table.source, done ? { after: lsn } : { snapshot: { lsn, key: page.last, ...(progress.where === undefined ? {} : { where: progress.where }) } });
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
    const max = await this.reads.maxLsn();
    await this.reportPending(max);
    if (!max) return null;
    const from = this.position.lsn;
    const upto = await this.reads.windowEnd(from, max, this.options.readLimit);
    const rows: CdcRow[] = [];
    let gapped = false;
    for (const table of this.tables) {
      const progress = this.position.tables[table.source];
      if (progress?.gap || progress?.snapshot) continue;
      const resume = this.position.resumeFor(table.source);
      const after = resume.seqval.equals(ALL) ? resume.lsn : resume.lsn.predecessor();
      const result = await this.reads.readTable(table, after, upto);
      if (Array.isArray(result)) append(rows, result);
      else {
        this.reportGap(table, after, result.gap);
        gapped = true;
      }
    }
    // A checkpoint taken inside a transaction (older versions) resumes after its seqval, but the
    // origin marker is looked up in the whole transaction: it has the transaction's lowest seqval.
    const inside = this.position.seqval ? from.predecessor() : from;
    const marker = this.marker ? await this.reads.readTable(this.marker, inside, upto, false) : [];
    rows.sort(compareRows);
    const own = new Set((Array.isArray(marker) ? marker : []).map((r) => r.lsn.toString()));
    const fresh = dropOwn(afterLegacySeqval(rows, from, this.position.seqval), own, (r) =>
      this.context.metrics.suppressed.inc({ stream: this.context.stream, direction: this.context.direction, table: r.table, reason: 'origin' }),
    );
    this.position = this.position.with({ lsn: upto, seqval: null });
    if (fresh.length === 0 && !gapped) {
      this.context.metrics.lag.set({ stream: this.context.stream, direction: this.context.direction }, 0);
      return null;
    }
    const times = await this.reads.commitTimes(fresh);
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

  private reportGap(table: CapturedTable, checkpoint: Lsn, min: Lsn): void {
    const message =
      `changes of ${table.source} between LSN ${checkpoint} and ${min} were removed by the CDC cleanup job; ` +
      `the table is stopped. Re-copy it: cdc-sync snapshot --stream ${this.context.stream} --table ${table.source}`;
    this.position = this.position.withTable(table.source, { ...this.position.tables[table.source], gap: message });
    this.context.metrics.sourceGap.set({ stream: this.context.stream, direction: this.context.direction, table: table.source }, 1);
    this.context.reportProblem(message);
  }

  private async reportPending(max: Lsn | null): Promise<void> {
    if (Date.now() - this.lastPendingCheck < 5000) return;
    this.lastPendingCheck = Date.now();
    const labels = { stream: this.context.stream, direction: this.context.direction };
    const row = await this.reads.pending(this.position.lsn);
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

