import type { Query } from '../../db/mssql/client.js';
import { quote, splitTable } from '../../db/mssql/identifiers.js';

/** T-SQL of the initial snapshot: a keyset walk over the table's key, compared by SQL Server itself. */

/** Rows of the table as its partitions count them: no scan, for the copy's progress gauge only. */
export const TABLE_ROWS: Query = {
  name: 'snapshot.count-rows',
  sql: `SELECT SUM(p.rows) AS total FROM sys.partitions p WHERE p.object_id = OBJECT_ID(@table) AND p.index_id IN (0, 1)`,
};

export const TABLE_COLUMNS: Query = {
  name: 'snapshot.columns',
  sql: `SELECT c.name AS column_name, t.name AS column_type, c.max_length, c.precision, c.scale
  FROM sys.columns c JOIN sys.types t ON t.user_type_id = c.user_type_id
 WHERE c.object_id = OBJECT_ID(@table)
 ORDER BY c.column_id`,
};

export interface KeyColumn {
  name: string;
  /** Declared type, e.g. `nvarchar(50)`, `decimal(18,2)`, `int`. */
  type: string;
}

/** 1 for a row of a page whose key still has a change to stream (see TableSnapshot). */
export const CHANGED_COLUMN = 'cdc_sync_changed';

/**
 * The first @limit rows, and the next @limit rows after the key in @after
 * (a JSON array of the last key's values). Two statements, because one with
 * `WHERE @after IS NULL OR …` gets one plan for both cases, a scan, and a
 * big table is then read from the start for every page. Each value is cast
 * to its column's declared type so the comparison uses the column's
 * collation and index, exactly as ORDER BY sorts: no row skipped whatever
 * the collation. `changed`, an expression over the row `t`, is read in the
 * same statement as the row. `where`: the condition of `cdc-sync snapshot
 * --where`, T-SQL as the user wrote it (checkWhere refused `;` and comments).
 */
export function readPage(table: string, columns: string, key: KeyColumn[], changed?: string, where?: string): { first: Query; next: Query } {
  const value = (k: KeyColumn, i: number) =>
    k.type.includes('binary') ? `CONVERT(${k.type}, JSON_VALUE(@after, '$[${i}]'), 1)` : `CAST(JSON_VALUE(@after, '$[${i}]') AS ${k.type})`;
  const after = key
    .map((_, i) =>
      key
        .slice(0, i + 1)
        .map((k, j) => `t.${quote(k.name)} ${j === i ? '>' : '='} ${value(k, j)}`)
        .join(' AND '),
    )
    .map((clause) => `(${clause})`)
    .join(' OR ');
  const [schema, name] = splitTable(table);
  const select = changed ? `${columns},\n       ${changed} AS ${quote(CHANGED_COLUMN)}` : columns;
  const from = `SELECT TOP (@limit) ${select}\n  FROM ${quote(schema)}.${quote(name)} AS t`;
  const order = ` ORDER BY ${key.map((k) => `t.${quote(k.name)}`).join(', ')}`;
  const meta: Record<string, string> = where === undefined ? { table } : { table, where };
  const condition = where === undefined ? '' : `(${where})`;
  return {
    first: { name: 'snapshot.read-page', meta, sql: `${from}\n${condition ? ` WHERE ${condition}\n` : ''}${order}` },
    next: { name: 'snapshot.read-page', meta, sql: `${from}\n WHERE ${condition ? `(${after}) AND ${condition}` : after}\n${order}` },
  };
}

