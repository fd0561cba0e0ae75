import { append } from '../../core/arrays.js';
import { matchTarget } from '../../core/target-match.js';
import type { Statement } from 'better-sqlite3';
import type { ChangeEvent, Row } from '../../core/change-event.js';
import { ConfigError } from '../../core/errors.js';
import { toJsonText } from '../../core/json.js';
import type { TableConfig, TableMapping, TargetTable } from '../../core/mapping.js';
import type { LogicalType } from '../../core/values.js';
import type { StreamContext } from '../../streams/context.js';
import { captureTriggerNames } from '../../db/sqlite/changelog-setup.js';
import type { ApplyResult, Sink, SinkBatch } from '../sink.js';
import { groupStatements, type StatementGroup } from '../statement-groups.js';
import { openSqlite, sqliteTableName, type SqliteDatabase } from '../../db/sqlite/connection.js';
import { classifySqliteError, isSqliteConnectionError } from '../../db/sqlite/errors.js';
import { foreignKeys, introspectSqliteTable, type ForeignKey } from '../../db/sqlite/introspect.js';
import { logConflicts, resolveByChangeTime } from './change-time.js';
import { byChangeTimeTable, lostToDeletes, type ConflictEntry } from '../conflicts.js';
import {
  CLEAR_ORIGIN_SQL,
  INSERT_DEAD_LETTERS_SQL,
  OPEN_DEAD_LETTERS_SQL,
  PING_BACK_DELETE_SQL,
  SUPERSEDE_DEAD_LETTERS_SQL,
  READ_CHECKPOINT_SQL,
  SAVE_CHECKPOINT_SQL,
  SCHEMA_SQL,
  SET_ORIGIN_SQL,
  conflictSql,
  deleteSql,
  emptyTableSql,
  pingBackSql,
  upsertSql,
  type Shape,
} from './queries.js';
import { encode, keysJson, rowsJson } from './json-params.js';
import { explainForeignKey } from './missing-parent.js';

interface TargetInfo {
  table: string;
  key: string[];
  types: Map<string, LogicalType>;
  newerWinsBy: string | undefined;
  updatable: string[] | null;
  /** The capture triggers watch this table here: lost conflicts are pinged back. */
  captured: boolean;
  /** Columns of the row images the triggers write (for ping-back). */
  imageColumns: string[];
  /** newer-wins by change time against this database's own change log (captured tables only). */
  byChangeTime: boolean;
  /** newer-wins by the updated-at column on a captured table: changes that meet a delete are judged by change time (judgedByChangeTime). */
  deletesByChangeTime: boolean;
  foreignKeys: ForeignKey[];
}

/**
 * Applies batches to a SQLite database: one `BEGIN IMMEDIATE` transaction per
 * batch, per table one set-based statement for the deletes and one per column
 * set for the upserts, then the dead letters and the checkpoint. Rows written
 * here carry the `cdc_sync_origin` marker, so the capture triggers of a
 * two-way set-up do not record them again.
 *
 * A child whose parent does not exist fails with reason `missing-parent` and a
 * message naming the parent (`orders:ord_001 missing shift_id -> shifts[shift_001]`).
 * It is permanent: the stream isolates it into the dead letter, and
 * `cdc-sync retry-failed` applies it again once the parent has arrived. Parents
 * of the same batch are always applied first (tables in configuration order).
 */
export class SqliteSink implements Sink {
  readonly storesCheckpoints = true;
  readonly storesDeadLetters = true;
  private db: SqliteDatabase | undefined;
  private context: StreamContext | undefined;
  private readonly targets = new Map<string, TargetInfo>();
  private readonly found = new Map<string, { table: TargetTable; captured: boolean; foreignKeys: ForeignKey[] }>();
  private readonly statements = new Map<string, Statement<unknown[]>>();
  /** Open dead letters of this stream, at most: none, and no batch looks for superseded ones. */
  private openLetters = 0;

  constructor(
    private readonly url: string,
    private readonly options: { preferIncoming?: boolean } = {},
  ) {}

  async open(context: StreamContext, tables: TableConfig[]): Promise<TargetTable[]> {
    this.context = context;
    try {
      this.db ??= openSqlite(this.url, 'sink.url', { mustExist: true });
      const db = this.db;
      if (!context.checkOnly) db.exec(SCHEMA_SQL);
      const result: TargetTable[] = [];
      for (const [i, config] of tables.entries()) {
        let name: string;
        try {
          name = sqliteTableName(config.target || matchTarget(config.source, tableNames(db), `tables[${i}]`));
        } catch (error) {
          throw new ConfigError(`tables[${i}].target: ${(error as Error).message}`);
        }
        const table = introspectSqliteTable(db, name);
        if (!table) throw new ConfigError(`tables[${i}].target: table ${name} does not exist in the sink database`);
        const trigger = db.prepare(`SELECT 1 FROM sqlite_schema WHERE type = 'trigger' AND name = ?`).get(captureTriggerNames(name).update);
        this.found.set(name, { table, captured: trigger !== undefined, foreignKeys: foreignKeys(db, name) });
        result.push(table);
      }
      if (!context.checkOnly) this.openLetters = (db.prepare(OPEN_DEAD_LETTERS_SQL).get(context.stream) as { n: number }).n;
      context.setConnected('sink', true);
      return result;
    } catch (error) {
      throw this.fail(error);
    }
  }

  bind(mappings: TableMapping[]): void {
    for (const m of mappings) {
      const found = this.found.get(m.target.name.name)!;
      this.targets.set(m.source, {
        table: m.target.name.name,
        key: m.targetKey,
        types: new Map(m.target.columns.map((c) => [c.name, c.type])),
        newerWinsBy: m.conflict === 'newer-wins' ? m.targetUpdatedAt : undefined,
        updatable: m.owned,
        captured: found.captured,
        imageColumns: m.target.columns.map((c) => c.name),
        byChangeTime: found.captured && m.byChangeTime,
        deletesByChangeTime: found.captured && m.byUpdatedAt,
        foreignKeys: found.foreignKeys,
      });
    }
  }

  async readCheckpoint(stream: string): Promise<string | null> {
    try {
      const row = this.statement(READ_CHECKPOINT_SQL).get(stream) as { position: string } | undefined;
      return row?.position ?? null;
    } catch (error) {
      throw this.fail(error);
    }
  }

  async apply(batch: SinkBatch): Promise<ApplyResult> {
    const db = this.requireDb();
    let written = 0;
    const conflicts: { table: string; key: Row }[] = [];
    let table: string | undefined;
    const applied: StatementGroup[] = [];
    let superseded = 0;
    try {
      db.exec('BEGIN IMMEDIATE');
      try {
        this.statement(SET_ORIGIN_SQL[0]).run();
        this.statement(SET_ORIGIN_SQL[1]).run(this.context?.stream ?? 'cdc-sync');
        const resolved = this.resolveConflicts(batch.changes);
        const changes = resolved.losers.size > 0 ? batch.changes.filter((e) => !resolved.losers.has(e)) : batch.changes;
        for (const group of groupStatements(changes)) {
          table = group.table;
          applied.push(group);
          const target = this.target(group.table);
          const shape: Shape = {
            table: target.table,
            columns: group.columns.map((name) => ({ name, type: target.types.get(name) ?? 'other' })),
            key: target.key,
            newerWinsBy: target.newerWinsBy,
            updatable: target.updatable,
          };
          if (group.op === 'truncate') {
            written += this.statement(emptyTableSql(target.table)).run().changes;
            continue;
          }
          if (group.op === 'delete') {
            written += this.statement(deleteSql(target.table, target.key)).run(keysJson(group.events, target)).changes;
            continue;
          }
          const param = rowsJson(group.events, shape.columns);
          // Rows without the timestamp cannot lose a comparison (as in the PostgreSQL sink).
          if (shape.newerWinsBy && group.columns.includes(shape.newerWinsBy)) {
            const losers = this.statement(conflictSql({ ...shape, newerWinsBy: shape.newerWinsBy })).all(param) as Row[];
            append(resolved.logged, losers.map((key) => byUpdatedAt(group.table, key, this.context?.stream ?? '')));
            if (losers.length > 0 && target.captured) {
              const keys = toJsonText(losers.map((k) => target.key.map((c) => encode(k[c] ?? null, target.types.get(c) ?? 'other'))));
              this.statement(pingBackSql(target.table, target.key, target.imageColumns)).run(target.table, keys);
            }
          }
          try {
            written += this.statement(upsertSql(shape)).run(param).changes;
          } catch (error) {
            throw explainForeignKey(error, applied, (source) => this.target(source), (sql) => this.statement(sql));
          }
        }
        table = undefined;
        logConflicts((sql) => this.statement(sql), resolved.logged);
        for (const lost of lostToDeletes(resolved.logged)) {
          const target = this.target(lost.table);
          // As the capture triggers image a row: binary as \x-hex text.
          const key = Object.fromEntries(target.key.map((k) => [k, encode(lost.key[k] ?? null, 'other')]));
          this.statement(PING_BACK_DELETE_SQL).run({ table: target.table, key: JSON.stringify(key), at: lost.stored_time!.toISOString() });
        }
        append(conflicts, resolved.logged.map((e) => ({ table: e.table, key: e.key })));
        if (this.openLetters > 0 && changes.length > 0) {
          const keys = changes.filter((e) => e.op !== 'truncate').map((e) => ({ table: e.table, key: e.key }));
          superseded = this.statement(SUPERSEDE_DEAD_LETTERS_SQL).run(this.context?.stream ?? '', toJsonText(keys)).changes;
        }
        if (batch.deadLetters.length > 0) this.statement(INSERT_DEAD_LETTERS_SQL).run(toJsonText(batch.deadLetters));
        if (batch.checkpoint) this.statement(SAVE_CHECKPOINT_SQL).run(batch.checkpoint.stream, batch.checkpoint.position);
        this.statement(CLEAR_ORIGIN_SQL).run();
        try {
          db.exec('COMMIT');
        } catch (error) {
          // Deferred foreign keys are checked here, still inside the transaction.
          throw explainForeignKey(error, applied, (source) => this.target(source), (sql) => this.statement(sql));
        }
      } catch (error) {
        if (db.inTransaction) db.exec('ROLLBACK');
        throw error;
      }
    } catch (error) {
      throw this.fail(error, table);
    }
    this.context?.setConnected('sink', true);
    this.openLetters += batch.deadLetters.length - superseded;
    return { written, conflicts, ...(superseded > 0 ? { superseded } : {}) };
  }

  /** Per table that resolves by change time: the incoming changes that lose to a newer change made here. */
  private resolveConflicts(changes: ChangeEvent[]): { losers: Set<ChangeEvent>; logged: ConflictEntry[] } {
    const losers = new Set<ChangeEvent>();
    const logged: ConflictEntry[] = [];
    const byTable = byChangeTimeTable(changes, (table) => this.target(table).byChangeTime || this.target(table).deletesByChangeTime);
    for (const [source, events] of byTable) {
      const target = this.target(source);
      const resolved = resolveByChangeTime((sql) => this.statement(sql), target, events, keysJson(events, target), {
        stream: this.context?.stream ?? '',
        preferIncoming: this.options.preferIncoming ?? true,
      });
      for (const e of resolved.losers) losers.add(e);
      append(logged, resolved.entries);
    }
    return { losers, logged };
  }

  async close(): Promise<void> {
    const db = this.db;
    this.db = undefined;
    this.statements.clear();
    db?.close();
  }

  private statement(sql: string): Statement<unknown[]> {
    let statement = this.statements.get(sql);
    if (!statement) {
      statement = this.requireDb().prepare<unknown[]>(sql);
      // Few distinct statements per stream (tables × column sets); bound the cache anyway.
      if (this.statements.size > 500) this.statements.clear();
      this.statements.set(sql, statement);
    }
    return statement;
  }

  private target(source: string): TargetInfo {
    const target = this.targets.get(source);
    if (!target) throw new ConfigError(`no target described for source table ${source}`);
    return target;
  }

  private requireDb(): SqliteDatabase {
    if (!this.db) throw new ConfigError('SQLite sink used before open()');
    return this.db;
  }

  private fail(error: unknown, table?: string) {
    const classified = classifySqliteError(error, { stream: this.context?.stream, table });
    if (isSqliteConnectionError(classified)) this.context?.setConnected('sink', false);
    return classified;
  }
}

/** A key `conflictSql` returned (newer-wins by updatedAt) as a conflict log entry: the stored row won. */
function byUpdatedAt(table: string, key: Row, stream: string): ConflictEntry {
  return { stream, table, key, rule: 'updated-at', op: 'update', incoming: null, incoming_time: null, stored: null, stored_time: null, winner: 'stored', winning: null };
}

/** The database's own tables, for a target the configuration left out (matchTarget). */
function tableNames(db: SqliteDatabase): string[] {
  return (db.prepare(`SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE 'cdc\\_sync\\_%' ESCAPE '\\'`).all() as { name: string }[]).map((r) => r.name);
}
