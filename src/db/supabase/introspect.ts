import type { TableConfig, TargetColumn, TargetTable } from '../../core/mapping.js';
import { columnMatchKey, type QualifiedName } from '../../core/names.js';
import type { LogicalType } from '../../core/values.js';

/**
 * The part of PostgREST's OpenAPI (Swagger 2.0) root document the sink reads:
 * one definition per table of the requested schema, one property per column
 * in column order, `format` = the PostgreSQL type (format_type without the
 * modifier for built-in types), "<pk/>" in the description of primary-key
 * columns and "<fk table='parent' column='id'/>" in that of foreign-key
 * columns (PostgREST/postgrest: src/PostgREST/Response/OpenAPI.hs, makeProperty).
 */
export interface OpenApiDocument {
  definitions?: Record<string, { properties?: Record<string, { format?: string; type?: string; description?: string }> }>;
}

const TYPES: Record<string, LogicalType> = {
  boolean: 'boolean',
  smallint: 'integer',
  integer: 'integer',
  bigint: 'integer',
  oid: 'integer',
  numeric: 'decimal',
  money: 'decimal',
  real: 'float',
  'double precision': 'float',
  text: 'text',
  'character varying': 'text',
  character: 'text',
  name: 'text',
  citext: 'text',
  uuid: 'uuid',
  date: 'date',
  'time without time zone': 'time',
  'time with time zone': 'time',
  'timestamp without time zone': 'timestamp',
  'timestamp with time zone': 'timestamptz',
  bytea: 'binary',
  json: 'json',
  jsonb: 'json',
};

/**
 * A configured target table as PostgREST describes it, or null when PostgREST
 * does not expose it. PostgREST says nothing about unique constraints other
 * than the primary key, so a configured key that is not the primary key is
 * taken on trust: if no unique constraint backs it, PostgreSQL refuses the
 * upsert (42P10) and the changes are dead-lettered with that error.
 */
export function tableFromOpenApi(document: OpenApiDocument, name: QualifiedName, config: TableConfig): TargetTable | null {
  const definition = document.definitions?.[name.name];
  if (!definition?.properties) return null;
  const columns: TargetColumn[] = [];
  const primaryKey: string[] = [];
  // Parents, so that a batch without a transaction writes them before their children.
  const references: QualifiedName[] = [];
  for (const [column, property] of Object.entries(definition.properties)) {
    const parent = /<fk table='([^']+)'/.exec(property.description ?? '')?.[1];
    if (parent && !references.some((r) => r.name === parent)) references.push({ schema: name.schema ?? 'public', name: parent });
    const format = (property.format ?? '').replace(/\(.*\)$/, '');
    columns.push({ name: column, type: TYPES[format] ?? 'other', generated: false });
    if (property.description?.includes('<pk/>')) primaryKey.push(column);
  }
  const uniqueKeys = primaryKey.length > 0 ? [primaryKey] : [];
  const configured = config.key?.map((k) => resolve(columns, config.columns?.[k] ?? k));
  if (configured && configured.every((c): c is string => c !== undefined) && !sameSet(configured, primaryKey)) {
    uniqueKeys.push(configured);
  }
  return { name: { schema: name.schema ?? 'public', name: name.name }, columns, primaryKey, uniqueKeys, references };
}

function resolve(columns: TargetColumn[], name: string): string | undefined {
  return (columns.find((c) => c.name === name) ?? columns.find((c) => columnMatchKey(c.name) === columnMatchKey(name)))?.name;
}

function sameSet(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((x) => b.includes(x));
}
