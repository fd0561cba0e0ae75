// The replication poller: one PostgreSQL session that owns a temporary wal2json slot and
// drains it on a timer, like Extensions.PostgresCdcRls.ReplicationPoller (supabase/realtime
// lib/extensions/postgres_cdc_rls/replication_poller.ex): poll again at once after a batch
// that reached subscribers, after poll_interval_ms when the slot had changes for nobody, and
// after 5 × poll_interval_ms when idle.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { POLL_SQL, SETUP_SQL, SUBSCRIPTION_TABLES_SQL } from './wal-sql.js';
import type { Filter, SubscriptionParams } from './subscriptions.js';
import { describeParams } from './subscriptions.js';

export type ChangeType = 'INSERT' | 'UPDATE' | 'DELETE';

/** One decoded change, the message `data` still as JSON fragments. */
export interface WalChange {
  lsn: string;
  type: ChangeType;
  schema: string;
  table: string;
  entity: number;
  commitTimestamp: string | null;
  columnsJson: string;
  recordJson: string;
  oldRecordJson: string;
  errors: string[] | null;
  /** column → [type, value as text] of the new tuple and of the replica identity, for filters */
  values: { new: Record<string, [string, string | null]>; old: Record<string, [string, string | null]> };
}

export interface FilterCheck {
  op: string;
  type: string;
  lhs: string | null;
  rhs: string;
}

export interface PollerOptions {
  databaseUrl: string;
  publication: string;
  slotName?: string;
  pollIntervalMs: number;
  maxChanges: number;
  maxRecordBytes: number;
  /** Called with every batch, inside the poller's lock; returns how many changes reached someone. */
  onBatch(changes: WalChange[]): Promise<number>;
  onError(error: Error): void;
}

const TYPES: Record<string, ChangeType> = { I: 'INSERT', U: 'UPDATE', D: 'DELETE' };
const IDLE_MULTIPLIER = 5;
const SETTLE_CAP_MS = 700; // async commits reach disk within 3 × wal_writer_delay (200 ms)

interface Row {
  lsn: string;
  action: string;
  schema: string;
  table: string;
  entity: number | null;
  commit_timestamp: string | null;
  columns_json: string | null;
  record_json: string | null;
  old_record_json: string | null;
  errors: string[] | null;
  filter_values: WalChange['values'] | null;
}

export class Poller {
  readonly slotName: string;
  private readonly client: pg.Client;
  private chain: Promise<unknown> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(private readonly options: PollerOptions) {
    this.slotName = options.slotName ?? `supabase_realtime_replication_slot_${randomBytes(4).toString('hex')}`;
    this.client = new pg.Client({ connectionString: options.databaseUrl, application_name: 'realtime_rls' });
    this.client.on('error', (err) => this.fail(err));
  }

  async start(): Promise<void> {
    await this.client.connect();
    await this.client.query(SETUP_SQL);
    // Replications.prepare_replication: a *temporary* slot, gone with this session.
    await this.client.query(`SELECT 1 FROM pg_create_logical_replication_slot($1, 'wal2json', true)`, [this.slotName]);
    this.schedule(0);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.chain.catch(() => {});
    await this.client.end().catch(() => {});
  }

  /** Runs fn alone: no poll overlaps it. */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn);
    this.chain = run.catch(() => {});
    return run;
  }

  /**
   * Waits until everything committed before now can be decoded. The test cluster runs with
   * synchronous_commit=off, so a commit reaches the WAL flush position (the end of what
   * pg_logical_slot_get_changes decodes) up to 3 × wal_writer_delay later.
   */
  async settle(): Promise<void> {
    const { rows } = await this.client.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn');
    const deadline = Date.now() + SETTLE_CAP_MS;
    for (;;) {
      const r = await this.client.query<{ ok: boolean }>('SELECT pg_current_wal_flush_lsn() >= $1::pg_lsn AS ok', [rows[0]?.lsn]);
      if (r.rows[0]?.ok || Date.now() > deadline) return;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  /** One poll + dispatch; must run inside exclusive(). */
  async pollOnce(): Promise<{ raw: number; delivered: number }> {
    if (this.stopped) return { raw: 0, delivered: 0 };
    const { publication, maxChanges, maxRecordBytes } = this.options;
    const { rows } = await this.client.query<Row>(POLL_SQL, [publication, this.slotName, maxChanges, maxRecordBytes]);
    const changes: WalChange[] = [];
    for (const row of rows) {
      const type = TYPES[row.action];
      if (!type || row.entity === null) continue; // table dropped since the change
      changes.push({
        lsn: row.lsn,
        type,
        schema: row.schema,
        table: row.table,
        entity: Number(row.entity),
        // Replications.list_changes: COALESCE(columns, '[]'), COALESCE(record, '{}') …
        commitTimestamp: row.commit_timestamp,
        columnsJson: row.columns_json ?? '[]',
        recordJson: row.record_json ?? '{}',
        oldRecordJson: row.old_record_json ?? '{}',
        errors: row.errors && row.errors.length > 0 ? row.errors : null,
        values: row.filter_values ?? { new: {}, old: {} },
      });
    }
    const delivered = changes.length > 0 ? await this.options.onBatch(changes) : 0;
    return { raw: rows.length, delivered };
  }

  /**
   * The change as subscribers of one role receive it, or null when row level
   * security hides it from them (realtime.apply_rls, per claims role): a
   * role that may not select every primary-key column gets "Error 401:
   * Unauthorized" and no record; columns it may not select are left out of
   * `columns`, `record` and `old_record`; inserts and updates of a table with
   * RLS enabled reach it only when its policies let it see the row (the
   * walrus_rls_stmt, run as the role with its claims). Deletes pass RLS.
   */
  async shape(change: WalChange, role: string): Promise<WalChange | null> {
    if (change.errors?.some((e) => e.startsWith('Error 400'))) return change;
    const access = await this.access(change.entity, role);
    if (change.type !== 'DELETE' && !access.keyReadable) {
      return { ...change, commitTimestamp: null, columnsJson: '[]', recordJson: '{}', oldRecordJson: '{}', errors: ['Error 401: Unauthorized'] };
    }
    if (change.type !== 'DELETE' && access.rls && !access.bypass && !(await this.visibleTo(change, role))) return null;
    if (access.hidden.length === 0) return change;
    const { rows } = await this.client.query<{ columns: string; record: string; old: string }>(
      `SELECT (SELECT coalesce(jsonb_agg(c ORDER BY n), '[]') FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS e(c, n) WHERE c->>'name' <> ALL ($4))::text AS columns,
              ($2::jsonb - $4::text[])::text AS record, ($3::jsonb - $4::text[])::text AS old`,
      [change.columnsJson, change.recordJson, change.oldRecordJson, access.hidden],
    );
    return { ...change, columnsJson: rows[0]!.columns, recordJson: rows[0]!.record, oldRecordJson: rows[0]!.old };
  }

  /** What a role may see of a table: privileges can change at any time, so they are read at each use. */
  private async access(entity: number, role: string): Promise<{ hidden: string[]; keyReadable: boolean; rls: boolean; bypass: boolean }> {
    const { rows } = await this.client.query<{ hidden: string[]; key_ok: boolean | null; rls: boolean; bypass: boolean }>(
      `SELECT coalesce(array_agg(a.attname::text) FILTER (WHERE NOT has_column_privilege($2, $1::oid, a.attnum, 'SELECT')), '{}') AS hidden,
              bool_and(has_column_privilege($2, $1::oid, a.attnum, 'SELECT')) FILTER (WHERE a.attnum = ANY (pk.conkey)) AS key_ok,
              (SELECT relrowsecurity FROM pg_class WHERE oid = $1::oid) AS rls,
              coalesce((SELECT rolbypassrls OR rolsuper FROM pg_roles WHERE rolname = $2), false) AS bypass
         FROM pg_attribute a LEFT JOIN pg_constraint pk ON pk.conrelid = a.attrelid AND pk.contype = 'p'
        WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped`,
      [entity, role],
    );
    const row = rows[0]!;
    return { hidden: row.hidden, keyReadable: row.key_ok !== false, rls: row.rls, bypass: row.bypass };
  }

  /** walrus_rls_stmt: does the row (by primary key) exist for this role under its policies? An error counts as no. */
  private async visibleTo(change: WalChange, role: string): Promise<boolean> {
    const { rows: keys } = await this.client.query<{ name: string }>(
      `SELECT a.attname AS name FROM pg_constraint pk JOIN pg_attribute a ON a.attrelid = pk.conrelid AND a.attnum = ANY (pk.conkey)
        WHERE pk.conrelid = $1::oid AND pk.contype = 'p'`,
      [change.entity],
    );
    const values = keys.map((k) => change.values.new[k.name]);
    if (values.some((v) => v === undefined)) return false;
    const quote = (name: string) => `"${name.replace(/"/g, '""')}"`;
    const where = keys.map((k, i) => `${quote(k.name)} = $${i + 1}::${values[i]![0]}`).join(' AND ');
    try {
      await this.client.query('BEGIN');
      await this.client.query(`SELECT set_config('role', $1, true), set_config('request.jwt.claims', $2, true)`, [role, JSON.stringify({ role })]);
      const { rows } = await this.client.query<{ ok: boolean }>(
        `SELECT EXISTS (SELECT 1 FROM ${quote(change.schema)}.${quote(change.table)} WHERE ${where}) AS ok`,
        values.map((v) => v![1]),
      );
      return rows[0]!.ok;
    } catch {
      return false;
    } finally {
      await this.client.query('ROLLBACK').catch(() => {});
    }
  }

  /** Evaluates filter comparisons in the database, with the column's type. */
  async check(checks: FilterCheck[]): Promise<boolean[]> {
    if (checks.length === 0) return [];
    const { rows } = await this.client.query<{ ok: boolean }>(
      `SELECT pg_temp.rt_check(f.op, f.typ::regtype, f.lhs, f.rhs) AS ok
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY AS f(op, typ, lhs, rhs, n)
        ORDER BY f.n`,
      [checks.map((c) => c.op), checks.map((c) => c.type), checks.map((c) => c.lhs), checks.map((c) => c.rhs)],
    );
    return rows.map((r) => r.ok);
  }

  /**
   * The tables (oids) a binding subscribes to, or the error text Realtime pushes in its
   * system message when Subscriptions.create inserts nothing or raises.
   */
  async resolve(params: SubscriptionParams): Promise<{ entities: number[] } | { error: string }> {
    const prefix = 'Unable to subscribe to changes with given parameters.';
    try {
      const { rows } = await this.client.query<{ oid: number }>(SUBSCRIPTION_TABLES_SQL, [this.options.publication, params.schema, params.table]);
      if (rows.length === 0) {
        return { error: `${prefix} Please check Realtime is enabled for the given connect parameters: [${describeParams(params)}]` };
      }
      const entities = rows.map((r) => Number(r.oid));
      for (const entity of entities) for (const f of params.filters) await this.checkFilter(entity, f);
      return { entities };
    } catch (err) {
      return {
        error: `${prefix} An exception happened so please check your connect parameters: [${describeParams(params)}]. Exception: ${(err as Error).message}`,
      };
    }
  }

  private async checkFilter(entity: number, f: Filter): Promise<void> {
    await this.client.query('SELECT pg_temp.rt_check_filter($1::oid::regclass, $2, $3, $4)', [entity, f.column, f.op, f.value]);
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.exclusive(() => this.pollOnce()).then(
        ({ raw, delivered }) => {
          const interval = this.options.pollIntervalMs;
          this.schedule(delivered > 0 ? 0 : raw > 0 ? interval + 50 + Math.floor(Math.random() * 50) : interval * IDLE_MULTIPLIER);
        },
        (err: Error) => this.fail(err),
      );
    }, ms);
  }

  private fail(err: Error): void {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.timer);
    this.options.onError(err);
  }
}
