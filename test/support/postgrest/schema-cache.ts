// The stand-in's schema cache: tables, views and columns of the exposed
// schemas, read once like PostgREST does at start (and again on reloadSchema(),
// PostgREST's `NOTIFY pgrst, 'reload schema'`). Column types are written the
// way PostgREST's schema cache query writes `data_type`: built-in types (and
// domains over them) without modifiers, other types with them
// (PostgREST/postgrest: src/PostgREST/SchemaCache.hs, allColumns).
import type pg from 'pg';

export interface CachedColumn {
  name: string;
  type: string;
  nullable: boolean;
  default: string | null;
  primaryKey: boolean;
  /** The table and column a one-column foreign key of this column references. */
  references: { table: string; column: string } | null;
}

export interface CachedTable {
  schema: string;
  name: string;
  columns: CachedColumn[];
  primaryKey: string[];
}

const COLUMNS_SQL = `
SELECT n.nspname AS schema, c.relname AS table, a.attname AS name,
       CASE WHEN t.typtype = 'd' AND bt.typnamespace = 'pg_catalog'::regnamespace THEN format_type(t.typbasetype, NULL)
            WHEN t.typnamespace = 'pg_catalog'::regnamespace THEN format_type(a.atttypid, NULL)
            ELSE format_type(a.atttypid, a.atttypmod) END AS type,
       NOT a.attnotnull AS nullable,
       pg_get_expr(d.adbin, d.adrelid) AS default,
       coalesce(a.attnum = ANY (pk.conkey), false) AS primary_key,
       (SELECT json_build_object('table', rc.relname, 'column', ra.attname)
          FROM pg_constraint fk JOIN pg_class rc ON rc.oid = fk.confrelid
          JOIN pg_attribute ra ON ra.attrelid = fk.confrelid AND ra.attnum = fk.confkey[1]
         WHERE fk.conrelid = c.oid AND fk.contype = 'f' AND fk.conkey = ARRAY[a.attnum] LIMIT 1) AS references
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  JOIN pg_type t ON t.oid = a.atttypid
  LEFT JOIN pg_type bt ON t.typtype = 'd' AND bt.oid = t.typbasetype
  LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
  LEFT JOIN pg_constraint pk ON pk.conrelid = c.oid AND pk.contype = 'p'
 WHERE c.relkind IN ('r', 'v', 'm', 'f', 'p') AND n.nspname = ANY ($1)
 ORDER BY n.nspname, c.relname, a.attnum`;

export async function loadSchemaCache(pool: pg.Pool, schemas: string[]): Promise<Map<string, CachedTable>> {
  const result = await pool.query<{
    schema: string;
    table: string;
    name: string;
    type: string;
    nullable: boolean;
    default: string | null;
    primary_key: boolean;
    references: { table: string; column: string } | null;
  }>(
    COLUMNS_SQL,
    [schemas],
  );
  const tables = new Map<string, CachedTable>();
  for (const row of result.rows) {
    const id = `${row.schema}.${row.table}`;
    let table = tables.get(id);
    if (!table) {
      table = { schema: row.schema, name: row.table, columns: [], primaryKey: [] };
      tables.set(id, table);
    }
    table.columns.push({ name: row.name, type: row.type, nullable: row.nullable, default: row.default, primaryKey: row.primary_key, references: row.references });
    if (row.primary_key) table.primaryKey.push(row.name);
  }
  return tables;
}

const SWAGGER_TYPES: Record<string, string> = {
  'character varying': 'string',
  character: 'string',
  text: 'string',
  boolean: 'boolean',
  smallint: 'integer',
  integer: 'integer',
  bigint: 'integer',
  numeric: 'number',
  real: 'number',
  'double precision': 'number',
};

/**
 * The OpenAPI root (`GET /rest/v1/`): Swagger 2.0 with one definition per
 * table of the schema, properties in column order, `format` = column type,
 * primary keys noted with "<pk/>" and one-column foreign keys with
 * "<fk table='…' column='…'/>" (PostgREST/postgrest: src/PostgREST/Response/OpenAPI.hs,
 * makeTableDef, makeProperty, toSwaggerType). Paths are listed without
 * their parameters: cdc-sync reads only the definitions.
 */
export function openApiDocument(tables: Iterable<CachedTable>, schema: string, host: string): object {
  const definitions: Record<string, object> = {};
  const paths: Record<string, object> = { '/': { get: { tags: ['Introspection'], summary: 'OpenAPI description (this document)' } } };
  for (const table of tables) {
    if (table.schema !== schema) continue;
    const properties: Record<string, object> = {};
    for (const column of table.columns) {
      const type = column.type.endsWith('[]') ? 'array' : column.type === 'json' || column.type === 'jsonb' ? undefined : (SWAGGER_TYPES[column.type] ?? 'string');
      const notes = [
        ...(column.primaryKey ? ['This is a Primary Key.<pk/>'] : []),
        ...(column.references ? [`This is a Foreign Key to \`${column.references.table}.${column.references.column}\`.<fk table='${column.references.table}' column='${column.references.column}'/>`] : []),
      ];
      properties[column.name] = {
        format: column.type,
        ...(type ? { type } : {}),
        ...(notes.length > 0 ? { description: `Note:\n${notes.join('\n')}` } : {}),
      };
    }
    definitions[table.name] = { type: 'object', required: table.columns.filter((c) => !c.nullable).map((c) => c.name), properties };
    paths[`/${table.name}`] = { get: { tags: [table.name] }, post: { tags: [table.name] }, patch: { tags: [table.name] }, delete: { tags: [table.name] } };
  }
  return {
    swagger: '2.0',
    info: { title: 'PostgREST API (cdc-sync test stand-in)', version: '12.2.0' },
    host,
    basePath: '/',
    schemes: ['http'],
    consumes: ['application/json', 'application/vnd.pgrst.object+json', 'text/csv'],
    produces: ['application/json', 'application/vnd.pgrst.object+json', 'text/csv'],
    paths,
    definitions,
  };
}
