import type { TargetColumn, TargetTable } from '../../core/mapping.js';
import type { QualifiedName } from '../../core/names.js';
import type { LogicalType } from '../../core/values.js';
import type { Pool } from './connection.js';
import { quoteTable } from './identifiers.js';

const TYPES: Record<string, LogicalType> = {
  bool: 'boolean',
  int2: 'integer',
  int4: 'integer',
  int8: 'integer',
  oid: 'integer',
  numeric: 'decimal',
  money: 'decimal',
  float4: 'float',
  float8: 'float',
  text: 'text',
  varchar: 'text',
  bpchar: 'text',
  name: 'text',
  citext: 'text',
  uuid: 'uuid',
  date: 'date',
  time: 'time',
  timetz: 'time',
  timestamp: 'timestamp',
  timestamptz: 'timestamptz',
  bytea: 'binary',
  json: 'json',
  jsonb: 'json',
};

// Domains are described by their base type; identity ALWAYS and generated
// columns cannot be written, so the mapping skips them.
const COLUMNS_SQL = `
SELECT a.attname AS name,
       coalesce(bt.typname, t.typname) AS type,
       (a.attgenerated <> '' OR a.attidentity = 'a') AS generated
  FROM pg_attribute a
  JOIN pg_type t ON t.oid = a.atttypid
  LEFT JOIN pg_type bt ON t.typtype = 'd' AND bt.oid = t.typbasetype
 WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attnum`;

const UNIQUE_SQL = `
SELECT i.indisprimary AS primary,
       array_agg(a.attname::text ORDER BY k.ord) AS columns
  FROM pg_index i
  CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
  JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
 WHERE i.indrelid = $1::regclass AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL
 GROUP BY i.indexrelid, i.indisprimary`;

// Parent tables of the table's foreign keys (itself excluded: a self-reference orders nothing between tables).
const REFERENCES_SQL = `
SELECT DISTINCT n.nspname AS schema, c.relname AS name
  FROM pg_constraint f
  JOIN pg_class c ON c.oid = f.confrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE f.conrelid = $1::regclass AND f.contype = 'f' AND f.confrelid <> f.conrelid`;

/** Columns, types and keys of a table, or null when it does not exist. */
export async function introspectTable(pool: Pool, name: QualifiedName): Promise<TargetTable | null> {
  const qualified = quoteTable(name);
  const exists = await pool.query<{ oid: string | null }>('SELECT to_regclass($1)::oid AS oid', [qualified]);
  if (!exists.rows[0]?.oid) return null;
  const columns = await pool.query<TargetColumn & { type: string }>(COLUMNS_SQL, [qualified]);
  const unique = await pool.query<{ primary: boolean; columns: string[] }>(UNIQUE_SQL, [qualified]);
  const references = await pool.query<{ schema: string; name: string }>(REFERENCES_SQL, [qualified]);
  return {
    name: { schema: name.schema ?? 'public', name: name.name },
    columns: columns.rows.map((c) => ({ name: c.name, type: TYPES[c.type] ?? 'other', generated: c.generated, dbType: c.type })),
    primaryKey: unique.rows.find((u) => u.primary)?.columns ?? [],
    uniqueKeys: unique.rows.map((u) => u.columns),
    references: references.rows.map((r) => ({ schema: r.schema, name: r.name })),
  };
}
