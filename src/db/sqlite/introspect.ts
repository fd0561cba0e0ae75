import type { TargetTable } from '../../core/mapping.js';
import type { LogicalType } from '../../core/values.js';
import { tableColumns, type SqliteDatabase } from './connection.js';

/**
 * SQLite declared types onto logical types, following SQLite's own affinity
 * rules (https://www.sqlite.org/datatype3.html#determination_of_column_affinity)
 * with the conventions applications use on top: BOOLEAN as 0/1, DATETIME and
 * TIMESTAMP as date-time text in UTC (`2024-01-02 03:04:05`, as datetime()
 * writes it), JSON as text, UUID as text.
 */
export function logicalType(declared: string): LogicalType {
  const t = declared.toUpperCase();
  if (t === '') return 'other';
  if (t.includes('BOOL')) return 'boolean';
  if (t.includes('UUID') || t.includes('GUID')) return 'uuid';
  if (t.includes('DATETIME') || t.includes('TIMESTAMP')) return 'timestamptz';
  if (t.startsWith('DATE')) return 'date';
  if (t.startsWith('TIME')) return 'time';
  if (t.includes('JSON')) return 'json';
  if (t.includes('INT')) return 'integer';
  if (t.includes('CHAR') || t.includes('CLOB') || t.includes('TEXT')) return 'text';
  if (t.includes('BLOB') || t.includes('BINARY') || t.includes('BYTEA')) return 'binary';
  if (t.includes('REAL') || t.includes('FLOA') || t.includes('DOUB')) return 'float';
  if (t.includes('DEC') || t.includes('NUM') || t.includes('MONEY')) return 'decimal';
  return 'other';
}

export interface ForeignKey {
  columns: string[];
  parent: string;
  /** Parent columns; the parent's primary key when the constraint names none. */
  parentColumns: string[];
}

/** Columns (generated ones marked: table_xinfo hidden 2/3), primary key and unique keys, or null when the table does not exist. */
export function introspectSqliteTable(db: SqliteDatabase, table: string): TargetTable | null {
  const columns = tableColumns(db, table);
  if (!columns) return null;
  const primaryKey = columns.filter((c) => c.pk > 0).sort((a, b) => a.pk - b.pk).map((c) => c.name);
  const uniqueKeys: string[][] = primaryKey.length > 0 ? [primaryKey] : [];
  const indexes = db.prepare(`SELECT name, "unique", partial FROM pragma_index_list(?)`).all(table) as { name: string; unique: number; partial: number }[];
  for (const index of indexes) {
    if (!index.unique || index.partial) continue;
    const parts = db.prepare(`SELECT name FROM pragma_index_info(?) ORDER BY seqno`).all(index.name) as { name: string | null }[];
    // Expression indexes have null column names: no ON CONFLICT target.
    if (parts.some((p) => p.name === null)) continue;
    uniqueKeys.push(parts.map((p) => p.name!));
  }
  return {
    name: { schema: undefined, name: table },
    columns: columns
      .filter((c) => c.hidden !== 1)
      .map((c) => ({ name: c.name, type: logicalType(c.type), generated: c.hidden === 2 || c.hidden === 3 })),
    primaryKey,
    uniqueKeys,
    references: [...new Set(foreignKeys(db, table).map((fk) => fk.parent))].filter((p) => p !== table).map((p) => ({ schema: undefined, name: p })),
  };
}

export function foreignKeys(db: SqliteDatabase, table: string): ForeignKey[] {
  const rows = db.prepare(`SELECT id, seq, "table" AS parent, "from", "to" FROM pragma_foreign_key_list(?) ORDER BY id, seq`).all(table) as {
    id: number;
    parent: string;
    from: string;
    to: string | null;
  }[];
  const byId = new Map<number, ForeignKey & { implicit: boolean }>();
  for (const row of rows) {
    let fk = byId.get(row.id);
    if (!fk) byId.set(row.id, (fk = { columns: [], parent: row.parent, parentColumns: [], implicit: row.to === null }));
    fk.columns.push(row.from);
    if (row.to !== null) fk.parentColumns.push(row.to);
  }
  return [...byId.values()].map(({ columns, parent, parentColumns, implicit }) => ({
    columns,
    parent,
    parentColumns: implicit ? (tableColumns(db, parent) ?? []).filter((c) => c.pk > 0).sort((a, b) => a.pk - b.pk).map((c) => c.name) : parentColumns,
  }));
}
