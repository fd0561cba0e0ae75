import { resolve } from 'node:path';
import { FakeCdc, type FakeChange, type Row } from '../support/fake-mssql/fake-cdc.js';
import { FakeSqlServer } from '../support/fake-mssql/fake-server.js';
import type { Edit } from './history.js';
import { SPAN, caseChanges, snapshotOf, type Side, type Snapshot, type UserChange, type Write } from './sides.js';

/** The module the CLI loads instead of the `mssql` driver: it sends each statement to this side's stand-in. */
export const MSSQL_DRIVER = resolve('dist/test/support/fake-mssql/driver.js');

/**
 * SQL Server with change data capture, as the stand-in models it
 * (test/support/fake-mssql): the application's transactions are committed
 * to its tables and logged to the capture instances the way SQL Server logs
 * them — a key change sometimes as an update's two images, sometimes as an
 * insert logged before its delete with another seqval — and cdc-sync reads
 * them through the CLI over the stand-in's HTTP bridge. A source only: the
 * mssql sink's stand-in (FakeTarget) is a separate model and does not log
 * its writes to CDC, so SQL Server cannot be the target of a two-way pair here.
 */
export class MssqlSide implements Side {
  private readonly server = new FakeSqlServer();
  private readonly cdc = new FakeCdc(this.server);
  /** The application's row changes, with absolute ids. */
  private readonly changes: { table: 'parent' | 'child'; before: number | null; after: number | null; image: Row | null; time: number; seq: number }[] = [];
  private url = '';
  private seq = 0;

  private constructor(readonly label: string) {}

  static async create(label: string): Promise<MssqlSide> {
    const side = new MssqlSide(label);
    side.cdc.createTable('dbo', 'parent', [
      { name: 'id', type: 'int' },
      { name: 'name', type: 'nvarchar' },
      { name: 'qty', type: 'bigint' },
      { name: 'at', type: 'datetime2' },
      { name: 'flag', type: 'bit' },
      { name: 'data', type: 'varbinary', max: true },
      { name: 'doc', type: 'nvarchar', max: true },
    ], ['id']);
    side.cdc.createTable('dbo', 'child', [{ name: 'id', type: 'int' }, { name: 'parent_id', type: 'int' }, { name: 'note', type: 'nvarchar' }], ['id']);
    side.url = await side.server.listen();
    return side;
  }

  source(): string {
    return `{ type: mssql-cdc, url: "${this.url}", pollIntervalMs: 0, idleIntervalMs: 50 }`;
  }

  sink(): string {
    throw new Error('the SQL Server stand-in is a source only here (see MssqlSide)');
  }

  /** What `init-sql --target mssql` asks for: CDC on the database and on each table. */
  async setUp(script: string): Promise<void> {
    for (const table of ['parent', 'child']) {
      if (!script.includes(`@source_schema = N'dbo', @source_name = N'${table}'`)) throw new Error(`init-sql did not enable CDC for dbo.${table}:\n${script}`);
      this.cdc.enableTable('dbo', table);
    }
  }

  async apply(edits: Edit[], base: number): Promise<number> {
    const statements: FakeChange[] = [];
    const recorded: Omit<(typeof this.changes)[number], 'seq'>[] = [];
    // The tables as this transaction sees them so far (the fake applies the statements at commit).
    const parents = new Map(this.cdc.rowsOf('dbo.parent').map((r) => [Number(r.id), { ...r }]));
    const children = new Map(this.cdc.rowsOf('dbo.child').map((r) => [Number(r.id), { ...r }]));
    const record = (table: 'parent' | 'child', before: number | null, after: number | null, image: Row | null) => recorded.push({ table, before, after, image, time: Date.now() });
    const upsert = (table: 'parent' | 'child', rows: Map<number, Row>, row: Row) => {
      const id = Number(row.id);
      const exists = rows.has(id);
      const next = { ...(rows.get(id) ?? {}), ...row };
      statements.push(exists ? { table: `dbo.${table}`, op: 'update', row } : { table: `dbo.${table}`, op: 'insert', row: next });
      rows.set(id, next);
      record(table, exists ? id : null, id, next);
    };
    const move = (table: 'parent' | 'child', rows: Map<number, Row>, from: number, to: number) => {
      const row = rows.get(from);
      if (from === to || !row || rows.has(to)) return;
      const next = { ...row, id: to };
      // Both ways SQL Server logs a key change (cdc-changes.ts): the two images of an update, or an insert before its delete.
      statements.push((from + to) % 2 === 0 ? { table: `dbo.${table}`, op: 'update', key: { id: from }, row: { id: to } } : { table: `dbo.${table}`, op: 'key-update', moves: [{ from: { id: from }, set: { id: to } }] });
      rows.delete(from);
      rows.set(to, next);
      record(table, from, to, next);
    };
    const remove = (table: 'parent' | 'child', rows: Map<number, Row>, id: number) => {
      if (!rows.has(id)) return;
      statements.push({ table: `dbo.${table}`, op: 'delete', key: { id } });
      rows.delete(id);
      record(table, id, null, null);
    };
    for (const e of edits) {
      switch (e.kind) {
        case 'upsert-parent': {
          const v = e.values;
          upsert('parent', parents, { id: base + e.id, name: v.name, qty: v.qty === null ? null : String(v.qty), at: v.at === null ? null : new Date(v.at).toISOString().slice(0, 23), flag: v.flag, data: v.data === null ? null : Buffer.from(v.data), doc: v.doc });
          break;
        }
        case 'update-parent':
          if (parents.has(base + e.id)) upsert('parent', parents, { id: base + e.id, name: e.name, qty: e.qty === null ? null : String(e.qty) });
          break;
        case 'delete-parent':
          if (![...children.values()].some((c) => Number(c.parent_id) === base + e.id)) remove('parent', parents, base + e.id);
          break;
        case 'move-parent':
          if (![...children.values()].some((c) => Number(c.parent_id) === base + e.from)) move('parent', parents, base + e.from, base + e.to);
          break;
        case 'family':
          for (const c of e.children) upsert('child', children, { id: base + c, parent_id: base + e.parent, note: 'born' });
          upsert('parent', parents, parents.has(base + e.parent) ? { id: base + e.parent, name: e.name } : { id: base + e.parent, name: e.name, qty: null, at: null, flag: null, data: null, doc: null });
          break;
        case 'update-child':
          if (children.has(base + e.id) && parents.has(base + e.parent)) upsert('child', children, { id: base + e.id, note: e.note, parent_id: base + e.parent });
          break;
        case 'delete-child':
          remove('child', children, base + e.id);
          break;
        case 'move-child':
          move('child', children, base + e.from, base + e.to);
          break;
      }
    }
    if (statements.length > 0) this.cdc.commit(statements);
    for (const change of recorded) this.changes.push({ ...change, seq: (this.seq += 1) });
    return recorded.length;
  }

  async snapshot(base: number): Promise<Snapshot> {
    const inCase = (r: Row) => Number(r.id) >= base && Number(r.id) < base + SPAN;
    return snapshotOf(this.cdc.rowsOf('dbo.parent').filter(inCase), this.cdc.rowsOf('dbo.child').filter(inCase), base);
  }

  async userChanges(base: number): Promise<UserChange[]> {
    return caseChanges(this.changes, base);
  }

  /** Only the application writes here (one-way): exactly the rows it touched. */
  async writes(base: number): Promise<Write[]> {
    return this.inCase(base).map((c) => ({ row: `${c.table} ${(c.after ?? c.before)! - base}`, detail: 'by the application' }));
  }

  private inCase(base: number) {
    return this.changes.filter((c) => {
      const id = c.after ?? c.before ?? -1;
      return id >= base && id < base + SPAN;
    });
  }

  async deadLetters(): Promise<number> {
    return 0;
  }

  async conflicts(): Promise<number> {
    return 0;
  }

  async close(): Promise<void> {
    await this.server.close();
  }

}
