import { append } from '../../core/arrays.js';
import type { ChangeEvent, Row, Value } from '../../core/change-event.js';
import { ConfigError } from '../../core/errors.js';
import type { TableConfig, TableMapping, TargetColumn, TargetTable } from '../../core/mapping.js';
import { parseQualifiedName, type QualifiedName } from '../../core/names.js';
import { utcWallClock } from '../../core/timestamps.js';
import type { LogicalType } from '../../core/values.js';
import type { StreamContext } from '../../streams/context.js';
import { loadMssqlDriver, type MssqlClient, type MssqlConnect, type MssqlExecutor, openClient } from '../../db/mssql/client.js';
import { classifyMssqlError, isMssqlConnectionError } from '../../db/mssql/errors.js';
import { declaredType, isLocalTimeDefault, type TableColumn } from '../../db/mssql/columns.js';
import { triggerName } from '../../db/mssql/queue-setup.js';
import { byChangeTimeTable, type ConflictEntry } from '../conflicts.js';
import type { ApplyResult, Sink, SinkBatch } from '../sink.js';
import { type ChangeTimeTarget, recordConflicts, resolveByChangeTime } from './change-time.js';
import { QUEUE_CAPTURE, type QueueClock } from './change-time-queries.js';
import { groupStatements, type StatementGroup, truncateUnsupported } from '../statement-groups.js';
import { conflictSql, deleteSql, INSERT_DEAD_LETTERS, MARK_ORIGIN, mergeSql, READ_CHECKPOINT, SAVE_CHECKPOINT, SETUP, TARGET_COLUMNS, TARGET_KEYS, TARGET_REFERENCES } from './queries.js';

const TYPES: Record<string, LogicalType> = {
  bit: 'boolean', tinyint: 'integer', smallint: 'integer', int: 'integer', bigint: 'integer',
  decimal: 'decimal', numeric: 'decimal', money: 'decimal', smallmoney: 'decimal', float: 'float', real: 'float',
  char: 'text', varchar: 'text', nchar: 'text', nvarchar: 'text', text: 'text', ntext: 'text',
  uniqueidentifier: 'uuid', date: 'date', time: 'time', datetime: 'timestamp', datetime2: 'timestamp', smalldatetime: 'timestamp',
  datetimeoffset: 'timestamptz', binary: 'binary', varbinary: 'binary', image: 'binary',
};

interface TargetInfo {
  table: TargetTable;
  declared: Map<string, string>;
  key: string[];
  updatable: string[] | null;
  newerWinsBy: string | undefined;
  identityInsert: boolean;
  identity: string | undefined;
  /** newer-wins by change time against the SyncQueue that records this table's own changes (two-way). */
  changeTime: ChangeTimeTarget | undefined;
}

export interface MssqlSinkOptions {
  url: string;
  /** Tables (target names) whose identity key is written as given (SET IDENTITY_INSERT). */
  identityInsert: Set<string>;
  /** The queue a `mssql-queue` stream reads from this database (two-way): its rows are the database's own changes. */
  queueTable?: string | undefined;
  /** Ties of change time go to the incoming change. */
  preferIncoming?: boolean;
  connect?: MssqlConnect;
}

/**
 * Applies batches to SQL Server: per table one MERGE … USING OPENJSON(@rows)
 * (updating only rows that differ) and one set-based DELETE, the dead
 * letters and the checkpoint, in one transaction. Every transaction marks
 * its origin (SESSION_CONTEXT for the queue triggers, a marker row for the
 * CDC reader), so the other direction does not send it back.
 */
export class MssqlSink implements Sink {
  readonly storesCheckpoints = true;
  readonly storesDeadLetters = true;
  private client: MssqlClient | undefined;
  private context!: StreamContext;
  private readonly declared = new Map<string, Map<string, string>>();
  private readonly identities = new Map<string, string>();
  private readonly targets = new Map<string, TargetInfo>();
  private readonly clocks = new Map<string, QueueClock>();

  constructor(private readonly options: MssqlSinkOptions) {}

  async open(context: StreamContext, tables: TableConfig[]): Promise<TargetTable[]> {
    this.context = context;
    try {
      const connect = this.options.connect ?? (await loadMssqlDriver());
      this.client ??= await openClient(connect, this.options.url, 'sink.url');
      await this.client.query(SETUP);
      const found: TargetTable[] = [];
      for (const [i, config] of tables.entries()) {
        if (!config.target) throw new ConfigError(`tables[${i}].target: name the target table (the mssql sink does not look it up)`);
        const name = parseQualifiedName(config.target);
        const table = await this.introspect({ schema: name.schema ?? 'dbo', name: name.name }, this.options.identityInsert.has(config.target));
        if (!table) throw new ConfigError(`tables[${i}].target: table ${config.target} does not exist in the sink database`);
        found.push(table);
      }
      context.setConnected('sink', true);
      return found;
    } catch (error) {
      throw this.fail(error);
    }
  }

  bind(mappings: TableMapping[]): void {
    for (const m of mappings) {
      const id = `${m.target.name.schema}.${m.target.name.name}`;
      const declared = this.declared.get(id)!;
      const typed = (names: string[]) => names.map((name) => ({ name, type: declared.get(name) ?? 'nvarchar(max)' }));
      const clock = this.clocks.get(id);
      this.targets.set(m.source, {
        table: m.target,
        declared,
        key: m.targetKey,
        updatable: m.owned,
        newerWinsBy: m.conflict === 'newer-wins' ? m.targetUpdatedAt : undefined,
        identityInsert: this.options.identityInsert.has(id) || this.options.identityInsert.has(m.target.name.name),
        identity: this.identities.get(id),
        changeTime:
          clock && (m.byChangeTime || m.byUpdatedAt)
            ? { name: m.target.name, key: typed(m.targetKey), clock, encode: (keys) => encodeRows(keys, m.target.columns), deletesOnly: !m.byChangeTime }
            : undefined,
      });
    }
  }

  async readCheckpoint(stream: string): Promise<string | null> {
    try {
      const [row] = await this.requireClient().query<{ position: string }>(READ_CHECKPOINT, { stream: { type: 'nvarchar', value: stream } });
      return row?.position ?? null;
    } catch (error) {
      throw this.fail(error);
    }
  }

  async apply(batch: SinkBatch): Promise<ApplyResult> {
    let table: string | undefined;
    try {
      const result = await this.requireClient().transaction(async (tx) => {
        await tx.query(MARK_ORIGIN, { stream: { type: 'nvarchar', value: this.context.stream } });
        let written = 0;
        const conflicts: { table: string; key: Row }[] = [];
        const resolved = await this.resolveConflicts(tx, batch.changes);
        const changes = resolved.losers.size > 0 ? batch.changes.filter((e) => !resolved.losers.has(e)) : batch.changes;
        for (const group of groupStatements(changes)) {
          table = group.table;
          const info = this.targets.get(group.table);
          if (!info) throw new ConfigError(`no target described for source table ${group.table}`);
          written += await this.applyGroup(tx, info, group, conflicts);
        }
        table = undefined;
        await recordConflicts(tx, resolved.logged, (source) => this.targets.get(source)!.changeTime!);
        append(conflicts, resolved.logged.map((e) => ({ table: e.table, key: e.key })));
        if (batch.deadLetters.length > 0) await tx.query(INSERT_DEAD_LETTERS, { rows: { type: 'nvarchar-max', value: JSON.stringify(batch.deadLetters) } });
        if (batch.checkpoint) {
          await tx.query(SAVE_CHECKPOINT, {
            stream: { type: 'nvarchar', value: batch.checkpoint.stream },
            position: { type: 'nvarchar-max', value: batch.checkpoint.position },
          });
        }
        return { written, conflicts };
      });
      this.context.setConnected('sink', true);
      return result;
    } catch (error) {
      throw this.fail(error, table);
    }
  }

  async close(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    await client?.close();
  }

  /** Per table that resolves by change time: the incoming changes that lose to a newer change made here. */
  private async resolveConflicts(tx: MssqlExecutor, changes: ChangeEvent[]): Promise<{ losers: Set<ChangeEvent>; logged: ConflictEntry[] }> {
    const losers = new Set<ChangeEvent>();
    const logged: ConflictEntry[] = [];
    const byTable = byChangeTimeTable(changes, (table) => this.targets.get(table)?.changeTime !== undefined);
    for (const [source, events] of byTable) {
      const resolved = await resolveByChangeTime(tx, this.targets.get(source)!.changeTime!, events, {
        stream: this.context.stream,
        preferIncoming: this.options.preferIncoming ?? true,
      });
      for (const e of resolved.losers) losers.add(e);
      append(logged, resolved.entries);
    }
    return { losers, logged };
  }

  /** Two-way through mssql-queue: a table whose changes cdc-sync's trigger queues resolves by change time against the queue. */
  private async queueClock(qualified: string, name: QualifiedName): Promise<QueueClock | undefined> {
    const queueTable = this.options.queueTable;
    if (!queueTable) return undefined;
    const [found] = await this.requireClient().query<{ has_trigger: number; queue_id: number | null; table_name_type: string | null; created_at_default: string | null }>(QUEUE_CAPTURE, {
      table: { type: 'nvarchar', value: qualified },
      trigger: { type: 'nvarchar', value: triggerName(`${name.schema}.${name.name}`) },
      queue: { type: 'nvarchar', value: queueTable },
    });
    if (!found || found.has_trigger === 0 || found.queue_id === null) return undefined;
    return { queueTable, localTime: isLocalTimeDefault(found.created_at_default), names: found.table_name_type === 'varchar' ? 'varchar' : 'nvarchar' };
  }

  private async applyGroup(tx: MssqlExecutor, info: TargetInfo, group: StatementGroup, conflicts: { table: string; key: Row }[]): Promise<number> {
    if (group.op === 'truncate') throw truncateUnsupported('mssql', group.table, this.context?.stream);
    const typed = (names: string[]) => names.map((name) => ({ name, type: info.declared.get(name) ?? 'nvarchar(max)' }));
    const rows = group.events.map((e) => (group.op === 'delete' ? e.key : e.row!));
    const param = { rows: { type: 'nvarchar-max' as const, value: encodeRows(rows, info.table.columns) } };
    if (group.op === 'delete') {
      const [r] = await tx.query<{ written: number }>(deleteSql(info.table.name, typed(info.key)), param);
      return r?.written ?? 0;
    }
    const shape = {
      table: info.table.name,
      columns: typed(group.columns),
      key: info.key,
      updatable: info.updatable,
      newerWinsBy: info.newerWinsBy,
      identityInsert: info.identityInsert,
      identity: info.identity,
    };
    if (shape.newerWinsBy) {
      const losers = await tx.query<Row>(conflictSql({ ...shape, newerWinsBy: shape.newerWinsBy }), param);
      append(conflicts, losers.map((key) => ({ table: group.table, key })));
    }
    const [r] = await tx.query<{ written: number }>(mergeSql(shape), param);
    return r?.written ?? 0;
  }

  private async introspect(name: QualifiedName, identityInsert: boolean): Promise<TargetTable | null> {
    const client = this.requireClient();
    const qualified = `[${name.schema!.replace(/]/g, ']]')}].[${name.name.replace(/]/g, ']]')}]`;
    const columns = await client.query<TableColumn & { is_identity: boolean; is_computed: boolean }>(TARGET_COLUMNS, { table: { type: 'nvarchar', value: qualified } });
    if (columns.length === 0) return null;
    const keys = await client.query<{ index_id: number; is_primary_key: boolean; column_name: string }>(TARGET_KEYS, { table: { type: 'nvarchar', value: qualified } });
    const indexes = new Map<number, { primary: boolean; columns: string[] }>();
    for (const k of keys) {
      const index = indexes.get(k.index_id) ?? { primary: k.is_primary_key, columns: [] };
      index.columns.push(k.column_name);
      indexes.set(k.index_id, index);
    }
    this.declared.set(`${name.schema}.${name.name}`, new Map(columns.map((c) => [c.column_name, declaredType(c)])));
    const identity = columns.find((c) => c.is_identity)?.column_name;
    if (identity) this.identities.set(`${name.schema}.${name.name}`, identity);
    const clock = await this.queueClock(qualified, name);
    if (clock) this.clocks.set(`${name.schema}.${name.name}`, clock);
    const references = await client.query<{ schema_name: string; table_name: string }>(TARGET_REFERENCES, { table: { type: 'nvarchar', value: qualified } });
    return {
      name,
      // An identity column is assigned by SQL Server (rows are matched on an alternate key) unless IDENTITY_INSERT is configured;
      // computed and rowversion columns (sys.types calls rowversion `timestamp`) can never be written.
      columns: columns.map((c): TargetColumn => ({
        name: c.column_name,
        type: TYPES[c.column_type.toLowerCase()] ?? 'other',
        generated: c.is_computed || c.column_type.toLowerCase() === 'timestamp' || (c.is_identity && !identityInsert),
      })),
      primaryKey: [...indexes.values()].find((i) => i.primary)?.columns ?? [],
      uniqueKeys: [...indexes.values()].map((i) => i.columns),
      references: references.map((r) => ({ schema: r.schema_name, name: r.table_name })),
    };
  }

  private requireClient(): MssqlClient {
    if (!this.client) throw new ConfigError('SQL Server sink used before open()');
    return this.client;
  }

  private fail(error: unknown, table?: string) {
    const classified = classifyMssqlError(error, { stream: this.context?.stream, table });
    if (isMssqlConnectionError(classified)) this.context?.setConnected('sink', false);
    return classified;
  }
}

/** JSON for OPENJSON: binary as base64 (what OPENJSON … WITH varbinary reads), zoned times as UTC wall-clock for zone-less columns. */
export function encodeRows(rows: Row[], columns: TargetColumn[]): string {
  const types = new Map(columns.map((c) => [c.name, c.type]));
  return JSON.stringify(rows, function (this: Record<string, unknown>, key, value: unknown) {
    const raw = this[key] as Value;
    if (raw instanceof Uint8Array) return Buffer.from(raw).toString('base64');
    if (typeof value === 'bigint') return value.toString();
    if (typeof value === 'string' && (types.get(key) === 'timestamp' || types.get(key) === 'date')) return utcWallClock(value);
    if (typeof value === 'string' && types.get(key) === 'timestamptz') return fullOffset(value);
    return value;
  });
}

/**
 * datetimeoffset reads an offset as `±hh:mm` or `Z` only
 * (https://learn.microsoft.com/sql/t-sql/data-types/datetimeoffset-transact-sql, "Supported string literal formats");
 * PostgreSQL prints `+02` and others `+0200`.
 */
export function fullOffset(value: string): string {
  return value.replace(/(\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)([+-])(\d{2}):?(\d{2})?$/, (_, time: string, sign: string, hh: string, mm: string | undefined) => `${time}${sign}${hh}:${mm ?? '00'}`);
}
