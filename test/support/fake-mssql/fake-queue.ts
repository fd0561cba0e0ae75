import { collate, type FakeColumn, type Row } from './fake-cdc.js';
import type { FakeSqlServer, Values } from './fake-server.js';
import { pageFilter } from './where.js';

/** One SyncQueue row, with the values SQL Server would hold. */
export interface QueueRecord {
  QueueID: number;
  TableName: string;
  RecordID: string | null;
  Operation: string;
  JsonData: string | null;
  Status: string;
  Attempts: number;
  LastError: string | null;
  CreatedAt: Date;
  LastAttempt: Date | null;
  NextAttemptAt: Date | null;
  LockedBy: string | null;
  LockedUntil: Date | null;
}

export interface QueueTableModel {
  schema: string;
  name: string;
  columns: FakeColumn[];
  key: string[];
  rows: Row[];
  trigger: boolean;
}

const NUMBER_TYPES = new Set(['int', 'smallint', 'tinyint', 'bigint', 'decimal', 'numeric', 'money', 'smallmoney', 'float', 'real']);

/** A value as FOR JSON PATH writes it (numbers unquoted with all their digits, binary as base64, bit as true/false). */
export function forJsonValue(type: string, value: unknown): string {
  if (value === null || value === undefined) return 'null';
  if (type === 'bit') return value === true || value === 1 || value === '1' ? 'true' : 'false';
  if (NUMBER_TYPES.has(type)) return String(value);
  if (type === 'varbinary' || type === 'binary') return JSON.stringify(Buffer.from(value as Uint8Array).toString('base64'));
  if (value instanceof Date) return JSON.stringify(value.toISOString().replace('Z', ''));
  if (type === 'uniqueidentifier') return JSON.stringify(String(value).toUpperCase());
  return JSON.stringify(String(value));
}

/** How the driver hands out a column after the snapshot's CONVERTs (see columnList in cdc-queries.ts). */
function driverValue(type: string, value: unknown): unknown {
  if (value === null || value === undefined) return null;
  if (['decimal', 'numeric', 'money', 'smallmoney', 'datetime2', 'datetimeoffset', 'time', 'bigint'].includes(type)) return String(value);
  if (type === 'uniqueidentifier') return String(value).toUpperCase();
  if (type === 'datetime' || type === 'date') return value instanceof Date ? value : new Date(String(value));
  if (type === 'varbinary' || type === 'binary') return Buffer.from(value as Uint8Array);
  if (type === 'bit') return value === true || value === 1;
  return value;
}

const same = (a: string, b: string) => a.toLowerCase() === b.toLowerCase();

/** The `<i>1</i><i>2</i>` id lists of queue-queries.ts. */
const idsOf = (xml: string) => new Set([...xml.matchAll(/<i>(\d+)<\/i>/g)].map((m) => Number(m[1])));

/**
 * A model of the SyncQueue and the tables whose triggers fill it, answering
 * the `queue.*` statements (and the snapshot reader's) as SQL Server would:
 * claims in QueueID order that skip rows another session has locked
 * (READPAST) or leased, leases that expire on the fake's clock, NextAttemptAt,
 * and the per-record order guard. Statements run one at a time, so a claim
 * is atomic here as the claim transaction is on a server.
 */
export class FakeQueue {
  readonly rows: QueueRecord[] = [];
  readonly tables: QueueTableModel[] = [];
  /** Rows another session holds locked right now (an open claim transaction): READPAST skips them. */
  readonly locked = new Set<number>();
  exists = true;
  leaseColumns = true;
  /** An older queue may declare TableName varchar. */
  tableNameType: 'nvarchar' | 'varchar' = 'nvarchar';
  /**
   * The CreatedAt default's definition as sys.default_constraints shows it:
   * the older scripts' queue used GETDATE(), server local time, here
   * `utcOffsetMinutes` ahead of UTC.
   */
  createdAtDefault = '(sysutcdatetime())';
  utcOffsetMinutes = 0;
  private nextId = 1;
  private offsetMs = 0;

  constructor(readonly server: FakeSqlServer) {
    const h = server.handlers;
    h.set('queue.check', (_, q) => [
      {
        object_id: this.exists ? 901 : null,
        locked_by: this.exists && this.leaseColumns ? 400 : null,
        locked_until: this.exists && this.leaseColumns ? 8 : null,
        next_attempt_at: this.exists && this.leaseColumns ? 8 : null,
        ...(/table_name_type/.test(q.sql) ? { table_name_type: this.tableNameType, created_at_default: this.createdAtDefault } : {}),
      },
    ]);
    h.set('queue.table-info', (v) => {
      const table = this.tableByQuoted(v.table as string);
      if (!table) return [];
      const trigger = table.trigger && v.trigger === `trg_sync_${table.name}` ? 1 : 0;
      return table.columns.map((c) => ({ column_name: c.name, column_type: c.type, key_ordinal: table.key.includes(c.name) ? table.key.indexOf(c.name) + 1 : null, has_trigger: trigger }));
    });
    h.set('queue.claim', (v, q) => this.claim(v, q.sql));
    h.set('queue.release', (v) => {
      for (const r of this.rows.filter((r) => r.LockedBy === v.owner && r.Status === 'Pending')) {
        r.LockedBy = null;
        r.LockedUntil = null;
        if (Number(v.delay_ms) > 0) r.NextAttemptAt = new Date(this.now().getTime() + Number(v.delay_ms));
      }
      return [];
    });
    h.set('queue.renew', (v) => {
      const ids = idsOf(v.ids as string);
      for (const r of this.rows.filter((r) => ids.has(r.QueueID) && r.LockedBy === v.owner && r.Status === 'Pending')) {
        r.LockedUntil = new Date(this.now().getTime() + Number(v.lease) * 1000);
      }
      return [];
    });
    h.set('queue.mark-synced', (v) => this.mark(v.ids as string, { Status: 'Synced', LastError: null }));
    h.set('queue.mark-failed', (v) => this.mark(v.ids as string, { Status: 'Failed', LastError: v.error as string }));
    h.set('queue.pending', (v) => [{ pending: this.rows.filter((r) => r.Status === 'Pending' && this.named(v, r)).length }]);
    h.set('queue.purge', (v, q) => {
      // CreatedAt compared with the clock the statement names: SYSDATETIME() is local, SYSUTCDATETIME() UTC.
      const clock = /SYSDATETIME\(\)/.test(q.sql) ? this.localNow() : this.now();
      const cutoff = clock.getTime() - Number(v.hours) * 3_600_000;
      const doomed = this.rows.filter((r) => r.Status === 'Synced' && r.CreatedAt.getTime() < cutoff).slice(0, Number(v.limit));
      for (const r of doomed) this.rows.splice(this.rows.indexOf(r), 1);
      return [{ deleted: doomed.length }];
    });
    h.set('snapshot.columns', (v) =>
      (this.tableByQuoted(v.table as string)?.columns ?? []).map((c) => ({
        column_name: c.name,
        column_type: c.type,
        max_length: c.type.startsWith('n') && c.type.includes('char') ? 200 : 100,
        precision: c.type === 'decimal' ? 38 : 0,
        scale: c.type === 'decimal' ? 2 : 0,
      })),
    );
    h.set('snapshot.read-page', (v, q) => this.readPage(q.meta!.table!, v, q.sql, pageFilter(q.meta, q.sql)));
    // sys.partitions.rows is bigint: the driver hands it over as a string.
    h.set('snapshot.count-rows', (v) => [{ total: String(this.tableByQuoted(v.table as string)?.rows.length ?? 0) }]);
    server.snapshots.push(() => {
      const saved = structuredClone(this.rows);
      const next = this.nextId;
      const tables = this.tables.map((t) => structuredClone(t.rows));
      return () => {
        this.rows.splice(0, this.rows.length, ...saved);
        this.nextId = next;
        for (const [i, rows] of tables.entries()) this.tables[i]!.rows.splice(0, this.tables[i]!.rows.length, ...rows);
      };
    });
  }

  now(): Date {
    return new Date(Date.now() + this.offsetMs);
  }

  /** The server's local wall clock, as the driver reads a datetime: as if it were UTC. */
  localNow(): Date {
    return new Date(this.now().getTime() + this.utcOffsetMinutes * 60_000);
  }

  private localTimeDefault(): boolean {
    return /getdate\(|sysdatetime\(|current_timestamp/i.test(this.createdAtDefault);
  }

  /** Moves the server's clock (lease expiry, next attempts, retention) without waiting. */
  advance(ms: number): void {
    this.offsetMs += ms;
  }

  createTable(schema: string, name: string, columns: FakeColumn[], key: string[], options: { trigger?: boolean } = {}): void {
    this.tables.push({ schema, name, columns, key, rows: [], trigger: options.trigger ?? true });
  }

  rowsOf(table: string): Row[] {
    return this.table(table).rows;
  }

  /** An INSERT on the table; its trigger queues the row as cdc-sync's trigger would (TableName `schema.name`). */
  insert(table: string, row: Row): QueueRecord | undefined {
    const t = this.table(table);
    const full = Object.fromEntries(t.columns.map((c) => [c.name, row[c.name] ?? null]));
    t.rows.push(full);
    return this.fire(t, 'INSERT', full);
  }

  update(table: string, row: Row): QueueRecord | undefined {
    const t = this.table(table);
    const index = t.rows.findIndex((r) => t.key.every((k) => collate(r[k], row[k]) === 0));
    t.rows[index] = { ...t.rows[index]!, ...row };
    return this.fire(t, 'UPDATE', t.rows[index]!);
  }

  delete(table: string, key: Row): QueueRecord | undefined {
    const t = this.table(table);
    const index = t.rows.findIndex((r) => t.key.every((k) => collate(r[k], key[k]) === 0));
    const [old] = t.rows.splice(index, 1);
    return this.fire(t, 'DELETE', old!);
  }

  /** An UPDATE of the key: the trigger queues the old key as DELETE and the new one as INSERT (queue-setup.ts). */
  move(table: string, from: Row, to: Row): QueueRecord[] {
    const t = this.table(table);
    const index = t.rows.findIndex((r) => t.key.every((k) => collate(r[k], from[k]) === 0));
    const old = t.rows[index]!;
    t.rows[index] = { ...old, ...to };
    return [this.fire(t, 'DELETE', old), this.fire(t, 'INSERT', t.rows[index]!)].filter((r): r is QueueRecord => r !== undefined);
  }

  /** RecordID as the trigger writes it: the key's text, or a JSON array of FOR JSON values for a composite key. */
  recordId(table: string, row: Row): string {
    const t = this.table(table);
    const type = (c: string) => t.columns.find((x) => x.name === c)!.type;
    return t.key.length === 1 ? String(row[t.key[0]!]) : `[${t.key.map((k) => forJsonValue(type(k), row[k])).join(',')}]`;
  }

  /** FOR JSON PATH, WITHOUT_ARRAY_WRAPPER, INCLUDE_NULL_VALUES of the given columns of a row. */
  forJson(table: string, row: Row, columns = this.table(table).columns.map((c) => c.name)): string {
    const t = this.table(table);
    return `{${columns.map((c) => `${JSON.stringify(c)}:${forJsonValue(t.columns.find((x) => x.name === c)!.type, row[c])}`).join(',')}}`;
  }

  /** A row written some other way (older triggers, by hand, a malformed one). */
  enqueue(row: Partial<QueueRecord> & Pick<QueueRecord, 'TableName' | 'Operation'>): QueueRecord {
    const record: QueueRecord = {
      QueueID: this.nextId++,
      RecordID: null,
      JsonData: null,
      Status: 'Pending',
      Attempts: 0,
      LastError: null,
      CreatedAt: this.localTimeDefault() ? this.localNow() : this.now(),
      LastAttempt: null,
      NextAttemptAt: null,
      LockedBy: null,
      LockedUntil: null,
      ...row,
    };
    this.rows.push(record);
    return record;
  }

  row(id: number): QueueRecord {
    return this.rows.find((r) => r.QueueID === id)!;
  }

  statuses(): Record<number, string> {
    return Object.fromEntries(this.rows.map((r) => [r.QueueID, r.Status]));
  }

  private fire(t: QueueTableModel, op: string, row: Row): QueueRecord | undefined {
    if (!t.trigger) return undefined;
    const name = `${t.schema}.${t.name}`;
    return this.enqueue({ TableName: name, RecordID: this.recordId(name, row), Operation: op, JsonData: this.forJson(name, row) });
  }

  private claim(v: Values, sql: string): unknown[] {
    const now = this.now();
    const candidates = this.rows
      .filter((r) => r.Status === 'Pending' && this.named(v, r) && !this.locked.has(r.QueueID))
      .filter((r) => (r.NextAttemptAt === null || r.NextAttemptAt <= now) && (r.LockedUntil === null || r.LockedUntil < now))
      .sort((a, b) => a.QueueID - b.QueueID)
      .slice(0, Number(v.limit));
    const claimSet = new Set(candidates.map((r) => r.QueueID));
    const behind = (q: QueueRecord) =>
      this.rows.some((e) => same(e.TableName, q.TableName) && e.RecordID === q.RecordID && e.QueueID < q.QueueID && e.Status === 'Pending' && !claimSet.has(e.QueueID));
    const taken = candidates.filter((q) => !behind(q));
    for (const r of taken) {
      r.LockedBy = v.owner as string;
      r.LockedUntil = new Date(now.getTime() + Number(v.lease) * 1000);
      r.Attempts += 1;
      r.LastAttempt = now;
    }
    return taken.map((r) => ({
      QueueID: r.QueueID,
      TableName: r.TableName,
      RecordID: r.RecordID,
      Operation: r.Operation,
      JsonData: r.JsonData,
      Attempts: r.Attempts,
      LastError: r.LastError,
      // As the statement reads it: converted to UTC when it says so, else the stored (maybe local) value.
      CreatedAt: /DATEADD\(minute, -DATEPART\(TZOFFSET, SYSDATETIMEOFFSET\(\)\), CreatedAt\)/.test(sql)
        ? new Date(r.CreatedAt.getTime() - this.utcOffsetMinutes * 60_000)
        : r.CreatedAt,
    }));
  }

  private mark(ids: string, changes: Partial<QueueRecord>): unknown[] {
    const list = idsOf(ids);
    for (const r of this.rows.filter((r) => list.has(r.QueueID))) Object.assign(r, changes, { LockedBy: null, LockedUntil: null, NextAttemptAt: null });
    return [];
  }

  /** TableName IN (@t0, @t1, …), compared without case as the usual collations do. */
  private named(v: Values, r: QueueRecord): boolean {
    return Object.entries(v).some(([k, name]) => /^t\d+$/.test(k) && same(String(name), r.TableName));
  }

  table(name: string): QueueTableModel {
    const [schema, table] = name.includes('.') ? name.split('.') : ['dbo', name];
    const found = this.tables.find((t) => t.schema === schema && t.name === table);
    if (!found) throw new Error(`no fake table ${name}`);
    return found;
  }

  tableByQuoted(quoted: string): QueueTableModel | undefined {
    const [, schema, name] = /^\[(.*)\]\.\[(.*)\]$/.exec(quoted) ?? [];
    return this.tables.find((t) => t.schema === schema?.replace(/]]/g, ']') && t.name === name?.replace(/]]/g, ']'));
  }

  /**
   * The copy's `CASE WHEN EXISTS (… q.TableName IN (@n0, …) AND q.RecordID = <the trigger's RecordID of t>
   * AND q.Status = N'Pending') …` (pendingRecordSql): evaluated per row, as a correlated subquery is.
   */
  private pendingRecord(tableName: string, v: Values, row: Row): number {
    const id = this.recordId(tableName, row);
    const names = Object.entries(v).filter(([k]) => /^n\d+$/.test(k)).map(([, n]) => String(n));
    return this.rows.some((r) => r.Status === 'Pending' && r.RecordID === id && names.some((n) => same(n, r.TableName))) ? 1 : 0;
  }

  private readPage(tableName: string, v: Values, sql: string, holds: (row: Row) => boolean): unknown[] {
    const table = this.table(tableName);
    const after = v.after === null || v.after === undefined ? null : (JSON.parse(v.after as string) as unknown[]);
    const compare = (r: Row, k: unknown[]) => {
      for (const [i, c] of table.key.entries()) {
        const d = collate(r[c], k[i]);
        if (d !== 0) return d;
      }
      return 0;
    };
    return table.rows
      .filter((r) => (after === null || compare(r, after) > 0) && holds(r))
      .sort((a, b) => compare(a, table.key.map((c) => b[c])))
      .slice(0, Number(v.limit))
      .map((r) => ({
        ...Object.fromEntries(table.columns.map((c) => [c.name, driverValue(c.type, r[c.name])])),
        ...(/q\.Status = N'Pending'\) THEN 1 ELSE 0 END AS \[cdc_sync_changed\]/.test(sql) ? { cdc_sync_changed: this.pendingRecord(tableName, v, r) } : {}),
      }));
  }
}
