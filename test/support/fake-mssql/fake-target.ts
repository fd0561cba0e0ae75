import type { MergeShape } from '../../../src/sinks/mssql/queries.js';
import type { FakeSqlServer, Values } from './fake-server.js';
import { SqlServerError, } from './fake-server.js';

export type Row = Record<string, unknown>;

export interface TargetColumnSpec {
  name: string;
  type: string;
  maxLength?: number;
  precision?: number;
  scale?: number;
  identity?: boolean;
  computed?: boolean;
}

interface Table {
  columns: TargetColumnSpec[];
  primaryKey: string[];
  unique: string[][];
  rows: Row[];
  nextIdentity: number;
}

/**
 * A SQL Server database as the mssql sink sees it: catalog answers shaped as
 * sys.columns/sys.indexes rows, and the effect of the sink's MERGE / DELETE
 * statements (decoded from the OPENJSON parameter the way SQL Server would
 * read it), so tests check both what the sink sends and what it leaves.
 */
export class FakeTarget {
  readonly tables = new Map<string, Table>();
  readonly checkpoints = new Map<string, string>();
  readonly deadLetters: Row[] = [];
  readonly origins: string[] = [];
  /** Fail a MERGE whose rows contain this value (a unique violation, 2627). */
  poison: unknown = undefined;

  constructor(readonly server: FakeSqlServer) {
    const h = server.handlers;
    const table = (v: Values) => this.tables.get(String(v.table).replace(/[[\]]/g, ''));
    h.set('sink.setup', () => []);
    h.set('sink.columns', (v) =>
      (table(v)?.columns ?? []).map((c) => ({
        column_name: c.name,
        column_type: c.type,
        max_length: c.maxLength ?? (c.type.startsWith('n') ? 200 : 100),
        precision: c.precision ?? 0,
        scale: c.scale ?? 0,
        is_identity: c.identity ?? false,
        is_computed: c.computed ?? false,
      })),
    );
    h.set('sink.keys', (v) => {
      const t = table(v);
      if (!t) return [];
      return [t.primaryKey, ...t.unique].flatMap((cols, i) => cols.map((c) => ({ index_id: i + 1, is_primary_key: i === 0, column_name: c })));
    });
    h.set('sink.mark-origin', (v) => {
      this.origins.push(String(v.stream));
      return [];
    });
    h.set('sink.merge', (v, q) => [{ written: this.merge(JSON.parse(q.meta!.shape!) as MergeShape, JSON.parse(String(v.rows)) as Row[]) }]);
    h.set('sink.conflicts', (v, q) => this.conflicts(JSON.parse(q.meta!.shape!) as MergeShape & { newerWinsBy: string }, JSON.parse(String(v.rows)) as Row[]));
    h.set('sink.delete', (v, q) => {
      const t = this.tables.get(q.meta!.table!)!;
      const keys = JSON.parse(q.meta!.key!) as string[];
      const gone = JSON.parse(String(v.rows)) as Row[];
      const before = t.rows.length;
      t.rows = t.rows.filter((r) => !gone.some((g) => keys.every((k) => String(r[k]) === String(g[k]))));
      return [{ written: before - t.rows.length }];
    });
    h.set('sink.dead-letters', (v) => {
      for (const letter of JSON.parse(String(v.rows)) as Row[]) this.deadLetters.push({ id: this.deadLetters.length + 1, ...letter, retried_at: null });
      return [];
    });
    h.set('sink.open-dead-letters', (v) =>
      this.deadLetters
        .filter((l) => l.stream === v.stream && l.retried_at === null && (v.table === null || l.table === v.table))
        .map((l) => ({ id: String(l.id), table: l.table, payload: l.payload, position: l.position })),
    );
    h.set('sink.mark-dead-letters-retried', (v) => {
      const ids = new Set((JSON.parse(String(v.ids)) as string[]).map(Number));
      for (const l of this.deadLetters) if (ids.has(l.id as number)) l.retried_at = new Date();
      return [];
    });
    h.set('sink.save-checkpoint', (v) => {
      this.checkpoints.set(String(v.stream), String(v.position));
      return [];
    });
    h.set('sink.read-checkpoint', (v) => (this.checkpoints.has(String(v.stream)) ? [{ position: this.checkpoints.get(String(v.stream)) }] : []));
    server.snapshots.push(() => {
      const saved = [...this.tables].map(([name, t]) => [name, structuredClone(t.rows), t.nextIdentity] as const);
      const checkpoints = new Map(this.checkpoints);
      const letters = this.deadLetters.length;
      return () => {
        for (const [name, rows, next] of saved) Object.assign(this.tables.get(name)!, { rows, nextIdentity: next });
        this.checkpoints.clear();
        for (const [k, p] of checkpoints) this.checkpoints.set(k, p);
        this.deadLetters.splice(letters);
      };
    });
  }

  createTable(name: string, columns: TargetColumnSpec[], primaryKey: string[], unique: string[][] = []): void {
    this.tables.set(name, { columns, primaryKey, unique, rows: [], nextIdentity: 1 });
  }

  rows(name: string): Row[] {
    return this.tables.get(name)!.rows;
  }

  private merge(shape: MergeShape, rows: Row[]): number {
    const t = this.tables.get(`${shape.table.schema}.${shape.table.name}`)!;
    if (this.poison !== undefined && rows.some((r) => Object.values(r).includes(this.poison))) {
      throw new SqlServerError("Violation of UNIQUE KEY constraint 'UQ_x'. Cannot insert duplicate key.", 2627);
    }
    const identity = t.columns.find((c) => c.identity)?.name;
    if (identity && rows.some((r) => identity in r) && !shape.identityInsert) {
      throw new SqlServerError(`Cannot insert explicit value for identity column in table '${shape.table.name}' when IDENTITY_INSERT is set to OFF.`, 544);
    }
    const updatable = shape.columns.map((c) => c.name).filter((c) => !shape.key.includes(c) && (!shape.updatable || shape.updatable.includes(c)));
    let written = 0;
    for (const row of rows) {
      const found = t.rows.find((r) => shape.key.every((k) => String(r[k]) === String(row[k])));
      if (!found) {
        const inserted: Row = { ...row };
        if (identity && !(identity in inserted)) inserted[identity] = t.nextIdentity++;
        t.rows.push(inserted);
        written += 1;
        continue;
      }
      const differs = updatable.some((c) => JSON.stringify(found[c] ?? null) !== JSON.stringify(row[c] ?? null));
      const by = shape.newerWinsBy;
      const newer = !by || found[by] === null || found[by] === undefined || String(row[by]) >= String(found[by]);
      if (differs && newer) {
        for (const c of updatable) found[c] = row[c];
        written += 1;
      }
    }
    return written;
  }

  private conflicts(shape: MergeShape & { newerWinsBy: string }, rows: Row[]): Row[] {
    const t = this.tables.get(`${shape.table.schema}.${shape.table.name}`)!;
    const by = shape.newerWinsBy;
    return rows
      .filter((row) => {
        const found = t.rows.find((r) => shape.key.every((k) => String(r[k]) === String(row[k])));
        return found && String(found[by]) > String(row[by]);
      })
      .map((row) => Object.fromEntries(shape.key.map((k) => [k, row[k]])));
  }
}
