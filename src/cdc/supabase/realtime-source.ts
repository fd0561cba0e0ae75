import type { OwnWrites } from '../../core/own-writes.js';
import { noWhere } from '../copy-filter.js';
import { createHash } from 'node:crypto';
import type { RealtimeChannel, SupabaseClient } from '@supabase/supabase-js';
import { Observable, Subject } from 'rxjs';
import type { ChangeEvent, Row, SourceChunk } from '../../core/change-event.js';
import { keyString } from '../../core/change-event.js';
import { ConfigError, TransientError } from '../../core/errors.js';
import type { TableConfig } from '../../core/mapping.js';
import type { StreamContext } from '../../streams/context.js';
import { retryTransient, type RetryPolicy } from '../../streams/retry.js';
import { idleWait } from '../idle-wait.js';
import { ReadGeneration } from '../read-generation.js';
import { countCaptured } from '../count-captured.js';
import type { Source } from '../source.js';
import { readChangedRows, type CatchUpTable } from './catch-up.js';
import { subscribeFeed } from './realtime-feed.js';
import { COPY_FROM_START, RealtimePosition, type Watermark } from './realtime-position.js';
import { TOMBSTONES } from '../../db/supabase/setup.js';
import { importModule } from '../../core/import-module.js';
import { ServerClock, losslessDecode, losslessFetch } from '../../db/supabase/lossless.js';
import type { FeedTable } from './realtime-feed.js';

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

const TOMBSTONE_SOURCE = '(tombstones)';

/** A live change younger than this may have more rows of its transaction behind it (see midBurst). */
const BURST_MS = 200;

interface Table extends CatchUpTable {
  softDelete: string | undefined;
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
  private channel: RealtimeChannel | undefined;
  private context!: StreamContext;
  private readonly tables: Table[];
  private readonly wakeUp = new Subject<void>();
  /** Live and webhook changes in arrival order; a pending fetch holds the place of a record Realtime cut down. */
  private buffer: (ChangeEvent | Promise<ChangeEvent | null>)[] = [];
  private position = new RealtimePosition({});
  /**
   * Tables whose catch-up is due or running, with the cutoff of the running
   * one, and how many buffered entries must be handed on before its next
   * page is read (null: not counted yet).
   */
  private catchUp: { pending: string[]; cutoff: string; ahead: number | null } | null = null;
  /**
   * While a catch-up page is read: per key whose image changed meanwhile,
   * the image it had when the read began (see isNew).
   */
  private duringRead: Map<string, Seen | undefined> | null = null;
  private catchUpDue = true;
  /**
   * The last image handed on per key (null: deleted), to drop what was
   * already seen. Images, not updated-at values: those come from two clocks
   * (the clinic's, kept on cdc-sync's forward writes, and Supabase's), and a
   * new edit may carry an earlier one.
   */
  private readonly seen = new Map<string, Seen>();
  private timer: NodeJS.Timeout | undefined;
  private readonly followUps = new Set<NodeJS.Timeout>();
  private readonly clock = new ServerClock();
  private readonly generations = new ReadGeneration();
  /** When the last live or webhook change was buffered. */
  private lastArrival = 0;
  /** Wait before making a new channel after one broke; doubles while they keep breaking. */
  private resubscribeDelayMs = 0;

  constructor(private readonly options: RealtimeSourceOptions) {
    this.tables = options.tables.map((t, i) => {
      if (!t.updatedAt) throw new ConfigError(`tables[${i}].updatedAt: a supabase-realtime table needs its updated-at column for catch-up reads`);
      const [schema, name] = t.source.includes('.') ? (t.source.split('.', 2) as [string, string]) : ['public', t.source];
      return { source: t.source, schema, name, key: t.key ?? ['id'], updatedAt: t.updatedAt, softDelete: t.softDelete };
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
    for (const [i, table] of this.tables.entries()) {
      // Every column the configuration names must exist, as for every source type (checkSourceColumns).
      const configured = this.options.tables[i]!;
      const named = [...Object.keys(configured.columns ?? {}), ...(configured.exclude ?? [])];
      const columns = [...new Set([...table.key, table.updatedAt, ...(table.softDelete ? [table.softDelete] : []), ...named])].join(',');
      const { error, status } = await this.client.schema(table.schema).from(table.name).select(columns).limit(0);
      if (error && /^(42P01|PGRST205|42703|PGRST204|PGRST106)$/.test(error.code ?? '')) {
        throw new ConfigError(`tables[${i}].source: ${table.source}: ${error.message}`);
      }
      // Tables in public on current Supabase projects are granted to no API role, service_role included.
      if (error?.code === '42501') {
        throw new ConfigError(
          `tables[${i}].source: ${table.source}: ${error.message}; run GRANT SELECT ON ${table.schema}.${table.name} TO service_role (\`cdc-sync init-sql --target supabase\` prints it)`,
        );
      }
      // At start a refused key is the configuration's fault (a wrong or anon key); never retried in silence.
      if (error && (status === 401 || status === 403) && !/^[0-9A-Z]{5}$/.test(error.code ?? '')) {
        throw new ConfigError(`source.key: Supabase refused the key (HTTP ${status}: ${error.message}); use the project's service-role key`);
      }
      if (error) throw new TransientError(`Supabase did not answer: ${error.message}`, { context: { stream: context.stream, table: table.source } });
    }
    if (context.checkOnly) return;
    const labels = { stream: context.stream, direction: context.direction };
    context.metrics.bufferCapacity.set(labels, this.options.bufferSize);
    if (!this.channel) this.subscribe();
    const interval = this.options.catchUp.intervalMinutes * 60_000;
    this.timer ??= setInterval(() => this.requestCatchUp('interval'), interval).unref();
  }

  /**
   * A new Realtime channel. Its callbacks act only while it is the current
   * one: a channel given up (broken, or removed at close) stays silent.
   */
  private subscribe(): void {
    const context = this.context;
    const channel: RealtimeChannel = subscribeFeed(
      this.client!,
      `cdc-sync:${context.stream}`,
      this.tables,
      {
        change: (event) => this.channel === channel && this.accept([event], 'live'),
        cutDown: (table, key, errors) => this.channel === channel && this.repair(table, key, errors),
        listening: () => {
          if (this.channel !== channel) return;
          this.resubscribeDelayMs = 0;
          this.catchUpNowAndAfterMargin('subscribed');
        },
        state: (connected, detail) => {
          if (this.channel !== channel) return;
          context.setConnected('source', connected);
          if (!connected) {
            const hint = /private channels/.test(detail ?? '') ? ' (set source.private: true)' : '';
            context.log.warn({ detail }, `Realtime channel down${hint}; a catch-up read follows the next subscription`);
            this.requestCatchUp('channel down');
          }
        },
        broken: (cause) => {
          if (this.channel !== channel) return;
          this.channel = undefined;
          context.setConnected('source', false);
          this.resubscribeDelayMs = Math.min(60_000, Math.max(1000, this.resubscribeDelayMs * 2));
          context.log.warn({ cause, retryInMs: this.resubscribeDelayMs }, 'Realtime sends nothing more on this channel; catching up and subscribing again');
          this.requestCatchUp('channel broken');
          void this.client?.removeChannel(channel);
          const timer = setTimeout(() => {
            this.followUps.delete(timer);
            if (this.client && !this.channel && !context.stopping.aborted) this.subscribe();
          }, this.resubscribeDelayMs);
          timer.unref();
          this.followUps.add(timer);
        },
      },
      { private: this.options.private },
    );
    this.channel = channel;
  }

  chunks(from: string | null, demand: Observable<void>): Observable<SourceChunk> {
    return this.generations.chunks(
      demand,
      () => {
        this.position = from === null && (this.options.snapshot ?? 'initial') === 'initial' ? RealtimePosition.parse(this.requestSnapshot(null, [])) : RealtimePosition.parse(from);
        // Live changes the stream had taken but not applied when it stopped (to store a copy's start, say) are gone
        // with it: the catch-up now reads only up to the margin, and the one after the margin finds the newest of them.
        this.catchUp = null;
        this.catchUpNowAndAfterMargin('stream started');
        this.forgetHandedOn();
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
        this.forgetHandedOn(this.buffer);
        this.buffer = [];
        if (this.catchUp) this.catchUp.ahead = 0;
        this.requestCatchUp('overflow');
        break;
      }
      if (!this.isNew(event, via)) continue;
      this.buffer.push(event);
      this.lastArrival = Date.now();
    }
    this.context.metrics.bufferEvents.set(labels, this.buffer.length);
    this.wakeUp.next();
  }

  wake(): void {
    this.requestCatchUp('trigger');
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    for (const t of this.followUps) clearTimeout(t);
    this.followUps.clear();
    const channel = this.channel;
    this.channel = undefined;
    if (channel) await this.client?.removeChannel(channel);
    this.client?.realtime.disconnect();
    this.client = undefined;
  }

  /**
   * After a (re)subscription: a catch-up now, and another once the margin
   * has passed, because the first one leaves out the last `marginSeconds`,
   * which is where the changes of a short outage are.
   */
  private catchUpNowAndAfterMargin(reason: string): void {
    this.requestCatchUp(reason);
    const timer = setTimeout(() => {
      this.followUps.delete(timer);
      this.requestCatchUp(`${reason}, after the margin`);
    }, this.options.catchUp.marginSeconds * 1000 + 1000);
    timer.unref();
    this.followUps.add(timer);
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
      this.catchUpNowAndAfterMargin('record without values');
      return;
    }
    const fetched = this.fetchRow(table.source, key).catch((error: unknown) => {
      this.context.log.warn({ table: table.source, error: (error as Error).message }, 'reading a cut-down row failed; catching up');
      this.catchUpNowAndAfterMargin('record without values');
      return null;
    });
    this.buffer.push(fetched);
    void fetched.then(() => this.wakeUp.next());
  }

  private async fetchRow(source: string, key: Row): Promise<ChangeEvent | null> {
    const table = this.tables.find((t) => t.source === source)!;
    const row = await retryTransient(
      async () => {
        let query = this.client!.schema(table.schema).from(table.name).select('*');
        for (const k of table.key) query = query.eq(k, key[k] as string);
        const { data, error } = await query.limit(1);
        if (error) throw new TransientError(`reading ${table.source} by key failed: ${error.message}`, { context: { stream: this.context.stream, table: table.source } });
        return ((data ?? []) as Row[])[0] ?? null;
      },
      this.options.retry,
      { signal: this.context.stopping },
    );
    // Gone since: the row's current state is "deleted".
    const event: ChangeEvent = row ? this.rowEvent(table, row) : { table: table.source, op: 'delete', key, row: null, position: '', commitTime: new Date(this.clock.now()) };
    return this.isNew(event, 'fetch') ? event : null;
  }

  /**
   * The copy of existing rows is a catch-up read from the start (the empty
   * watermark) instead of from the last one: keyset pages by (updated-at,
   * key), with the same guards against overtaking live changes.
   */
  requestSnapshot(position: string | null, tables: string[], where?: string): string {
    // Its pages are PostgREST reads, which take filters in their own syntax, not SQL.
    noWhere('supabase-realtime', where);
    const known = this.tables.map((t) => t.source);
    const unknown = tables.filter((t) => !known.includes(t));
    if (unknown.length > 0) throw new ConfigError(`--table: not a table of this stream: ${unknown.join(', ')} (have: ${known.join(', ')})`);
    let next = RealtimePosition.parse(position);
    for (const table of tables.length > 0 ? tables : known) next = next.with(table, COPY_FROM_START);
    return next.toString();
  }

  copying(position: string): string[] {
    return RealtimePosition.parse(position).copying;
  }

  private requestCatchUp(reason: string): void {
    this.context.log.debug({ reason }, 'catch-up requested');
    this.catchUpDue = true;
    this.wakeUp.next();
  }

  private async next(stale: () => boolean, stop: AbortSignal): Promise<SourceChunk | null> {
    for (;;) {
      if (stale()) return null;
      if (this.catchUpDue && !this.catchUp) this.startCatchUp();
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

  /**
   * Realtime sends the rows of one transaction one message at a time (a
   * child inserted before its parent arrives first). While rows are still
   * coming in, an empty buffer does not mean the source is caught up: the
   * batch then waits its maxWaitMs for the rest (so the parent joins it), and
   * a child that fails for its missing parent is held, not dead-lettered.
   */
  private midBurst(): boolean {
    return Date.now() - this.lastArrival < BURST_MS;
  }

  /**
   * The next buffered changes, at most maxSize of the first `limit` entries,
   * in order; waits for a fetch that holds the first place. `taken`: how
   * many entries left the buffer.
   */
  private async bufferedChunk(limit: number): Promise<SourceChunk & { taken: number }> {
    const events: ChangeEvent[] = [];
    let taken = 0;
    while (this.buffer.length > 0 && taken < limit && events.length < this.options.maxSize) {
      const first = this.buffer[0]!;
      if (first instanceof Promise) {
        if (events.length > 0) break;
        const fetched = await first;
        // An overflow may have emptied the buffer meanwhile.
        if (this.buffer[0] !== first) break;
        this.buffer.shift();
        taken += 1;
        if (fetched) events.push(fetched);
        continue;
      }
      events.push(first);
      this.buffer.shift();
      taken += 1;
    }
    this.context.metrics.bufferEvents.set({ stream: this.context.stream, direction: this.context.direction }, this.buffer.length);
    if (events.length > 0) countCaptured(this.context, events);
    const caughtUp = this.catchUp === null && this.buffer.length === 0 && !this.midBurst();
    return { events, rejected: [], position: this.position.toString(), caughtUp, taken };
  }

  private startCatchUp(): void {
    this.catchUpDue = false;
    // "Now" from the server's clock (HTTP Date of its answers), not this machine's.
    const cutoff = new Date(this.clock.now() - this.options.catchUp.marginSeconds * 1000).toISOString();
    // Tombstones first: a row deleted and later inserted again is then deleted, then copied.
    this.catchUp = { pending: [...(this.options.tombstones ? [TOMBSTONE_SOURCE] : []), ...this.tables.map((t) => t.source)], cutoff, ahead: null };
    this.context.metrics.catchUpRuns.inc({ stream: this.context.stream, direction: this.context.direction });
  }

  /** One page of the current catch-up; null when a table finished without rows. */
  private async catchUpPage(): Promise<SourceChunk | null> {
    const run = this.catchUp!;
    const table = run.pending[0] === TOMBSTONE_SOURCE ? this.tombstoneTable : this.tables.find((t) => t.source === run.pending[0])!;
    const after: Watermark = this.position.tables[table.source] ?? {
      at: new Date(this.clock.now() - this.options.catchUp.lookbackHours * 3_600_000).toISOString(),
      key: [],
    };
    const limit = this.options.catchUp.maxRecords;
    const changedDuringRead = new Map<string, Seen | undefined>();
    this.duringRead = changedDuringRead;
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
    ).finally(() => (this.duringRead = null));
    // Done at an empty page, not at a short one: PostgREST's db-max-rows (1,000 on Supabase) cuts a page
    // below `limit` without saying so.
    if (page.rows.length === 0) run.pending.shift();
    if (run.pending.length === 0) this.catchUp = null;
    // A copy is under way until its table reads an empty page.
    const copying: Partial<Watermark> = after.copying ? { copying: true } : {};
    if (page.last) this.position = this.position.with(table.source, { ...page.last, ...copying });
    else if (after.copying) {
      this.position = this.position.with(table.source, { at: after.at, key: after.key });
      this.context.log.info({ table: table.source }, 'copy of existing rows finished');
    } else if (!this.position.tables[table.source]) this.position = this.position.with(table.source, after);
    const events = page.rows
      .map((row) => (table === this.tombstoneTable ? this.tombstoneEvent(row) : this.rowEvent(table, row)))
      .filter((e): e is ChangeEvent => e !== null && this.isNew(e, 'catch-up', changedDuringRead));
    this.context.metrics.catchUpRows.inc({ stream: this.context.stream, direction: this.context.direction, table: table.source }, events.length);
    // A copy that ends with this empty page still hands its position on: the checkpoint (and the status) must say it is done.
    if (events.length === 0 && !page.last && !after.copying) return null;
    countCaptured(this.context, events);
    return { events, rejected: [], position: this.position.toString(), caughtUp: this.catchUp === null && this.buffer.length === 0 };
  }

  private readonly tombstoneTable: Table = {
    source: TOMBSTONE_SOURCE,
    schema: TOMBSTONES.schema,
    name: TOMBSTONES.name,
    key: ['id'],
    updatedAt: 'deleted_at',
    softDelete: undefined,
  };

  private tombstoneEvent(row: Row): ChangeEvent | null {
    const name = String(row.table_name);
    const table = this.tables.find((t) => `${t.schema}.${t.name}` === name);
    if (!table || !row.key || typeof row.key !== 'object') return null;
    return { table: table.source, op: 'delete', key: row.key as Row, row: null, position: '', commitTime: new Date(String(row.deleted_at)) };
  }

  private rowEvent(table: Table, row: Row): ChangeEvent {
    const deleted = table.softDelete !== undefined && row[table.softDelete] !== null && row[table.softDelete] !== undefined;
    return {
      table: table.source,
      op: deleted ? 'delete' : 'update',
      key: Object.fromEntries(table.key.map((k) => [k, row[k] ?? null])),
      row: deleted ? null : row,
      position: '',
      commitTime: new Date(String(row[table.updatedAt])),
    };
  }

  /**
   * A change cdc-sync itself made here (the forward stream of a two-way
   * pair): an upsert carrying the change time it was written with, or the
   * live delete of a key it deleted (its tombstones are not recorded).
   */
  /**
   * The seen map says what was handed on, not what was applied: changes a
   * full buffer dropped (`dropped`), or every change handed on before the
   * stream stopped (a copy request, a failed batch: those in its batch are
   * gone), must not be dropped as duplicates when a catch-up read finds them
   * again. A delete still refuses an older webhook image of its key.
   */
  private forgetHandedOn(dropped?: (ChangeEvent | Promise<ChangeEvent | null>)[]): void {
    const ids = dropped
      ? dropped.flatMap((e) => (e instanceof Promise ? [] : [`${e.table}\u0000${keyString(e.key)}`]))
      : [...this.seen.keys()];
    for (const id of ids) {
      if (this.seen.get(id) === null) this.seen.set(id, UNAPPLIED_DELETE);
      else this.seen.delete(id);
    }
  }

  private isEcho(event: ChangeEvent, table: Table, via: string): boolean {
    const own = this.options.ownWrites;
    if (!own) return false;
    const name = `${table.schema}.${table.name}`;
    if (event.op === 'delete') return via === 'live' && own.takeDeleteEcho(this.options.url, name, event.key);
    const stamped = event.row?.[table.updatedAt];
    return typeof stamped === 'string' && own.isUpsertEcho(this.options.url, name, event.key, stamped);
  }

  /**
   * Was this change not handed on yet? The same image of a key twice (live
   * and by catch-up, or an echo of a forward write) counts once; a delete
   * is remembered, so an unordered webhook's older image cannot bring the
   * row back (a real re-insert arrives live, or by the next catch-up read).
   */
  private isNew(event: ChangeEvent, via: 'live' | 'webhook' | 'catch-up' | 'fetch', changedDuringRead?: Map<string, Seen | undefined>): boolean {
    const table = this.tables.find((t) => t.source === event.table);
    if (!table) return false;
    const id = `${event.table}\u0000${keyString(event.key)}`;
    const image = event.op === 'delete' ? null : imageText(event.row!);
    // A page is handed on before the changes that arrived while it was read: it is judged by, and
    // leaves as the last image, what a key had when the read began.
    const later = changedDuringRead?.has(id) ?? false;
    const previous = later ? changedDuringRead!.get(id) : this.seen.get(id);
    const remember = () => {
      if (later) return;
      if (this.duringRead && !this.duringRead.has(id)) this.duringRead.set(id, this.seen.get(id));
      this.seen.delete(id);
      this.seen.set(id, image);
      // Bounded memory: forget the oldest keys; forgetting only costs an idempotent re-apply.
      if (this.seen.size > 100_000) this.seen.delete(this.seen.keys().next().value!);
    };
    const suppress = (reason: 'duplicate' | 'stale' | 'origin') => {
      this.context.metrics.suppressed.inc({ stream: this.context.stream, direction: this.context.direction, table: event.table, reason });
      return false;
    };
    if (this.isEcho(event, table, via)) {
      remember();
      return suppress('origin');
    }
    if (previous !== undefined && previous === image) return suppress('duplicate');
    if ((previous === null || previous === UNAPPLIED_DELETE) && via === 'webhook') return suppress('stale');
    remember();
    return true;
  }
}

/** A delete handed on that may not have been applied: not a duplicate of the tombstone a catch-up finds, still newer than a webhook's image. */
const UNAPPLIED_DELETE = Symbol('unapplied delete');
/** What the seen map holds per key: the image's digest, null for a delete. */
type Seen = string | null | typeof UNAPPLIED_DELETE;

/**
 * A row image as a short digest (columns in name order, whatever order the
 * feed or REST used): the seen map holds up to 100,000 keys, and a row may
 * carry a note of megabytes.
 */
function imageText(row: Row): string {
  const text = JSON.stringify(
    Object.keys(row)
      .sort()
      .map((k) => [k, row[k] ?? null]),
    (_, v: unknown) => (typeof v === 'bigint' ? v.toString() : v instanceof Uint8Array ? Buffer.from(v).toString('hex') : v),
  );
  return createHash('sha256').update(text).digest('base64');
}
