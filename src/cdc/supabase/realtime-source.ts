import type { OwnWrites } from '../../core/own-writes.js';
import type { SupabaseClient } from '@supabase/supabase-js';
import { Observable, Subject } from 'rxjs';
import type { ChangeEvent, Row, SourceChunk } from '../../core/change-event.js';
import { ConfigError, TransientError } from '../../core/errors.js';
import type { TableConfig } from '../../core/mapping.js';
import type { StreamContext } from '../../streams/context.js';
import { retryTransient, type RetryPolicy } from '../../streams/retry.js';
import { idleWait } from '../idle-wait.js';
import { ReadGeneration } from '../read-generation.js';
import { countCaptured } from '../count-captured.js';
import type { Source } from '../source.js';
import { checkPostgrestWhere, learnJsonColumns, readChangedRows, readRowByKey } from './catch-up.js';
import { readDefinitions, restUrlOf } from '../../db/supabase/definitions.js';
import { classifyPostgrestError } from '../../db/supabase/errors.js';
import { RealtimePosition, type Watermark } from './realtime-position.js';
import { importModule } from '../../core/import-module.js';
import { ServerClock, losslessDecode, losslessFetch } from '../../db/supabase/lossless.js';
import type { FeedTable } from './realtime-feed.js';
import { checkTables } from './check-tables.js';
import { isEcho } from './echo.js';
import { LiveChannel } from './live-channel.js';
import { TOMBSTONE_SOURCE, TOMBSTONE_TABLE, realtimeTables, rowEvent, tombstoneEvent, type RealtimeTable } from './realtime-tables.js';
import { SeenImages, type ChangedDuringRead, type Via } from './seen-images.js';
import { LiveBuffer } from './live-buffer.js';
import { CatchUpSchedule } from './catch-up-schedule.js';

export interface RealtimeSourceOptions {
  url: string;
  key: string;
  tables: TableConfig[];
  maxSize: number;
  bufferSize: number;
  catchUp: { intervalMinutes: number; lookbackHours: number; maxRecords: number; marginSeconds: number };
  /** `initial`: a stream without checkpoint first reads every row of its tables (a catch-up from the start). */
  snapshot?: 'initial' | 'never';
  /** Read deletes from the tombstone table `cdc-sync init-sql` sets up. */
  tombstones: boolean;
  /** Join a private channel (projects with "Allow public access" off). */
  private: boolean;
  retry: RetryPolicy;
  /** What this process's streams wrote into the project: their echoes are dropped (two-way). */
  ownWrites?: OwnWrites;
}

/**
 * Supabase → here: the Realtime feed for low latency, and catch-up reads
 * through the REST API for everything Realtime lost (it delivers at most
 * once: disconnects, the time before "Subscribed to PostgreSQL", rate limits,
 * a full buffer, a stopped process). Catch-up runs on start, after every
 * (re)subscription, after a buffer overflow and on an interval. A change
 * seen twice (live and by catch-up) is handed on once.
 */
export class SupabaseRealtimeSource implements Source {
  private client: SupabaseClient | undefined;
  private readonly live: LiveChannel;
  private context!: StreamContext;
  private readonly tables: RealtimeTable[];
  private readonly wakeUp = new Subject<void>();
  private readonly buffer = new LiveBuffer();
  private position = new RealtimePosition({});
  /**
   * Tables whose catch-up is due or running, with the cutoff of the running
   * one, and how many buffered entries must be handed on before its next
   * page is read (null: not counted yet).
   */
  private catchUp: { pending: string[]; cutoff: string; ahead: number | null } | null = null;
  private readonly schedule: CatchUpSchedule;
  private readonly seen = new SeenImages();
  private readonly clock = new ServerClock();
  private readonly generations = new ReadGeneration();

  constructor(private readonly options: RealtimeSourceOptions) {
    this.tables = realtimeTables(options.tables);
    this.schedule = new CatchUpSchedule(() => this.context, options.catchUp.marginSeconds, () => this.wakeUp.next());
    this.live = new LiveChannel(() => this.context, () => this.client, this.tables, { private: options.private }, {
      change: (event) => this.accept([event], 'live'),
      cutDown: (table, key, errors) => this.repair(table, key, errors),
      listening: () => this.schedule.nowAndAfterMargin('subscribed'),
      lost: (reason) => this.schedule.request(reason),
    });
  }

  async open(context: StreamContext): Promise<void> {
    this.context = context;
    // Loaded on first use, like every driver: streams that do not need it do not pay for it.
    const [{ createClient }, { default: WebSocket }] = await Promise.all([importModule<typeof import('@supabase/supabase-js')>('@supabase/supabase-js'), import('ws')]);
    this.client ??= createClient(this.options.url, this.options.key, {
      auth: { persistSession: false, autoRefreshToken: false },
      // Every digit of int8 and numeric values, in REST bodies and Realtime frames; the server's clock from the responses.
      global: { fetch: losslessFetch(this.clock) },
      // Node 20 has no global WebSocket. The decode reads the 2.0.0 serializer's frames.
      realtime: { transport: WebSocket as never, vsn: '2.0.0', decode: losslessDecode as never },
    });
    await checkTables(this.client, this.tables, this.options.tables, context.stream);
    await learnJsonColumns(this.tables, (schema) =>
      readDefinitions(restUrlOf(this.options.url), this.options.key, 30_000, schema, 'tables', (failure) => classifyPostgrestError(failure, { stream: context.stream }), 'source.key'),
    );
    if (context.checkOnly) return;
    const labels = { stream: context.stream, direction: context.direction };
    context.metrics.bufferCapacity.set(labels, this.options.bufferSize);
    if (!this.live.subscribed) this.live.subscribe();
    this.schedule.every(this.options.catchUp.intervalMinutes * 60_000);
  }

  chunks(from: string | null, demand: Observable<void>): Observable<SourceChunk> {
    return this.generations.chunks(
      demand,
      () => {
        this.position = from === null && (this.options.snapshot ?? 'initial') === 'initial' ? RealtimePosition.parse(this.requestSnapshot(null, [])) : RealtimePosition.parse(from);
        // Live changes the stream had taken but not applied when it stopped (to store a copy's start, say) are gone
        // with it: the catch-up now reads only up to the margin, and the one after the margin finds the newest of them.
        this.catchUp = null;
        this.schedule.nowAndAfterMargin('stream started');
        this.seen.forgetHandedOn();
      },
      (stale, stop) => this.next(stale, stop),
    );
  }

  /**
   * Changes from outside the feed (the Database Webhook receiver) join the
   * same buffer and rules. pg_net sends webhooks concurrently, without
   * order: an image of a key deleted since is refused as stale.
   */
  push(events: ChangeEvent[]): void {
    this.accept(events, 'webhook');
  }

  private accept(events: ChangeEvent[], via: 'live' | 'webhook'): void {
    const labels = { stream: this.context.stream, direction: this.context.direction };
    for (const event of events) {
      if (this.buffer.length >= this.options.bufferSize) {
        // Dropping is safe only because the catch-up read finds these rows again (this one, and the rest, not judged yet).
        this.context.log.warn({ capacity: this.options.bufferSize }, 'buffer full: dropping live changes and catching up');
        this.seen.forgetHandedOn(this.buffer.dropAll());
        if (this.catchUp) this.catchUp.ahead = 0;
        this.schedule.request('overflow');
        break;
      }
      const admitted = this.admit(event, via);
      if (admitted) this.buffer.add(admitted);
    }
    this.context.metrics.bufferEvents.set(labels, this.buffer.length);
    this.wakeUp.next();
  }

  wake(): void {
    this.schedule.request('trigger');
  }

  async close(): Promise<void> {
    this.schedule.stop();
    await this.live.close();
    this.client?.realtime.disconnect();
    this.client = undefined;
  }

  /**
   * A record Realtime cut down (413) is fetched whole by its key through
   * REST, in its place in the buffer so that no later change overtakes it;
   * one without a usable key (401, or a key over 64 bytes) is left to a
   * catch-up read.
   */
  private repair(table: FeedTable, key: Row | null, errors: string[]): void {
    this.context.log.warn({ table: table.source, errors }, 'Realtime sent a record without its values; reading the row through REST');
    if (!key) {
      this.schedule.nowAndAfterMargin('record without values');
      return;
    }
    const fetched = this.fetchRow(table.source, key).catch((error: unknown) => {
      this.context.log.warn({ table: table.source, error: (error as Error).message }, 'reading a cut-down row failed; catching up');
      this.schedule.nowAndAfterMargin('record without values');
      return null;
    });
    this.buffer.hold(fetched);
    void fetched.then(() => this.wakeUp.next());
  }

  private async fetchRow(source: string, key: Row): Promise<ChangeEvent | null> {
    const table = this.tables.find((t) => t.source === source)!;
    const row = await retryTransient(async () => readRowByKey(this.client!, table, key, this.context.stream), this.options.retry, { signal: this.context.stopping });
    // Gone since: the row's current state is "deleted".
    const event: ChangeEvent = row ? rowEvent(table, row) : { table: table.source, op: 'delete', key, row: null, position: '', commitTime: new Date(this.clock.now()) };
    return this.admit(event, 'fetch');
  }

  /**
   * The copy of existing rows is a catch-up read from the start (the empty
   * watermark) instead of from the last one: keyset pages by (updated-at,
   * key), with the same guards against overtaking live changes.
   */
  requestSnapshot(position: string | null, tables: string[], where?: string): string {
    // Its pages are PostgREST reads, which take filters in their own syntax, not SQL.
    checkPostgrestWhere(where);
    const known = this.tables.map((t) => t.source);
    const unknown = tables.filter((t) => !known.includes(t));
    if (unknown.length > 0) throw new ConfigError(`--table: not a table of this stream: ${unknown.join(', ')} (have: ${known.join(', ')})`);
    let next = RealtimePosition.parse(position);
    for (const table of tables.length > 0 ? tables : known) next = next.copy(table, where);
    return next.toString();
  }

  copying(position: string): string[] {
    return RealtimePosition.parse(position).copying;
  }

  private async next(stale: () => boolean, stop: AbortSignal): Promise<SourceChunk | null> {
    for (;;) {
      if (stale()) return null;
      if (this.schedule.due && !this.catchUp) this.startCatchUp();
      if (this.catchUp) {
        // What waited in the buffer when a page is read is older than what the page reads: it goes first,
        // or a row would end with the older image. Changes that arrive during the read come after the page.
        const run = this.catchUp;
        run.ahead ??= this.buffer.length;
        if (run.ahead > 0) {
          const chunk = await this.bufferedChunk(run.ahead);
          run.ahead = Math.max(0, run.ahead - chunk.taken);
          if (chunk.events.length > 0) return chunk;
          continue;
        }
        run.ahead = null;
        const chunk = await this.catchUpPage();
        if (chunk) return chunk;
        continue;
      }
      if (this.buffer.length > 0) {
        const chunk = await this.bufferedChunk(this.buffer.length);
        if (chunk.events.length > 0) return chunk;
        continue;
      }
      this.context.idle?.();
      const either = AbortSignal.any([this.context.stopping, stop]);
      await idleWait(60_000, this.wakeUp, either);
      if (either.aborted) return null;
    }
  }

  private async bufferedChunk(limit: number): Promise<SourceChunk & { taken: number }> {
    const { events, taken } = await this.buffer.take(limit, this.options.maxSize);
    this.context.metrics.bufferEvents.set({ stream: this.context.stream, direction: this.context.direction }, this.buffer.length);
    if (events.length > 0) countCaptured(this.context, events);
    const caughtUp = this.catchUp === null && this.buffer.length === 0 && !this.buffer.midBurst();
    return { events, rejected: [], position: this.position.toString(), caughtUp, readsPending: this.schedule.readsPending, taken };
  }

  private startCatchUp(): void {
    this.schedule.due = false;
    // "Now" from the server's clock (HTTP Date of its answers), not this machine's.
    const cutoff = new Date(this.clock.now() - this.options.catchUp.marginSeconds * 1000).toISOString();
    // Tombstones first: a row deleted and later inserted again is then deleted, then copied.
    this.catchUp = { pending: [...(this.options.tombstones ? [TOMBSTONE_SOURCE] : []), ...this.tables.map((t) => t.source)], cutoff, ahead: null };
    this.context.metrics.catchUpRuns.inc({ stream: this.context.stream, direction: this.context.direction });
  }

  /** One page of the current catch-up; null when a table finished without rows. */
  private async catchUpPage(): Promise<SourceChunk | null> {
    const run = this.catchUp!;
    const table = run.pending[0] === TOMBSTONE_SOURCE ? TOMBSTONE_TABLE : this.tables.find((t) => t.source === run.pending[0])!;
    const after: Watermark = this.position.tables[table.source] ?? {
      at: new Date(this.clock.now() - this.options.catchUp.lookbackHours * 3_600_000).toISOString(),
      key: [],
    };
    const limit = this.options.catchUp.maxRecords;
    const changedDuringRead = this.seen.beginRead();
    const page = await retryTransient(
      async () => {
        try {
          return await readChangedRows(this.client!, table, after, run.cutoff, limit);
        } catch (error) {
          throw new TransientError(`catch-up read of ${table.source} failed: ${(error as Error).message}`, { context: { stream: this.context.stream, table: table.source } });
        }
      },
      this.options.retry,
      { signal: this.context.stopping, onRetry: () => this.context.metrics.retries.inc({ stream: this.context.stream, direction: this.context.direction }) },
    ).finally(() => this.seen.endRead());
    // Done at an empty page, not at a short one: PostgREST's db-max-rows (1,000 on Supabase) cuts a page
    // below `limit` without saying so.
    if (page.rows.length === 0) run.pending.shift();
    if (run.pending.length === 0) this.catchUp = null;
    this.position = this.position.afterPage(table.source, after, page.last);
    if (!page.last && after.copying) this.context.log.info({ table: table.source }, 'copy of existing rows finished');
    const events = page.rows
      .map((row) => (table === TOMBSTONE_TABLE ? tombstoneEvent(this.tables, row) : rowEvent(table, row)))
      .map((e) => e && this.admit(e, 'catch-up', changedDuringRead))
      .filter((e): e is ChangeEvent => e !== null);
    this.context.metrics.catchUpRows.inc({ stream: this.context.stream, direction: this.context.direction, table: table.source }, events.length);
    // A copy that ends with this empty page still hands its position on: the checkpoint (and the status) must say it is done.
    if (events.length === 0 && !page.last && !after.copying) return null;
    countCaptured(this.context, events);
    return { events, rejected: [], position: this.position.toString(), caughtUp: this.catchUp === null && this.buffer.length === 0, readsPending: this.schedule.readsPending };
  }

  /**
   * The change when it was not handed on yet, else null. Realtime delivers at
   * most once, so an update's before-image is what the target holds only when
   * that very image was handed on here. Otherwise (the insert or an earlier
   * update was lost, or forgotten at a restart) the update goes on without it,
   * and the sink writes it even when it changes nothing (dropNoops) instead of
   * skipping a row the target never got.
   */
  private admit(event: ChangeEvent, via: Via, changedDuringRead?: ChangedDuringRead): ChangeEvent | null {
    const table = this.tables.find((t) => t.source === event.table);
    if (!table) return null;
    const continues = event.op !== 'update' || !event.before || this.seen.isLast(event, event.before);
    const verdict = this.seen.judge(event, via, () => isEcho(this.options.ownWrites, this.options.url, event, table, via), changedDuringRead);
    if (verdict !== 'new') {
      this.context.metrics.suppressed.inc({ stream: this.context.stream, direction: this.context.direction, table: event.table, reason: verdict });
      return null;
    }
    return continues ? event : { ...event, before: null };
  }
}
