import { truncateUnsupported } from '../statement-groups.js';
import { matchTarget } from '../../core/target-match.js';
import type { SupabaseClient } from '@supabase/supabase-js';
import { CdcSyncError, ConfigError, errorMessage } from '../../core/errors.js';
import type { TableConfig, TableMapping, TargetTable } from '../../core/mapping.js';
import { parseQualifiedName, type QualifiedName } from '../../core/names.js';
import type { StreamContext } from '../../streams/context.js';
import { lostToStored, type ConflictEntry } from '../conflicts.js';
import type { ApplyResult, Sink, SinkBatch } from '../sink.js';
import { classifyPostgrestError, type PostgrestFailure } from '../../db/supabase/errors.js';
import { tableFromOpenApi, type OpenApiDocument } from '../../db/supabase/introspect.js';
import { DEFAULT_LIMITS, chunkRows, deleteFilters, fieldName, groupRequests, toJsonRow, type ChunkLimits, type DeleteFilter } from './requests.js';
import { importModule } from '../../core/import-module.js';
import { readDefinitions, restUrlOf } from '../../db/supabase/definitions.js';
import type { OwnWrites } from '../../core/own-writes.js';
import { ServerClock, losslessFetch } from '../../db/supabase/lossless.js';
import { keyString, type ChangeEvent, type Row } from '../../core/change-event.js';

export interface SupabaseSinkOptions {
  /** Project URL (https://<ref>.supabase.co); the REST API is under /rest/v1. */
  url: string;
  /** The service role (secret) key: the sink writes past row-level security and reads the table definitions. */
  key: string;
  limits?: Partial<ChunkLimits>;
  /** Abort a request after this long; the abort is a transient error. */
  timeoutMs?: number;
  /**
   * Tables of this project a supabase-realtime stream reads (two-way), with
   * their updated-at column: there the newer change wins by change time.
   */
  captured?: Map<string, string>;
  /** Ties of change time go to the incoming change (the forward stream's source). */
  preferIncoming?: boolean;
  /** Where two-way writes are noted, for the reverse stream to know their echoes. */
  ownWrites?: OwnWrites;
}

/** The header that asks the database (cdc_sync.newer_wins, see cdc/supabase/setup.ts) for the change-time rule, naming the side ties go to. */
export const TIES_HEADER = 'x-cdc-sync-ties';

/** The header that marks cdc-sync's writes (see skip-noop-sql.ts for reading it in the database). */
export const ORIGIN_HEADER = 'x-cdc-sync-origin';

interface Target {
  name: QualifiedName;
  /** schema.table */
  qualified: string;
  key: string[];
  /** Two-way: the updated-at column that holds each row's change time. */
  changeTime: string | undefined;
}

/** What supabase-js resolves a request to (it does not throw unless asked to). */
type Answer = PromiseLike<{ error: Omit<PostgrestFailure, 'status'> | null; status: number; count: number | null; data?: unknown }>;

/**
 * Applies batches through Supabase's REST API (PostgREST) with the real
 * supabase-js client: per table one upsert request per chunk of up to 1,000
 * rows, one delete request per chunk of keys. There is no transaction around
 * a batch, so checkpoints and dead letters live in files (the stream's file
 * stores); a batch cut short is simply sent again, which upserts and deletes
 * make harmless. Updates that change nothing are dropped by the database
 * (`cdc-sync init-sql` installs the trigger), not remembered here: a cache of
 * what was last sent goes stale as soon as anyone else edits the row.
 */
export class SupabaseSink implements Sink {
  readonly storesCheckpoints = false;
  readonly storesDeadLetters = false;
  private client: SupabaseClient | undefined;
  private context: StreamContext | undefined;
  private readonly targets = new Map<string, Target>();
  private readonly limits: ChunkLimits;
  private readonly restUrl: string;

  constructor(private readonly options: SupabaseSinkOptions) {
    this.limits = { ...DEFAULT_LIMITS, ...options.limits };
    this.restUrl = restUrlOf(options.url);
  }

  async open(context: StreamContext, tables: TableConfig[]): Promise<TargetTable[]> {
    this.context = context;
    // Loaded on first use, like every driver: streams that do not need it do not pay for it.
    const [{ createClient }, { default: ws }] = await Promise.all([importModule<typeof import('@supabase/supabase-js')>('@supabase/supabase-js'), import('ws')]);
    this.client ??= createClient(this.options.url, this.options.key, {
      auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
      db: { timeout: this.options.timeoutMs ?? 60_000 },
      // Every digit of int8 keys in the rows a two-way write returns.
      global: { headers: { [ORIGIN_HEADER]: context.stream }, fetch: losslessFetch(new ServerClock()) },
      // Node 20 has no global WebSocket; the sink never opens one, but the client is built with it.
      realtime: { transport: ws as never },
    });
    const documents = new Map<string, OpenApiDocument>();
    const found: TargetTable[] = [];
    for (const [i, config] of tables.entries()) {
      if (config.conflict === 'newer-wins' && config.updatedAt) {
        throw new ConfigError(`tables[${i}].conflict: newer-wins is not available with the supabase sink (a PostgREST upsert cannot compare timestamps)`);
      }
      // Column ownership (being added to TableConfig) needs a conditional update too; a merge-duplicates upsert sets every sent column.
      if ((config as { owns?: unknown }).owns !== undefined) {
        throw new ConfigError(`tables[${i}].owns: column ownership is not available with the supabase sink (a PostgREST upsert sets every column it sends)`);
      }
      // Left out: a table of the exposed public schema named like the source's.
      if (!config.target && !documents.has('public')) documents.set('public', await this.readDefinitions('public', `tables[${i}].target`));
      const target = config.target || matchTarget(config.source, Object.keys(documents.get('public')?.definitions ?? {}).map((t) => `public.${t}`), `tables[${i}]`);
      const name = parseQualifiedName(target);
      const schema = name.schema ?? 'public';
      let document = documents.get(schema);
      if (!document) {
        document = await this.readDefinitions(schema, `tables[${i}].target`);
        documents.set(schema, document);
      }
      const table = tableFromOpenApi(document, name, config);
      // PostgREST lists only the tables the key's role holds a privilege on (openapi-mode follow-privileges, its default).
      if (!table) {
        throw new ConfigError(
          `tables[${i}].target: table ${target} is not exposed by the Supabase REST API to the service_role: it does not exist in an exposed schema, or is not granted (run GRANT SELECT, INSERT, UPDATE, DELETE ON ${schema}.${name.name} TO service_role; \`cdc-sync init-sql --target supabase\` prints it)`,
        );
      }
      found.push(table);
    }
    context.setConnected('sink', true);
    return found;
  }

  bind(mappings: TableMapping[]): void {
    for (const m of mappings) {
      const qualified = `${m.target.name.schema ?? 'public'}.${m.target.name.name}`;
      const column = this.options.captured?.get(qualified);
      const changeTime = m.byChangeTime && column && m.target.columns.some((c) => c.name === column) ? column : undefined;
      this.targets.set(m.source, { name: m.target.name, qualified, key: m.targetKey, changeTime });
    }
  }

  readCheckpoint(): Promise<string | null> {
    return Promise.reject(new ConfigError('the supabase sink keeps no checkpoints; use checkpoints.store "file" or "auto"'));
  }

  async apply(batch: SinkBatch): Promise<ApplyResult> {
    if (batch.checkpoint) throw new ConfigError('the supabase sink keeps no checkpoints; use checkpoints.store "file" or "auto"');
    const client = this.requireClient();
    // Request shapes (supabase/supabase-js: packages/core/postgrest-js/src/PostgrestQueryBuilder.ts,
    // upsert and delete; PostgrestBuilder.ts sets Content-Profile from .schema()):
    // upsert → POST /rest/v1/<table>?on_conflict=<key>&columns="a","b" with
    // `Prefer: resolution=merge-duplicates, count=exact` and a JSON array body (no return=
    // preference: PostgREST answers 201 without a body); delete → DELETE with the
    // filter and `Prefer: count=exact`. The count comes back in Content-Range `*/<n>`.
    let written = 0;
    const conflicts: ConflictEntry[] = [];
    for (const group of groupRequests(batch.changes)) {
      const target = this.target(group.table);
      const from = () => client.schema(target.name.schema ?? 'public').from(target.name.name);
      if (group.op === 'truncate') throw truncateUnsupported('supabase', group.table, this.context?.stream);
      if (group.op === 'delete') {
        if (target.changeTime) for (const e of group.events) this.options.ownWrites?.noteDelete(this.options.url, target.qualified, e.key);
        const version = target.changeTime ? { column: target.changeTime, times: group.events.map((e) => e.commitTime), ties: this.ties } : undefined;
        const done: Row[] = [];
        for (const filter of deleteFilters(target.key, group.events.map((e) => e.key), this.limits, version)) {
          const filtered = byKeys(from().delete({ count: 'exact' }), filter);
          // Two-way: the deleted keys come back, so the ones a later portal edit kept are known.
          const answer = await this.send(group.table, target.changeTime ? filtered.select(target.key.map(fieldName).join(',')) : filtered);
          written += answer.count;
          done.push(...answer.rows);
        }
        if (target.changeTime) conflicts.push(...(await this.lost(target, group.events, done)));
      } else {
        // Two-way: the row carries its change's time, and the database keeps a row changed later (cdc_sync.newer_wins).
        const column = target.changeTime;
        const rows = group.events.map((e) => (column ? { ...toJsonRow(e.row!), [column]: e.commitTime.toISOString() } : toJsonRow(e.row!)));
        if (column) for (const e of group.events) this.options.ownWrites?.noteUpsert(this.options.url, target.qualified, keyOf(e.row!, target.key), e.commitTime);
        const onConflict = target.key.map(fieldName).join(',');
        const done: Row[] = [];
        for (const chunk of chunkRows(rows, this.limits)) {
          const request = from().upsert(chunk as never[], { onConflict, ignoreDuplicates: false, count: 'exact' });
          // Two-way: the written keys come back; a row the database kept (changed later here) is missing from them.
          const answer = await this.send(group.table, column ? request.select(target.key.map(fieldName).join(',')).setHeader(TIES_HEADER, this.ties) : request);
          written += answer.count;
          done.push(...answer.rows);
        }
        if (column) conflicts.push(...(await this.lost(target, group.events, done)));
      }
    }
    this.context?.setConnected('sink', true);
    return { written, ...(conflicts.length > 0 ? { conflicts: conflicts.map((entry) => ({ table: entry.table, key: entry.key, entry })) } : {}) };
  }

  /**
   * Two-way: the changes of a group the database did not apply, that lost to
   * a change made here later: the stored row is newer, or (an upsert) its
   * key was deleted later. A change it left out because the row was already
   * so (equal, or already deleted) is no conflict. Each comes with its log
   * entry (the stored row read whole), which the stream keeps beside the
   * dead letters: PostgREST cannot write the portal's cdc_sync schema.
   */
  private async lost(target: Target, events: ChangeEvent[], done: Row[]): Promise<ConflictEntry[]> {
    const applied = new Set(done.map((r) => keyString(keyOf(r, target.key))));
    const skipped = events.filter((e) => !applied.has(keyString(e.key)));
    if (skipped.length === 0) return [];
    const column = target.changeTime!;
    const stored = new Map<string, Row>();
    const from = () => this.requireClient().schema(target.name.schema ?? 'public').from(target.name.name);
    for (const filter of deleteFilters(target.key, skipped.map((e) => e.key), this.limits)) {
      const answer = await this.send(events[0]!.table, byKeys(from().select('*'), filter));
      for (const row of answer.rows) stored.set(keyString(keyOf(row, target.key)), row);
    }
    return skipped.flatMap((e) => {
      const row = stored.get(keyString(e.key));
      const storedTime = row ? Math.floor(Date.parse(String(row[column]))) : null;
      const loses =
        e.op === 'delete'
          ? row !== undefined
          : storedTime === null || storedTime > e.commitTime.getTime() || (storedTime === e.commitTime.getTime() && this.ties === 'target');
      // An upsert that lost to a later delete: the tombstone's time is not read.
      return loses ? [lostToStored(this.context?.stream ?? '', e, row ?? null, storedTime === null ? null : new Date(storedTime))] : [];
    });
  }

  async close(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    await client?.removeAllChannels();
  }

  /** Rows the request affected (Content-Range `*\/n` of `Prefer: count=exact`), and those it returned. */
  private async send(table: string, request: Answer): Promise<{ count: number; rows: Row[] }> {
    let answer: Awaited<Answer>;
    try {
      answer = await request;
    } catch (error) {
      throw this.fail({ status: 0, message: errorMessage(error) }, table);
    }
    if (answer.error) throw this.fail({ ...answer.error, status: answer.status }, table);
    return { count: answer.count ?? 0, rows: Array.isArray(answer.data) ? (answer.data as Row[]) : [] };
  }

  private readDefinitions(schema: string, path: string): Promise<OpenApiDocument> {
    return readDefinitions(this.restUrl, this.options.key, this.options.timeoutMs ?? 60_000, schema, path, (failure) => this.fail(failure));
  }

  private get ties(): 'incoming' | 'target' {
    return (this.options.preferIncoming ?? true) ? 'incoming' : 'target';
  }

  private target(source: string): Target {
    const target = this.targets.get(source);
    if (!target) throw new ConfigError(`no target described for source table ${source}`);
    return target;
  }

  private requireClient(): SupabaseClient {
    if (!this.client) throw new ConfigError('supabase sink used before open()');
    return this.client;
  }

  private fail(failure: PostgrestFailure, table?: string): CdcSyncError {
    const error = classifyPostgrestError(failure, { stream: this.context?.stream, table });
    if (error.transient && (failure.status === 0 || failure.status >= 500)) this.context?.setConnected('sink', false);
    return error;
  }
}

function keyOf(row: Row, key: string[]): Row {
  return Object.fromEntries(key.map((k) => [k, row[k] ?? null]));
}

/** A request narrowed to the keys of one filter from `deleteFilters`. */
function byKeys<T extends { filter(column: string, operator: string, value: unknown): T; or(filters: string): T }>(request: T, filter: DeleteFilter): T {
  return filter.kind === 'in' ? request.filter(filter.column, 'in', filter.list) : request.or(filter.filter);
}
