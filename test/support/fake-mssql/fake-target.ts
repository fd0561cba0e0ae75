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
  /** Case- and accent-insensitive by default, as SQL_Latin1_General_CP1_CI_AS and friends. */
  collation?: 'CI_AS' | 'CI_AI' | 'CS_AS' | 'BIN2';
}

/** A foreign key: `columns` of this table point at the key of `table` (`schema.name`). */
export interface TargetReference {
  columns: string[];
  table: string;
  referenced: string[];
}

export interface TargetTableOptions {
  /** The row array to keep, when another model (the SyncQueue's tables) shares the table. */
  rows?: Row[];
  references?: TargetReference[];
  /** Keep values as SQL Server stores them (bytes, bit, numbers), not as the JSON they arrived in. */
  typed?: boolean;
}

interface Table {
  columns: TargetColumnSpec[];
  primaryKey: string[];
  unique: string[][];
  rows: Row[];
  references: TargetReference[];
  typed: boolean;
  nextIdentity: number;
  /** IDENT_CURRENT: the seed (1) until a row took an identity value. */
  identityCurrent: number;
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
  /** cdc_sync.conflicts. */
  readonly conflictLog: Row[] = [];
  /** Each row the sink's statements wrote (the harness counts writes). */
  onWrite: (table: string, row: Row) => void = () => undefined;

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
    h.set('sink.merge', (v, q) => [{ written: this.merge(JSON.parse(q.meta!.shape!) as MergeShape, openJson(q.sql, String(v.rows)), q.sql) }]);
    h.set('sink.conflicts', (v, q) => this.conflicts(JSON.parse(q.meta!.shape!) as MergeShape & { newerWinsBy: string }, openJson(q.sql, String(v.rows))));
    h.set('sink.delete', (v, q) => {
      const name = q.meta!.table!;
      const t = this.tables.get(name)!;
      const keys = JSON.parse(q.meta!.key!) as string[];
      const gone = JSON.parse(String(v.rows)) as Row[];
      const doomed = t.rows.filter((r) => gone.some((g) => keys.every((k) => String(r[k]) === String(g[k]))));
      this.checkReferencing(name, doomed);
      for (const r of doomed) {
        t.rows.splice(t.rows.indexOf(r), 1);
        this.onWrite(name, r);
      }
      return [{ written: doomed.length }];
    });
    h.set('sink.references', (v) => {
      const refs = table(v)?.references ?? [];
      return [...new Set(refs.map((r) => r.table))].map((r) => ({ schema_name: r.split('.')[0], table_name: r.split('.')[1] }));
    });
    h.set('sink.log-conflicts', (v) => {
      for (const entry of JSON.parse(String(v.rows)) as Row[]) this.conflictLog.push(entry);
      return [];
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
      const saved = [...this.tables].map(([name, t]) => [name, structuredClone(t.rows), t.nextIdentity, t.identityCurrent] as const);
      const checkpoints = new Map(this.checkpoints);
      const letters = this.deadLetters.length;
      const conflicts = this.conflictLog.length;
      return () => {
        for (const [name, rows, next, current] of saved) {
          const t = this.tables.get(name)!;
          t.rows.splice(0, t.rows.length, ...rows);
          Object.assign(t, { nextIdentity: next, identityCurrent: current });
        }
        this.checkpoints.clear();
        for (const [k, p] of checkpoints) this.checkpoints.set(k, p);
        this.deadLetters.splice(letters);
        this.conflictLog.splice(conflicts);
      };
    });
  }

  createTable(name: string, columns: TargetColumnSpec[], primaryKey: string[], unique: string[][] = [], options: TargetTableOptions = {}): void {
    this.tables.set(name, {
      columns,
      primaryKey,
      unique,
      rows: options.rows ?? [],
      references: options.references ?? [],
      typed: options.typed ?? false,
      nextIdentity: 1,
      identityCurrent: 1,
    });
  }

  rows(name: string): Row[] {
    return this.tables.get(name)!.rows;
  }

  private merge(shape: MergeShape, rows: Row[], sql: string): number {
    const t = this.tables.get(`${shape.table.schema}.${shape.table.name}`)!;
    if (this.poison !== undefined && rows.some((r) => Object.values(r).includes(this.poison))) {
      throw new SqlServerError("Violation of UNIQUE KEY constraint 'UQ_x'. Cannot insert duplicate key.", 2627);
    }
    for (const c of shape.columns) {
      const spec = t.columns.find((x) => x.name === c.name);
      // https://learn.microsoft.com/sql/relational-databases/errors-events/database-engine-events-and-errors-0-to-999 (271, 273)
      if (spec?.computed) throw new SqlServerError(`The column "${c.name}" cannot be modified because it is either a computed column or is the result of a UNION operator.`, 271);
      if (spec?.type === 'timestamp') throw new SqlServerError('Cannot insert an explicit value into a timestamp column. Use INSERT with a column list to exclude the timestamp column, or insert a DEFAULT into the timestamp column.', 273);
    }
    const identity = t.columns.find((c) => c.identity)?.name;
    if (identity && rows.some((r) => identity in r) && !shape.identityInsert) {
      throw new SqlServerError(`Cannot insert explicit value for identity column in table '${shape.table.name}' when IDENTITY_INSERT is set to OFF.`, 544);
    }
    // The guard the statement may carry (IF EXISTS … IDENT_CURRENT … THROW 50001), evaluated as SQL Server would.
    const guard = /THROW (\d+), N'(identityInsert:[^]*?)', 1;/.exec(sql);
    if (identity && guard && /IDENT_CURRENT/.test(sql) && rows.some((r) => r[identity] !== null && r[identity] !== undefined && Number(r[identity]) > t.identityCurrent)) {
      throw new SqlServerError(guard[2]!.replace(/''/g, "'"), Number(guard[1]));
    }
    const updatable = shape.columns.map((c) => c.name).filter((c) => !shape.key.includes(c) && (!shape.updatable || shape.updatable.includes(c)));
    const name = `${shape.table.schema}.${shape.table.name}`;
    if (t.typed) rows = rows.map((r) => Object.fromEntries(Object.entries(r).map(([c, v]) => [c, storedValue(t.columns.find((x) => x.name === c)?.type ?? '', v)])));
    this.checkReferences(t, rows);
    let written = 0;
    for (const row of rows) {
      this.checkLengths(t, row);
      const found = t.rows.find((r) => shape.key.every((k) => String(r[k]) === String(row[k])));
      if (!found) {
        const inserted: Row = { ...row };
        if (identity && !(identity in inserted)) {
          inserted[identity] = t.nextIdentity++;
          t.identityCurrent = inserted[identity] as number;
        } else if (identity && Number(inserted[identity]) > t.identityCurrent) {
          // "If the value inserted is larger than the current identity value for the table, SQL Server
          // automatically uses the new inserted value as the current identity value."
          // https://learn.microsoft.com/sql/t-sql/statements/set-identity-insert-transact-sql
          t.identityCurrent = Number(inserted[identity]);
          t.nextIdentity = t.identityCurrent + 1;
        }
        t.rows.push(inserted);
        this.onWrite(name, inserted);
        written += 1;
        continue;
      }
      const differs = updatable.some((c) => !this.sameValue(t, c, found[c], row[c], sql));
      const by = shape.newerWinsBy;
      const newer = !by || found[by] === null || found[by] === undefined || String(row[by]) >= String(found[by]);
      if (differs && newer) {
        for (const c of updatable) found[c] = row[c];
        this.onWrite(name, found);
        written += 1;
      }
    }
    return written;
  }

  /**
   * Equality as the statement's EXCEPT sees it: in the column's collation
   * (case- and, for AI, accent-insensitive; trailing spaces ignored by '=' in
   * every collation) unless the statement compares the column in a binary
   * collation, and by length when it also compares DATALENGTH.
   * https://learn.microsoft.com/sql/relational-databases/collations/collation-and-unicode-support
   */
  private sameValue(t: Table, column: string, stored: unknown, incoming: unknown, sql: string): boolean {
    if (stored instanceof Uint8Array && incoming instanceof Uint8Array) return Buffer.from(stored).equals(Buffer.from(incoming));
    if (typeof stored !== 'string' || typeof incoming !== 'string') return JSON.stringify(stored ?? null) === JSON.stringify(incoming ?? null);
    const name = column.replace(/]/g, ']]');
    const binary = sql.includes(`s.[${name}] COLLATE Latin1_General_BIN2`);
    const byLength = sql.includes(`DATALENGTH(s.[${name}])`);
    if (byLength && stored.length !== incoming.length) return false;
    if (binary) return stored.replace(/ +$/, '') === incoming.replace(/ +$/, '');
    const collation = t.columns.find((c) => c.name === column)?.collation ?? 'CI_AS';
    const fold = (v: string) => {
      let x = v.replace(/ +$/, '');
      if (collation === 'BIN2') return x;
      if (collation.startsWith('CI')) x = x.toLowerCase();
      if (collation.endsWith('AI')) x = x.normalize('NFD').replace(/[\u0300-\u036f]/g, '');
      return x;
    };
    return fold(stored) === fold(incoming);
  }

  /**
   * Foreign keys are checked at the end of each statement, not of the
   * transaction (SQL Server has no deferred constraints): error 547
   * (https://learn.microsoft.com/sql/relational-databases/errors-events/database-engine-events-and-errors-0-to-999).
   */
  private checkReferences(t: Table, rows: Row[]): void {
    for (const ref of t.references) {
      const parents = this.tables.get(ref.table)!.rows;
      for (const row of rows) {
        if (ref.columns.some((c) => row[c] === null || row[c] === undefined)) continue;
        if (!parents.some((p) => ref.referenced.every((k, i) => String(p[k]) === String(row[ref.columns[i]!])))) {
          throw new SqlServerError(`The MERGE statement conflicted with the FOREIGN KEY constraint "FK_${ref.columns.join('_')}". The conflict occurred in table "${ref.table}".`, 547);
        }
      }
    }
  }

  /** 547 for a DELETE of rows another table's rows still point at. */
  private checkReferencing(name: string, doomed: Row[]): void {
    for (const [childName, child] of this.tables) {
      for (const ref of child.references.filter((r) => r.table === name)) {
        if (doomed.some((d) => child.rows.some((c) => ref.referenced.every((k, i) => String(d[k]) === String(c[ref.columns[i]!]))))) {
          throw new SqlServerError(`The DELETE statement conflicted with the REFERENCE constraint "FK_${ref.columns.join('_')}". The conflict occurred in table "${childName}".`, 547);
        }
      }
    }
  }

  /** 2628: a value longer than its column (https://learn.microsoft.com/sql/relational-databases/errors-events/mssqlserver-2628-database-engine-error). */
  private checkLengths(t: Table, row: Row): void {
    for (const c of t.columns) {
      const v = row[c.name];
      if (typeof v !== 'string' || !/char$/.test(c.type) || c.maxLength === undefined || c.maxLength < 0) continue;
      const chars = c.type.startsWith('n') ? c.maxLength / 2 : c.maxLength;
      if (v.length > chars) throw new SqlServerError(`String or binary data would be truncated in table '${t.columns === undefined ? '' : 'target'}', column '${c.name}'. Truncated value: '${v.slice(0, chars)}'.`, 2628);
    }
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

/**
 * A value as a column of `type` keeps it after OPENJSON … WITH read it from
 * JSON: varbinary from base64 (the OPENJSON page: "binary … base64"), bigint
 * kept as its decimal text (the driver hands bigint out as a string), bit as
 * true/false, datetime2(3) as its wall-clock text with three fraction digits.
 */
function storedValue(type: string, value: unknown): unknown {
  if (value === null || value === undefined) return null;
  if (type === 'varbinary' || type === 'binary') return Buffer.from(String(value), 'base64');
  if (type === 'bigint') return String(value);
  if (type === 'int') return Number(value);
  if (type === 'bit') return value === true || value === 1 || value === '1' || value === 'true';
  if (type === 'datetime2') {
    const [date, time = '00:00:00'] = String(value).replace(' ', 'T').split('T') as [string, string?];
    const [hms, fraction = ''] = time.split('.');
    return `${date}T${hms}.${fraction.padEnd(3, '0').slice(0, 3)}`;
  }
  return value;
}

/**
 * What OPENJSON(@rows) WITH (…) hands the statement: each column converted
 * to the type the WITH clause declares, as CAST would
 * (https://learn.microsoft.com/sql/t-sql/functions/openjson-transact-sql, "with_clause"):
 * a string longer than (n)varchar(n) is cut silently; datetime and
 * smalldatetime take at most 3 fraction digits (Msg 241 otherwise,
 * https://learn.microsoft.com/sql/t-sql/data-types/datetime-transact-sql).
 */
export function openJson(sql: string, json: string): Row[] {
  const declared = new Map<string, string>();
  const clause = /OPENJSON\(@rows\) WITH \(([^]*?)\) AS/.exec(sql)?.[1] ?? '';
  for (const m of clause.matchAll(/\[((?:[^\]]|\]\])+)\] ([a-z0-9]+(?:\([^)]*\))?) N'/g)) declared.set(m[1]!.replace(/]]/g, ']'), m[2]!);
  const rows = JSON.parse(json) as Row[];
  return rows.map((row) =>
    Object.fromEntries(
      Object.entries(row).map(([name, value]) => {
        const type = declared.get(name) ?? '';
        if (typeof value !== 'string') return [name, value];
        const length = /^n?(?:var)?char\((\d+)\)$/.exec(type);
        if (length) return [name, value.slice(0, Number(length[1]))];
        if (/^(small)?datetime$/.test(type) && /[.,]\d{4,}/.test(value)) {
          throw new SqlServerError('Conversion failed when converting date and/or time from character string.', 241);
        }
        return [name, value];
      }),
    ),
  );
}
