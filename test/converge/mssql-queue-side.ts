import type { FakeColumn, Row } from '../support/fake-mssql/fake-cdc.js';
import { FakeQueue, type QueueRecord } from '../support/fake-mssql/fake-queue.js';
import { FakeQueueSink } from '../support/fake-mssql/fake-queue-sink.js';
import { FakeSqlServer } from '../support/fake-mssql/fake-server.js';
import { FakeTarget, type TargetColumnSpec } from '../support/fake-mssql/fake-target.js';
import type { Edit } from './history.js';
import { SPAN, caseChanges, snapshotOf, stepApart, type RecordedChange, type Side, type Snapshot, type UserChange, type Write } from './sides.js';

type Table = 'parent' | 'child';

const COLUMNS: Record<Table, (FakeColumn & TargetColumnSpec)[]> = {
  parent: [
    { name: 'id', type: 'int' },
    { name: 'name', type: 'nvarchar', max: true, maxLength: -1 },
    { name: 'qty', type: 'bigint' },
    { name: 'at', type: 'datetime2', scale: 3 },
    { name: 'flag', type: 'bit' },
    { name: 'data', type: 'varbinary', max: true, maxLength: -1 },
    { name: 'doc', type: 'nvarchar', max: true, maxLength: -1 },
  ],
  child: [
    { name: 'id', type: 'int' },
    { name: 'parent_id', type: 'int' },
    { name: 'note', type: 'nvarchar', max: true, maxLength: -1 },
  ],
};

/**
 * For pairs under `conflict: newer-wins` with `updatedAt: updated_at`: the column as an application on SQL Server
 * keeps it, `SET updated_at = SYSUTCDATETIME()` in each of its writes (a trigger cannot change the row it fires for
 * without writing it again), declared datetime2(3). cdc-sync's writes carry the time they bring.
 */
const UPDATED_AT: FakeColumn & TargetColumnSpec = { name: 'updated_at', type: 'datetime2', scale: 3 };

/**
 * SQL Server with cdc-sync's SyncQueue triggers, both ways: the
 * application's transactions fill the queue through the triggers
 * (test/support/fake-mssql/fake-queue.ts), the `mssql-queue` source reads
 * it, and the `mssql` sink writes the same tables (FakeTarget) — its
 * sessions carry SESSION_CONTEXT, so the triggers skip its rows — and
 * resolves conflicts against the queue (FakeQueueSink). Transactions of the
 * CLI and of the application take turns (FakeSqlServer.exclusive).
 */
export class MssqlQueueSide implements Side {
  private readonly server = new FakeSqlServer();
  private readonly queue = new FakeQueue(this.server);
  private readonly target = new FakeTarget(this.server);
  private readonly sinkModel = new FakeQueueSink(this.server, this.queue);
  /** The application's row changes, as the trigger queued them. */
  private readonly changes: RecordedChange[] = [];
  /** Row writes of every writer: [table, id]. */
  private readonly written: [Table, number][] = [];
  private url = '';
  private seq = 0;

  private constructor(
    readonly label: string,
    /** The application keeps updated_at (UPDATED_AT). */
    private readonly updatedAt: boolean,
  ) {}

  static async create(label: string, options: { updatedAt?: boolean } = {}): Promise<MssqlQueueSide> {
    const side = new MssqlQueueSide(label, options.updatedAt ?? false);
    for (const table of ['parent', 'child'] as const) {
      const columns = side.updatedAt ? [...COLUMNS[table], UPDATED_AT] : COLUMNS[table];
      side.queue.createTable('dbo', table, columns, ['id'], { trigger: false });
      const references = table === 'child' ? [{ columns: ['parent_id'], table: 'dbo.parent', referenced: ['id'] }] : [];
      side.target.createTable(`dbo.${table}`, columns, ['id'], [], { rows: side.queue.rowsOf(`dbo.${table}`), references, typed: true });
    }
    side.target.onWrite = (table, row) => side.written.push([table.endsWith('child') ? 'child' : 'parent', Number(row.id)]);
    // A write of a transaction that rolls back (a killed cdc-sync's) is undone with it, as a trigger's write log would be.
    side.server.snapshots.push(() => {
      const count = side.written.length;
      return () => void side.written.splice(count);
    });
    side.url = await side.server.listen();
    return side;
  }

  source(): string {
    return `{ type: mssql-queue, url: "${this.url}", pollIntervalMs: 0, idleIntervalMs: 50 }`;
  }

  sink(): string {
    return `{ type: mssql, url: "${this.url}" }`;
  }

  /** What `init-sql` asks for: the SyncQueue table and a trigger per table. */
  async setUp(script: string): Promise<void> {
    if (!/CREATE TABLE \[dbo\]\.\[SyncQueue\]/.test(script)) throw new Error(`init-sql did not create the SyncQueue:\n${script}`);
    for (const table of ['parent', 'child']) {
      if (!script.includes(`CREATE OR ALTER TRIGGER [dbo].[trg_sync_${table}] ON [dbo].[${table}]`)) throw new Error(`init-sql did not create the trigger of dbo.${table}:\n${script}`);
      this.queue.table(`dbo.${table}`).trigger = true;
    }
  }

  async apply(edits: Edit[], base: number): Promise<number> {
    const touched = await this.server.exclusive(() => this.applyNow(edits, base));
    if (this.updatedAt) await stepApart();
    return touched;
  }

  /** The row as the application writes it: with updated_at set to the server's UTC clock, as datetime2(3) keeps it. */
  private touch(row: Row): Row {
    return this.updatedAt ? { ...row, updated_at: this.queue.now().toISOString().slice(0, 23) } : row;
  }

  private applyNow(edits: Edit[], base: number): number {
    const rows = (table: Table) => new Map(this.queue.rowsOf(`dbo.${table}`).map((r) => [Number(r.id), r]));
    let touched = 0;
    const record = (table: Table, before: number | null, after: number | null, queued: (QueueRecord | undefined)[]) => {
      const last = queued[queued.length - 1]!;
      const image = after === null ? null : rows(table).get(after)!;
      this.changes.push({ table, before, after, image: image && { ...image }, time: last.CreatedAt.getTime(), seq: (this.seq += 1) });
      // One row write, as a row trigger counts it (a key change is one UPDATE).
      this.written.push([table, (after ?? before)!]);
      touched += 1;
    };
    const upsert = (table: Table, row: Row) => {
      const id = Number(row.id);
      const exists = rows(table).has(id);
      const written = this.touch(row);
      record(table, exists ? id : null, id, [exists ? this.queue.update(`dbo.${table}`, written) : this.queue.insert(`dbo.${table}`, written)]);
    };
    const remove = (table: Table, id: number) => {
      if (rows(table).has(id)) record(table, id, null, [this.queue.delete(`dbo.${table}`, { id })]);
    };
    const move = (table: Table, from: number, to: number) => {
      const current = rows(table);
      if (from !== to && current.has(from) && !current.has(to)) record(table, from, to, this.queue.move(`dbo.${table}`, { id: from }, this.touch({ id: to })));
    };
    const children = () => [...rows('child').values()];
    for (const e of edits) {
      switch (e.kind) {
        case 'upsert-parent': {
          const v = e.values;
          upsert('parent', { id: base + e.id, name: v.name, qty: v.qty === null ? null : String(v.qty), at: v.at === null ? null : new Date(v.at).toISOString().slice(0, 23), flag: v.flag, data: v.data === null ? null : Buffer.from(v.data), doc: v.doc });
          break;
        }
        case 'update-parent':
          if (rows('parent').has(base + e.id)) upsert('parent', { id: base + e.id, name: e.name, qty: e.qty === null ? null : String(e.qty) });
          break;
        case 'delete-parent':
          if (!children().some((c) => Number(c.parent_id) === base + e.id)) remove('parent', base + e.id);
          break;
        case 'move-parent':
          if (!children().some((c) => Number(c.parent_id) === base + e.from)) move('parent', base + e.from, base + e.to);
          break;
        case 'family':
          // SQL Server checks a foreign key per statement: the parent goes first (the children-first order is for deferred checks).
          upsert('parent', rows('parent').has(base + e.parent) ? { id: base + e.parent, name: e.name } : { id: base + e.parent, name: e.name, qty: null, at: null, flag: null, data: null, doc: null });
          for (const c of e.children) upsert('child', { id: base + c, parent_id: base + e.parent, note: 'born' });
          break;
        case 'update-child':
          if (rows('child').has(base + e.id) && rows('parent').has(base + e.parent)) upsert('child', { id: base + e.id, note: e.note, parent_id: base + e.parent });
          break;
        case 'delete-child':
          remove('child', base + e.id);
          break;
        case 'move-child':
          move('child', base + e.from, base + e.to);
          break;
      }
    }
    return touched;
  }

  cdcSyncKilled(): void {
    this.server.dropConnections();
  }

  async snapshot(base: number): Promise<Snapshot> {
    const inCase = (r: Row) => Number(r.id) >= base && Number(r.id) < base + SPAN;
    return this.server.exclusive(() => snapshotOf(this.queue.rowsOf('dbo.parent').filter(inCase), this.queue.rowsOf('dbo.child').filter(inCase), base));
  }

  async userChanges(base: number): Promise<UserChange[]> {
    return caseChanges(this.changes, base);
  }

  async writes(base: number): Promise<Write[]> {
    return this.inCase(this.written, ([, id]) => id, base).map(([table, id]) => ({ row: `${table} ${id - base}` }));
  }

  async deadLetters(): Promise<number> {
    return this.target.deadLetters.length + this.queue.rows.filter((r) => r.Status === 'Failed').length;
  }

  async conflicts(): Promise<number> {
    return this.target.conflictLog.length;
  }

  async close(): Promise<void> {
    if (this.sinkModel.unlockedReads.length > 0) throw new Error(`the sink read the queue without locking the keys first: ${this.sinkModel.unlockedReads.join(', ')}`);
    await this.server.close();
  }

  private inCase<T>(list: T[], id: (item: T) => number | null, base: number): T[] {
    return list.filter((item) => {
      const n = id(item) ?? -1;
      return n >= base && n < base + SPAN;
    });
  }
}
