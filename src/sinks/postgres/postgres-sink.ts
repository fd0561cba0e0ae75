import { append } from '../../core/arrays.js';
import type { ChangeEvent, Row } from '../../core/change-event.js';
import { matchTarget } from '../../core/target-match.js';
import { ConfigError, TransientError } from '../../core/errors.js';
import { toJsonText } from '../../core/json.js';
import type { TableConfig, TableMapping, TargetTable } from '../../core/mapping.js';
import { parseQualifiedName } from '../../core/names.js';
import type { StreamContext } from '../../streams/context.js';
import type { ApplyResult, Sink, SinkBatch } from '../sink.js';
import { createPool, type Pool, type PoolClient } from '../../db/postgres/connection.js';
import { quoteTable } from '../../db/postgres/identifiers.js';
import { classifyPgError, isConnectionError } from '../../db/postgres/errors.js';
import { introspectTable } from '../../db/postgres/introspect.js';
import { logConflicts, pingBackDeletes, resolveChangeTimeConflicts } from './change-time.js';
import { groupsOf, statementSql, upsertShape, type PreparedGroup } from './batch-statements.js';
import { CopyRefused, NewRowCopy } from './new-row-copy.js';
import { targetInfo, type TargetInfo } from './target-info.js';
import { resolveByUpdatedAt } from './updated-at.js';
import {
  INSERT_DEAD_LETTERS_SQL,
  OPEN_DEAD_LETTERS_SQL,
  SUPERSEDE_DEAD_LETTERS_SQL,
  READ_CHECKPOINT_SQL,
  CAPTURED_SQL,
  SCHEMA_SQL,
  TABLE_NAMES_SQL,
  SETUP_LOCK_SQL,
  beginSql,
  commitSql,
} from './queries.js';

/**
 * An application transaction the batch waited for changed a key the batch
 * writes, and its change is newer: the batch is applied again, when that
 * change is committed and seen from the start.
 */
class LocalEditRaced extends Error {
  constructor(readonly table: string) {
    super(`an edit made in the target while the batch was applied changed a row of ${table}`);
  }
}

/** Applying a batch again for LocalEditRaced, at most; then it goes to the stream's retry like any transient failure. */
const RACE_REDOS = 5;

/**
 * Applies batches to PostgreSQL: per table one set-based statement for the
 * deletes and one per column set for the upserts, then the dead letters and
 * the checkpoint, all in one transaction. A crash before COMMIT loses the
 * whole batch and its checkpoint together, so the batch is simply read again.
 */
export class PostgresSink implements Sink {
  readonly storesCheckpoints = true;
  readonly storesDeadLetters = true;
  readonly signalsSent = true;
  private pool: Pool | undefined;
  private context: StreamContext | undefined;
  private readonly targets = new Map<string, TargetInfo>();
  private readonly captured = new Set<string>();
  /** The target has cdc_sync.origin_marker: each batch writes it, so a postgres-wal source reading this database drops the batch (no echo). */
  private marker = false;
  /** The connections take COPY (servers; not PGlite). */
  private copyIn = false;
  private readonly newRows = new NewRowCopy();
  /** Open dead letters of this stream, at most (retry-failed closes some elsewhere): none, and no batch looks for superseded ones. */
  private openLetters = 0;
  /** Statements worked out by `prepare`, until their batch is applied. */
  private readonly prepared = new WeakMap<ChangeEvent[], PreparedGroup[]>();

  constructor(
    private readonly url: string,
    private readonly options: { timeoutMs?: number; preferIncoming?: boolean } = {},
  ) {}

  async open(context: StreamContext, tables: TableConfig[]): Promise<TargetTable[]> {
    this.context = context;
    this.pool ??= createPool(this.url, { log: context.log, timeoutMs: this.options.timeoutMs, urlKey: 'sink.url' });
    try {
      await this.inTransaction(async (client) => {
        this.copyIn = client.copyFrom !== undefined;
        if (context.checkOnly) return;
        await client.query('BEGIN');
        await client.query(SETUP_LOCK_SQL);
        await client.query(SCHEMA_SQL);
        await client.query('COMMIT');
      });
      const found: TargetTable[] = [];
      let names: string[] | undefined;
      for (const [i, config] of tables.entries()) {
        const target = config.target || matchTarget(config.source, (names ??= (await this.pool.query<{ name: string }>(TABLE_NAMES_SQL)).rows.map((r) => r.name)), `tables[${i}]`);
        const table = await introspectTable(this.pool, parseQualifiedName(target));
        if (!table) throw new ConfigError(`tables[${i}].target: table ${target} does not exist in the sink database`);
        // New rows go with COPY, whose text a text row already is (copy-text.ts).
        found.push({ ...table, textRows: this.copyIn });
        const [row] = (await this.pool.query<{ captured: boolean }>(CAPTURED_SQL, [quoteTable(table.name)])).rows;
        if (row?.captured) this.captured.add(`${table.name.schema}.${table.name.name}`);
      }
      if (!context.checkOnly) {
        const [open] = (await this.pool.query<{ n: number }>(OPEN_DEAD_LETTERS_SQL, [context.stream])).rows;
        this.openLetters = open?.n ?? 0;
      }
      const [marker] = (await this.pool.query<{ exists: boolean }>(`SELECT to_regclass('cdc_sync.origin_marker') IS NOT NULL AS exists`)).rows;
      this.marker = marker?.exists === true;
      context.setConnected('sink', true);
      return found;
    } catch (error) {
      throw this.fail(error);
    }
  }

  bind(mappings: TableMapping[]): void {
    for (const m of mappings) this.targets.set(m.source, targetInfo(m, this.captured));
  }

  async readCheckpoint(stream: string): Promise<string | null> {
    try {
      const result = await this.requirePool().query<{ position: string }>(READ_CHECKPOINT_SQL, [stream]);
      return result.rows[0]?.position ?? null;
    } catch (error) {
      throw this.fail(error);
    }
  }

  prepare(changes: ChangeEvent[]): void {
    this.prepared.set(changes, this.groupsOf(changes));
  }

  /**
   * One round trip opens the transaction (origin, marker), one per
   * statement carries its rows (a bind parameter or COPY data, never inside
   * the SQL text, so no row value reaches the server's statement log), one
   * saves the checkpoint and commits. New rows go with COPY; when that is
   * refused (a row existed after all), the batch is rolled back and applied
   * again with upserts for that table. For newer-wins tables the losing keys
   * are read before the upsert, to count and log them and, in two-way
   * set-ups, to ping the winning rows back.
   */
  async apply(batch: SinkBatch): Promise<ApplyResult> {
    this.newRows.nextBatch();
    let statements = this.statements(batch.changes);
    for (let raced = 0; ; ) {
      try {
        return await this.applyStatements(batch, statements);
      } catch (error) {
        if (error instanceof LocalEditRaced && raced < RACE_REDOS) {
          raced += 1;
          this.context?.log.debug({ table: error.table, attempt: raced }, 'a local edit raced the batch; applying it again');
          continue;
        }
        if (error instanceof LocalEditRaced) throw new TransientError(error.message, { context: { stream: this.context?.stream, table: error.table } });
        if (!(error instanceof CopyRefused)) throw error;
        this.newRows.pause(error, this.context?.log);
        statements = this.groupsOf(batch.changes);
      }
    }
  }

  private async applyStatements(batch: SinkBatch, statements: PreparedGroup[]): Promise<ApplyResult> {
    let written = 0;
    const conflicts: { table: string; key: Row }[] = [];
    let table: string | undefined;
    let superseded = 0;
    try {
      await this.inTransaction(async (client) => {
        await client.script(beginSql(this.context?.stream ?? null, this.marker).join(';\n'));
        const entries = await this.resolveConflicts(client, batch.changes);
        if (entries.losers.size > 0) statements = this.groupsOf(batch.changes.filter((e) => !entries.losers.has(e)));
        // The statement with the most rows: once it is on its way, the stream may prepare the next batch.
        const largest = statements.reduce((best, s, i) => (s.group.events.length > statements[best]!.group.events.length ? i : best), 0);
        for (const [i, { group, copy, param }] of statements.entries()) {
          table = group.table;
          const target = this.target(group.table);
          const sent = i === largest ? batch.onSent : undefined;
          if (copy !== null) {
            written += await this.newRows.copy(client, target.table.name, group, copy, this.context?.stream, sent);
            continue;
          }
          if (group.op === 'upsert' && target.newerWinsBy) {
            const shape = { ...upsertShape(group, target), newerWinsBy: target.newerWinsBy };
            append(entries.logged, await resolveByUpdatedAt(client, target, shape, param, group.table, this.context?.stream ?? ''));
          }
          const pending = client.query(statementSql(group, target), group.op === 'truncate' ? [] : [param]);
          sent?.();
          written += (await pending).rowCount ?? 0;
        }
        table = undefined;
        if (entries.unlocked.length > 0) {
          const again = await this.resolveConflicts(client, entries.unlocked);
          const late = [...again.losers].find((e) => !entries.losers.has(e));
          if (late) throw new LocalEditRaced(late.table);
        }
        await logConflicts(client, entries.logged);
        await pingBackDeletes(client, entries.logged, (table) => this.target(table));
        append(conflicts, entries.logged.map((e) => ({ table: e.table, key: e.key })));
        if (this.openLetters > 0 && statements.length > 0) {
          const keys = statements.flatMap((s) => (s.group.op === 'truncate' ? [] : s.group.events.map((e) => ({ table: e.table, key: e.key }))));
          superseded = (await client.query(SUPERSEDE_DEAD_LETTERS_SQL, [this.context?.stream ?? '', toJsonText(keys)])).rowCount ?? 0;
        }
        if (batch.deadLetters.length > 0) await client.query(INSERT_DEAD_LETTERS_SQL, [toJsonText(batch.deadLetters)]);
        await client.script(commitSql(batch.checkpoint).join(';\n'));
      });
    } catch (error) {
      if (error instanceof CopyRefused || error instanceof LocalEditRaced) throw error;
      throw this.fail(error, table);
    }
    this.context?.setConnected('sink', true);
    this.openLetters += batch.deadLetters.length - superseded;
    return { written, conflicts, ...(superseded > 0 ? { superseded } : {}) };
  }

  private resolveConflicts(client: PoolClient, changes: ChangeEvent[]) {
    const options = { stream: this.context?.stream ?? '', preferIncoming: this.options.preferIncoming ?? true };
    return resolveChangeTimeConflicts(client, changes, (table) => this.target(table), options);
  }

  private copyAllowed(table: string): boolean {
    return this.copyIn && this.newRows.allowed(table);
  }

  /** The statements for a batch's changes: prepared ahead, or now (a part of a bisected batch, or a table whose COPY was refused since). */
  private statements(changes: ChangeEvent[]): PreparedGroup[] {
    const prepared = this.prepared.get(changes);
    this.prepared.delete(changes);
    if (prepared?.every((p) => p.copy === null || this.copyAllowed(p.group.table))) return prepared;
    return this.groupsOf(changes);
  }

  private groupsOf(changes: ChangeEvent[]): PreparedGroup[] {
    return groupsOf(changes, (table) => this.target(table), (table) => this.copyAllowed(table));
  }

  /** The stream judges the answer (and marks the sink lost); a late failure of an old probe must not. */
  async ping(): Promise<void> {
    try {
      await this.requirePool().query('SELECT 1');
    } catch (error) {
      throw classifyPgError(error, { stream: this.context?.stream });
    }
  }

  async close(): Promise<void> {
    const pool = this.pool;
    this.pool = undefined;
    await pool?.end();
  }

  private target(source: string): TargetInfo {
    const target = this.targets.get(source);
    if (!target) throw new ConfigError(`no target described for source table ${source}`);
    return target;
  }

  private requirePool(): Pool {
    if (!this.pool) throw new ConfigError('PostgreSQL sink used before open()');
    return this.pool;
  }

  /** Runs `work` on one connection; a failure rolls back (the statements themselves say BEGIN and COMMIT). */
  private async inTransaction(work: (client: PoolClient) => Promise<void>): Promise<void> {
    const client = await this.requirePool().connect();
    let broken = false;
    try {
      await work(client);
    } catch (error) {
      broken = await client.query('ROLLBACK').then(
        () => false,
        () => true,
      );
      throw error;
    } finally {
      client.release(broken);
    }
  }

  private fail(error: unknown, table?: string) {
    const classified = classifyPgError(error, { stream: this.context?.stream, table });
    if (isConnectionError(classified)) this.context?.setConnected('sink', false);
    return classified;
  }
}
