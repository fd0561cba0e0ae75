import type { FakeSqlServer, Values } from './fake-server.js';
import { SqlServerError } from './fake-server.js';
import { pageFilter } from './where.js';

export type Row = Record<string, unknown>;

export interface FakeColumn {
  name: string;
  /** SQL Server type name as cdc.captured_columns.column_type has it. */
  type: string;
  /** varchar(max), nvarchar(max), varbinary(max). */
  max?: boolean;
  /** A computed column: CDC records NULL for it, always. */
  computed?: boolean;
}

interface FakeTable {
  schema: string;
  name: string;
  objectId: number;
  columns: FakeColumn[];
  key: string[];
  rows: Row[];
}

interface ChangeRow {
  lsn: bigint;
  commandId: number;
  seqval: bigint;
  operation: 1 | 2 | 3 | 4;
  row: Row;
}

interface FakeInstance {
  name: string;
  objectId: number;
  table: FakeTable;
  columns: FakeColumn[];
  startLsn: bigint;
  changes: ChangeRow[];
  createDate: Date;
}

/** 10-byte big-endian binary, as SQL Server returns binary(10). */
export type FakeChange =
  | { table: string; op: 'insert'; row: Row }
  | { table: string; op: 'update'; row: Row; /** the row's key before, when the update changes it */ key?: Row }
  | { table: string; op: 'delete'; key: Row }
  | { table: string; op: 'deferred-update'; row: Row }
  | { table: string; op: 'key-update'; moves: { from: Row; set: Row }[] };

export function lsnBuffer(value: bigint): Buffer {
  const buffer = Buffer.alloc(10);
  let v = value;
  for (let i = 9; i >= 0; i -= 1) {
    buffer[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return buffer;
}

export function lsnValue(buffer: unknown): bigint {
  return BigInt(`0x${Buffer.from(buffer as Uint8Array).toString('hex')}`);
}

/**
 * How the driver hands out a value of a column type after the statement's
 * CONVERT (read from its text): money through CONVERT(varchar, m) keeps two
 * decimals (style 0), with style 2 four
 * (https://learn.microsoft.com/sql/t-sql/functions/cast-and-convert-transact-sql, "money and smallmoney styles").
 */
function driverValue(type: string, value: unknown, sql = '', name = ''): unknown {
  if (value === null || value === undefined) return null;
  switch (type) {
    case 'money':
    case 'smallmoney': {
      const style = new RegExp(`CONVERT\\(varchar\\(64\\), \\[${name}\\](, (\\d+))?\\)`).exec(sql)?.[2];
      return style === '2' ? Number(value).toFixed(4) : Number(value).toFixed(2);
    }
    case 'decimal':
    case 'numeric':
    case 'datetime2':
    case 'datetimeoffset':
    case 'time':
      return String(value); // CONVERT(varchar(64), …) in the statement
    case 'bigint':
      return String(value); // tedious reads bigint as text
    case 'uniqueidentifier':
      return String(value).toUpperCase();
    case 'datetime':
    case 'smalldatetime':
    case 'date':
      return value instanceof Date ? value : new Date(String(value));
    case 'varbinary':
    case 'binary':
      return Buffer.isBuffer(value) ? value : Buffer.from(String(value), 'hex');
    case 'bit':
      return Boolean(value);
    default:
      return value;
  }
}

/** SQL Server's default collations compare text without case: the keyset reader must leave ordering to the server. */
export function collate(a: unknown, b: unknown): number {
  if (typeof a === 'string' && typeof b === 'string') {
    const x = a.toLowerCase();
    const y = b.toLowerCase();
    return x < y ? -1 : x > y ? 1 : 0;
  }
  const x = typeof a === 'string' && /^-?\d+$/.test(a) ? BigInt(a) : (a as number);
  const y = typeof b === 'string' && /^-?\d+$/.test(b) ? BigInt(b) : (b as number);
  return x < y ? -1 : x > y ? 1 : 0;
}

/**
 * A model of one database with change data capture: tables, capture
 * instances with their change tables, cdc.lsn_time_mapping, the published
 * max LSN (what the capture job has harvested) and the cleanup job.
 */
export class FakeCdc {
  cdcEnabled = true;
  captureJobs = 1;
  retentionMinutes = 4320;
  compatibilityLevel = 160;
  productVersion = '16.0.1000.6';
  /** The login has no rights in msdb (or the database is Azure SQL Database): reading msdb.dbo.cdc_jobs fails with 229. */
  msdbDenied = false;
  /**
   * The server's offset from UTC in minutes: cdc.lsn_time_mapping keeps local
   * time (Debezium reads it so, DBZ-3479) and the driver reads datetime as UTC.
   */
  utcOffsetMinutes = 0;
  private nextLsn = 0x2a00000100n;
  private nextObjectId = 1000;
  /** Highest LSN the capture job has published; commits beyond it are not visible yet. */
  publishedLsn = 0n;
  autoPublish = true;
  readonly tables: FakeTable[] = [];
  readonly instances: FakeInstance[] = [];
  /** cdc.lsn_time_mapping: commit time (UTC) per start LSN; `idle` rows are the capture job's tran_id 0x00 entries. */
  readonly commitTimes = new Map<bigint, Date>();
  readonly idleEntries = new Set<bigint>();

  constructor(readonly server: FakeSqlServer) {
    const h = server.handlers;
    h.set('cdc.database-state', (_, q) => {
      if (this.msdbDenied && /msdb/.test(q.sql)) throw new SqlServerError("The SELECT permission was denied on the object 'cdc_jobs', database 'msdb', schema 'dbo'.", 229);
      return [{ cdc_enabled: this.cdcEnabled, compatibility_level: this.compatibilityLevel, product_version: this.productVersion }];
    });
    h.set('cdc.agent-jobs', () => {
      if (this.msdbDenied) throw new SqlServerError("The SELECT permission was denied on the object 'cdc_jobs', database 'msdb', schema 'dbo'.", 229);
      return [{ capture_jobs: this.captureJobs, retention_minutes: this.captureJobs ? this.retentionMinutes : null }];
    });
    h.set('cdc.table-exists', (v) => {
      const t = this.findTable(v.schema as string, v.table as string);
      return t ? [{ object_id: t.objectId, primary_key: JSON.stringify(t.key.map((name) => ({ name }))) }] : [];
    });
    h.set('cdc.capture-instances', (v) =>
      this.instances
        .filter((i) => i.table.schema === v.schema && i.table.name === v.table)
        .map((i) => ({ capture_instance: i.name, object_id: i.objectId, change_table: `${i.name}_CT`, start_lsn: lsnBuffer(i.startLsn), create_date: i.createDate })),
    );
    h.set('cdc.captured-columns', (v, q) => {
      const instance = this.instances.find((i) => i.objectId === v.object_id)!;
      const withoutComputed = /is_computed = 0/.test(q.sql);
      return instance.columns.filter((c) => !(withoutComputed && c.computed)).map((c) => ({ column_name: c.name, column_type: c.type }));
    });
    h.set('cdc.max-lsn', () => [{ lsn: this.publishedLsn === 0n ? null : lsnBuffer(this.publishedLsn) }]);
    h.set('cdc.min-lsn', (v) => {
      const instance = this.instances.find((i) => i.name === v.instance);
      return [{ lsn: lsnBuffer(instance ? instance.startLsn : 0n) }];
    });
    h.set('cdc.commit-times', (v, q) => {
      const from = lsnValue(v.from_lsn);
      const to = lsnValue(v.to_lsn);
      return [...this.commitTimes.entries()]
        .filter(([lsn]) => lsn >= from && lsn <= to && lsn <= this.publishedLsn)
        .map(([lsn, time]) => ({ start_lsn: lsnBuffer(lsn), tran_end_time: this.asRead(time, q.sql) }));
    });
    h.set('cdc.read-window', (v, q) => {
      const skipIdle = /tran_id <> 0x00/.test(q.sql);
      const after = lsnValue(v.after_lsn);
      const max = lsnValue(v.max_lsn);
      const window = [...this.commitTimes.keys()]
        .filter((l) => l > after && l <= max && !(skipIdle && this.idleEntries.has(l)))
        .sort((a, b) => (a < b ? -1 : 1))
        .slice(0, Number(v.transactions));
      return [{ lsn: window.length ? lsnBuffer(window.at(-1)!) : null }];
    });
    h.set('cdc.pending-transactions', (v, q) => {
      const after = lsnValue(v.after_lsn);
      const done = [...this.commitTimes.keys()].filter((l) => l <= after).sort((a, b) => (a < b ? -1 : 1)).at(-1);
      return [
        {
          pending: [...this.commitTimes.keys()].filter((l) => l > after && l <= this.publishedLsn && !this.idleEntries.has(l)).length,
          checkpoint_time: done === undefined ? null : this.asRead(this.commitTimes.get(done)!, q.sql),
        },
      ];
    });
    h.set('cdc.read-changes', (v, q) => (q.meta!.changeTable ? this.readChanges(q.meta!.changeTable, v, q.sql) : this.readFunction(q.meta!.instance!, v, q.sql)));
    h.set('snapshot.columns', (v) => {
      const [, schema, name] = /^\[(.*)\]\.\[(.*)\]$/.exec(v.table as string) ?? [];
      const table = this.findTable(schema!, name!);
      return (table?.columns ?? []).map((c) => ({
        column_name: c.name,
        column_type: c.type,
        max_length: c.type.startsWith('n') && c.type.includes('char') ? 200 : 100,
        precision: c.type === 'decimal' ? 38 : 0,
        scale: c.type === 'decimal' ? 10 : 0,
      }));
    });
    h.set('snapshot.read-page', (v, q) => this.readPage(q.meta!.table!, v, q));
    // sys.partitions.rows is bigint: the driver hands it over as a string.
    h.set('snapshot.count-rows', (v) => {
      const [, schema, name] = /^\[(.*)\]\.\[(.*)\]$/.exec(v.table as string) ?? [];
      return [{ total: String(this.findTable(schema!, name!)?.rows.length ?? 0) }];
    });
  }

  createTable(schema: string, name: string, columns: FakeColumn[], key: string[]): void {
    this.tables.push({ schema, name, objectId: this.nextObjectId++, columns, key, rows: [] });
  }

  /** sys.sp_cdc_enable_table: a new capture instance that starts at the next LSN. */
  enableTable(schema: string, name: string, instanceName = `${schema}_${name}`): void {
    const table = this.findTable(schema, name)!;
    this.instances.push({
      name: instanceName,
      objectId: this.nextObjectId++,
      table,
      columns: table.columns.map((c) => ({ ...c })),
      startLsn: this.nextLsn,
      changes: [],
      createDate: new Date(Date.now() + this.instances.length),
    });
  }

  /** ALTER TABLE … ADD and a second capture instance, as the docs recommend. */
  addColumn(schema: string, name: string, column: FakeColumn, secondInstance: string): void {
    const table = this.findTable(schema, name)!;
    table.columns.push(column);
    this.enableTable(schema, name, secondInstance);
  }

  dropInstance(name: string): void {
    this.instances.splice(this.instances.findIndex((i) => i.name === name), 1);
  }

  /**
   * One committed transaction; returns its LSN. Each element is one
   * statement (its own __$command_id); each row it changes gets the next
   * seqval. A `key-update` moves keys in one statement and is logged as
   * SQL Server may log it: every insert first, then every delete, each
   * with its own seqval ("__$seqval … Don't use for ordering. Instead, use
   * the __$command_id column",
   * https://learn.microsoft.com/sql/relational-databases/system-tables/cdc-capture-instance-ct-transact-sql).
   */
  commit(changes: FakeChange[], at = new Date()): bigint {
    const lsn = this.nextLsn;
    this.nextLsn += 0x100n;
    let seqval = lsn * 0x10000n;
    for (const [command, change] of changes.entries()) {
      const [schema, name] = change.table.split('.');
      const table = this.findTable(schema!, name!)!;
      const match = (r: Row, k: Row) => table.key.every((c) => collate(r[c], k[c]) === 0);
      const instances = this.instances.filter((i) => i.table === table && i.startLsn <= lsn);
      const record = (operation: 1 | 2 | 3 | 4, row: Row, changed?: Row) => {
        if (operation !== 4) seqval += 1n;
        for (const instance of instances) {
          const image = Object.fromEntries(
            instance.columns.map((c) => {
              // Computed columns are always NULL in a capture instance; (max) LOBs are NULL in an update's before-image
              // unless the update changed them (same page, "Large object data types").
              if (c.computed) return [c.name, null];
              if (operation === 3 && c.max && changed && !(c.name in changed)) return [c.name, null];
              return [c.name, row[c.name] ?? null];
            }),
          );
          instance.changes.push({ lsn, commandId: command + 1, seqval, operation, row: image });
        }
      };
      if (change.op === 'insert') {
        table.rows.push({ ...change.row });
        record(2, change.row);
      } else if (change.op === 'delete') {
        const index = table.rows.findIndex((r) => match(r, change.key));
        const old = table.rows.splice(index, 1)[0]!;
        record(1, old);
      } else if (change.op === 'key-update') {
        const moved = change.moves.map(({ from, set }) => {
          const index = table.rows.findIndex((r) => match(r, from));
          return { old: table.rows[index]!, next: { ...table.rows[index]!, ...set } };
        });
        table.rows = table.rows.filter((r) => !moved.some((m) => m.old === r));
        table.rows.push(...moved.map((m) => m.next));
        for (const m of moved) record(2, m.next);
        for (const m of moved) record(1, m.old);
      } else {
        const index = table.rows.findIndex((r) => match(r, change.op === 'update' && change.key ? change.key : change.row));
        const old = table.rows[index]!;
        const next = { ...old, ...change.row };
        table.rows[index] = next;
        // A deferred update (or one that changes a unique key) is logged as delete + insert with one seqval.
        if (change.op === 'deferred-update') {
          record(1, old);
          seqval -= 1n;
          record(2, next);
        } else {
          record(3, old, change.row);
          record(4, next);
        }
      }
    }
    this.commitTimes.set(lsn, at);
    if (this.autoPublish) this.publishedLsn = lsn;
    return lsn;
  }

  /** The capture job's entry in cdc.lsn_time_mapping while the database is idle (tran_id 0x00, no changes). */
  idle(at = new Date()): bigint {
    const lsn = this.nextLsn;
    this.nextLsn += 0x100n;
    this.commitTimes.set(lsn, at);
    this.idleEntries.add(lsn);
    if (this.autoPublish) this.publishedLsn = lsn;
    return lsn;
  }

  /** A datetime of cdc.lsn_time_mapping as the statement returns it: server local time unless the statement converts it. */
  private asRead(utc: Date, sql: string): Date {
    const converted = /DATEADD\(minute, -DATEPART\(TZOFFSET, SYSDATETIMEOFFSET\(\)\), tran_end_time\)/.test(sql);
    return converted ? utc : new Date(utc.getTime() + this.utcOffsetMinutes * 60_000);
  }

  /** The capture job catches up. */
  publish(): void {
    this.publishedLsn = this.nextLsn - 0x100n;
  }

  /**
   * The cleanup job (all instances) or sys.sp_cdc_cleanup_change_table (one):
   * changes below `lsn` are gone and the instances' minimum moves up.
   */
  cleanup(lsn: bigint, instanceName?: string): void {
    for (const instance of this.instances.filter((i) => !instanceName || i.name === instanceName)) {
      instance.changes = instance.changes.filter((c) => c.lsn >= lsn);
      if (instance.startLsn < lsn) instance.startLsn = lsn;
    }
  }

  rowsOf(table: string): Row[] {
    const [schema, name] = table.split('.');
    return this.findTable(schema!, name!)!.rows;
  }

  private findTable(schema: string, name: string): FakeTable | undefined {
    return this.tables.find((t) => t.schema === schema && t.name === name);
  }

  /**
   * SELECT … FROM cdc.<instance>_CT WHERE __$start_lsn > @after_lsn AND
   * __$start_lsn <= @to_lsn ORDER BY …, in the order the statement names
   * (__$command_id when it names it), with the metadata columns under the
   * names the statement gives them. Two result columns of one name come
   * back as an array, as the mssql driver returns them (node-mssql README,
   * "Handling Duplicate Column Names").
   */
  private readChanges(changeTable: string, v: Values, sql: string): unknown[] {
    const instance = this.instances.find((i) => `${i.name}_CT` === changeTable);
    if (!instance) throw new SqlServerError(`Invalid object name 'cdc.${changeTable}'.`, 208);
    const after = lsnValue(v.after_lsn);
    const to = lsnValue(v.to_lsn);
    return this.resultRows(instance, sql, instance.changes.filter((c) => c.lsn > after && c.lsn <= to));
  }

  /**
   * The same read through cdc.fn_cdc_get_all_changes_<instance>(@from_lsn,
   * @to_lsn, N'all update old'), as older versions of cdc-sync made it: 313
   * for a range outside the instance's validity, and no __$command_id in its
   * result (only the change table has it; fn_cdc_get_all_changes_ page,
   * "Table returned"). TOP and the (lsn, seqval) cursor as the statement says.
   */
  private readFunction(instanceName: string, v: Values, sql: string): unknown[] {
    const instance = this.instances.find((i) => i.name === instanceName);
    if (!instance) throw new SqlServerError(`Invalid object name 'cdc.fn_cdc_get_all_changes_${instanceName}'.`, 208);
    if (/__\$command_id/.test(sql)) throw new SqlServerError("Invalid column name '__$command_id'.", 207);
    const from = lsnValue(v.from_lsn);
    const to = lsnValue(v.to_lsn);
    if (from < instance.startLsn || to > this.publishedLsn || from > to) {
      throw new SqlServerError(`An insufficient number of arguments were supplied for the procedure or function cdc.fn_cdc_get_all_changes_${instanceName}.`, 313);
    }
    const afterLsn = lsnValue(v.after_lsn);
    const afterSeq = lsnValue(v.after_seqval);
    const inRange = instance.changes.filter((c) => c.lsn >= from && c.lsn <= to && (c.lsn > afterLsn || (c.lsn === afterLsn && c.seqval > afterSeq)));
    return this.resultRows(instance, sql, inRange).slice(0, Number(v.limit));
  }

  private resultRows(instance: FakeInstance, sql: string, changes: ChangeRow[]): Record<string, unknown>[] {
    const byCommand = /ORDER BY __\$start_lsn, __\$command_id/.test(sql);
    const select = /^SELECT (?:TOP \(@limit\) )?([^]*?)\n\s*FROM/.exec(sql)![1]!;
    const meta = [...select.matchAll(/__\$(start_lsn|command_id|seqval|operation)(?: AS (\w+))?/g)].map((m) => ({ field: m[1]!, name: m[2] ?? `__$${m[1]}` }));
    const cmp = (a: bigint, b: bigint) => (a < b ? -1 : a > b ? 1 : 0);
    return [...changes]
      .sort((a, b) => cmp(a.lsn, b.lsn) || (byCommand ? a.commandId - b.commandId : 0) || cmp(a.seqval, b.seqval) || a.operation - b.operation)
      .map((c) => {
        const out: Record<string, unknown> = {};
        const put = (name: string, value: unknown) => {
          if (name in out) out[name] = [...(Array.isArray(out[name]) ? (out[name] as unknown[]) : [out[name]]), value];
          else out[name] = value;
        };
        const values: Record<string, unknown> = { start_lsn: lsnBuffer(c.lsn), command_id: c.commandId, seqval: lsnBuffer(c.seqval), operation: c.operation };
        for (const m of meta) put(m.name, values[m.field]);
        for (const col of instance.columns) if (select.includes(`[${col.name}]`)) put(col.name, driverValue(col.type, c.row[col.name], sql, col.name));
        return out;
      });
  }

  private readPage(tableName: string, v: Values, q: { sql: string; meta?: Record<string, string> }): unknown[] {
    const holds = pageFilter(q.meta, q.sql);
    const [schema, name] = tableName.split('.');
    const table = this.findTable(schema!, name!)!;
    const after = v.after === null || v.after === undefined ? null : (JSON.parse(v.after as string) as unknown[]);
    const compareKeys = (r: Row, k: unknown[]) => {
      for (const [i, c] of table.key.entries()) {
        const d = collate(r[c], k[i]);
        if (d !== 0) return d;
      }
      return 0;
    };
    return table.rows
      .filter((r) => (after === null || compareKeys(r, after) > 0) && holds(r))
      .sort((a, b) => compareKeys(a, table.key.map((c) => b[c])))
      .slice(0, Number(v.limit))
      .map((r) => ({
        ...Object.fromEntries(table.columns.map((c) => [c.name, driverValue(c.type, r[c.name], q.sql, c.name)])),
        ...(/EXISTS \(SELECT 1 FROM cdc\.\[.*_CT\] AS c WHERE c\.__\$start_lsn > @copy_lsn/.test(q.sql) ? { cdc_sync_changed: this.changedSince(table, r, lsnValue(v.copy_lsn)) } : {}),
      }));
  }

  /**
   * changedSinceCopySql: a change of the row's key after @copy_lsn in any
   * change table of the table. Only what the capture job has written is
   * there: changes past the published LSN are still in the log only.
   */
  private changedSince(table: FakeTable, row: Row, lsn: bigint): number {
    const same = (c: ChangeRow) => table.key.every((k) => collate(c.row[k], row[k]) === 0);
    return this.instances.some((i) => i.table === table && i.changes.some((c) => c.lsn > lsn && c.lsn <= this.publishedLsn && same(c))) ? 1 : 0;
  }
}
