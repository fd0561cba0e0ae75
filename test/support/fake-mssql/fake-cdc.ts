import type { FakeSqlServer, Values } from './fake-server.js';
import { SqlServerError } from './fake-server.js';

export type Row = Record<string, unknown>;

export interface FakeColumn {
  name: string;
  /** SQL Server type name as cdc.captured_columns.column_type has it. */
  type: string;
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

/** How the driver hands out a value of a column type after cdc-sync's CONVERTs (see cdc-queries.ts). */
function driverValue(type: string, value: unknown): unknown {
  if (value === null || value === undefined) return null;
  switch (type) {
    case 'decimal':
    case 'numeric':
    case 'money':
    case 'smallmoney':
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
  private nextLsn = 0x2a00000100n;
  private nextObjectId = 1000;
  /** Highest LSN the capture job has published; commits beyond it are not visible yet. */
  publishedLsn = 0n;
  autoPublish = true;
  readonly tables: FakeTable[] = [];
  readonly instances: FakeInstance[] = [];
  readonly commitTimes = new Map<bigint, Date>();

  constructor(readonly server: FakeSqlServer) {
    const h = server.handlers;
    h.set('cdc.database-state', () => [
      { cdc_enabled: this.cdcEnabled, capture_jobs: this.captureJobs, retention_minutes: this.captureJobs ? this.retentionMinutes : null },
    ]);
    h.set('cdc.table-exists', (v) => {
      const t = this.findTable(v.schema as string, v.table as string);
      return t ? [{ object_id: t.objectId, primary_key: JSON.stringify(t.key.map((name) => ({ name }))) }] : [];
    });
    h.set('cdc.capture-instances', (v) =>
      this.instances
        .filter((i) => i.table.schema === v.schema && i.table.name === v.table)
        .map((i) => ({ capture_instance: i.name, object_id: i.objectId, start_lsn: lsnBuffer(i.startLsn), create_date: i.createDate })),
    );
    h.set('cdc.captured-columns', (v) => {
      const instance = this.instances.find((i) => i.objectId === v.object_id)!;
      return instance.columns.map((c) => ({ column_name: c.name, column_type: c.type }));
    });
    h.set('cdc.max-lsn', () => [{ lsn: this.publishedLsn === 0n ? null : lsnBuffer(this.publishedLsn) }]);
    h.set('cdc.min-lsn', (v) => {
      const instance = this.instances.find((i) => i.name === v.instance);
      return [{ lsn: lsnBuffer(instance ? instance.startLsn : 0n) }];
    });
    h.set('cdc.commit-times', (v) => {
      const from = lsnValue(v.from_lsn);
      const to = lsnValue(v.to_lsn);
      return [...this.commitTimes.entries()]
        .filter(([lsn]) => lsn >= from && lsn <= to && lsn <= this.publishedLsn)
        .map(([lsn, time]) => ({ start_lsn: lsnBuffer(lsn), tran_end_time: time }));
    });
    h.set('cdc.pending-transactions', (v) => [
      { pending: [...this.commitTimes.keys()].filter((l) => l > lsnValue(v.after_lsn) && l <= this.publishedLsn).length },
    ]);
    h.set('cdc.read-changes', (v, q) => this.readChanges(q.meta!.instance!, v));
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
    h.set('snapshot.max-lsn', () => [{ lsn: this.publishedLsn === 0n ? null : lsnBuffer(this.publishedLsn) }]);
    h.set('snapshot.read-page', (v, q) => this.readPage(q.meta!.table!, v));
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

  /** One committed transaction; returns its LSN. Each change gets the next seqval. */
  commit(changes: ({ table: string; op: 'insert'; row: Row } | { table: string; op: 'update'; row: Row } | { table: string; op: 'delete'; key: Row } | { table: string; op: 'deferred-update'; row: Row })[], at = new Date()): bigint {
    const lsn = this.nextLsn;
    this.nextLsn += 0x100n;
    let seqval = lsn * 0x10000n;
    for (const change of changes) {
      const [schema, name] = change.table.split('.');
      const table = this.findTable(schema!, name!)!;
      seqval += 1n;
      const match = (r: Row, k: Row) => table.key.every((c) => collate(r[c], k[c]) === 0);
      const instances = this.instances.filter((i) => i.table === table && i.startLsn <= lsn);
      const record = (operation: 1 | 2 | 3 | 4, row: Row) => {
        for (const instance of instances) {
          const image = Object.fromEntries(instance.columns.map((c) => [c.name, row[c.name] ?? null]));
          instance.changes.push({ lsn, seqval, operation, row: image });
        }
      };
      if (change.op === 'insert') {
        table.rows.push({ ...change.row });
        record(2, change.row);
      } else if (change.op === 'delete') {
        const index = table.rows.findIndex((r) => match(r, change.key));
        const old = table.rows.splice(index, 1)[0]!;
        record(1, old);
      } else {
        const index = table.rows.findIndex((r) => match(r, change.row));
        const old = table.rows[index]!;
        const next = { ...old, ...change.row };
        table.rows[index] = next;
        // A deferred update (or one that changes a unique key) is logged as delete + insert with one seqval.
        if (change.op === 'deferred-update') {
          record(1, old);
          record(2, next);
        } else {
          record(3, old);
          record(4, next);
        }
      }
    }
    this.commitTimes.set(lsn, at);
    if (this.autoPublish) this.publishedLsn = lsn;
    return lsn;
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

  private readChanges(instanceName: string, v: Values): unknown[] {
    const instance = this.instances.find((i) => i.name === instanceName);
    if (!instance) throw new SqlServerError(`Invalid object name 'cdc.fn_cdc_get_all_changes_${instanceName}'.`, 208);
    const from = lsnValue(v.from_lsn);
    const to = lsnValue(v.to_lsn);
    // What SQL Server does for a range outside the instance's validity: the infamous error 313.
    if (from < instance.startLsn || to > this.publishedLsn) {
      throw new SqlServerError('An insufficient number of arguments were supplied for the procedure or function cdc.fn_cdc_get_all_changes_ ... .', 313);
    }
    const afterLsn = lsnValue(v.after_lsn);
    const afterSeq = lsnValue(v.after_seqval);
    return instance.changes
      .filter((c) => c.lsn >= from && c.lsn <= to && (c.lsn > afterLsn || (c.lsn === afterLsn && c.seqval > afterSeq)))
      .sort((a, b) => (a.lsn !== b.lsn ? (a.lsn < b.lsn ? -1 : 1) : a.seqval !== b.seqval ? (a.seqval < b.seqval ? -1 : 1) : a.operation - b.operation))
      .slice(0, Number(v.limit))
      .map((c) => ({
        start_lsn: lsnBuffer(c.lsn),
        seqval: lsnBuffer(c.seqval),
        operation: c.operation,
        ...Object.fromEntries(instance.columns.map((col) => [col.name, driverValue(col.type, c.row[col.name])])),
      }));
  }

  private readPage(tableName: string, v: Values): unknown[] {
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
      .filter((r) => after === null || compareKeys(r, after) > 0)
      .sort((a, b) => compareKeys(a, table.key.map((c) => b[c])))
      .slice(0, Number(v.limit))
      .map((r) => Object.fromEntries(table.columns.map((c) => [c.name, driverValue(c.type, r[c.name])])));
  }
}
