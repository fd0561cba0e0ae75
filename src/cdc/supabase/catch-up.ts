import type { SupabaseClient } from '@supabase/supabase-js';
import type { Row, Value } from '../../core/change-event.js';
import { ConfigError, TransientError } from '../../core/errors.js';
import { JsonText } from '../../core/json.js';
import type { OpenApiDocument } from '../../db/supabase/introspect.js';
import type { Watermark } from './realtime-position.js';

export interface CatchUpTable {
  /** schema.table as configured */
  source: string;
  schema: string;
  name: string;
  key: string[];
  updatedAt: string;
  /** Its json and jsonb columns (learnJsonColumns): read as their text, so their values arrive as written (JsonText). */
  json?: string[];
}

/**
 * Each table's json and jsonb columns, from PostgREST's OpenAPI root of its
 * schema (a property's `format` is the column's type: PostgREST/postgrest,
 * src/PostgREST/Response/OpenAPI.hs). Names PostgREST's select syntax takes
 * unquoted only; others are read as parsed JSON.
 */
export async function learnJsonColumns(tables: CatchUpTable[], describe: (schema: string) => Promise<OpenApiDocument>): Promise<void> {
  const documents = new Map<string, OpenApiDocument>();
  for (const table of tables) {
    let document = documents.get(table.schema);
    if (!document) documents.set(table.schema, (document = await describe(table.schema)));
    const properties = document.definitions?.[table.name]?.properties ?? {};
    table.json = Object.keys(properties).filter((c) => /^jsonb?$/.test(properties[c]!.format ?? '') && /^[A-Za-z_][A-Za-z0-9_]*$/.test(c));
  }
}

/** `*`, and each json column again as its text under an alias of its own (PostgREST casts: `alias:column::text`). */
function selectList(table: CatchUpTable): string {
  return ['*', ...(table.json ?? []).map((c, i) => `${JSON_ALIAS}${i}:${c}::text`)].join(',');
}

const JSON_ALIAS = 'cdc_sync_json_';

/**
 * Rows with each json column's text (the alias) in the column's place, as
 * JsonText. A JSON `null` is SQL NULL, as Realtime's record writes both alike.
 */
function withJsonText(rows: Row[], table: CatchUpTable): Row[] {
  const json = table.json ?? [];
  if (json.length === 0) return rows;
  for (const row of rows) {
    json.forEach((column, i) => {
      const text = row[`${JSON_ALIAS}${i}`];
      delete row[`${JSON_ALIAS}${i}`];
      if (column in row) row[column] = typeof text === 'string' && text !== 'null' ? new JsonText(text) : null;
    });
  }
  return rows;
}

/**
 * Keyset read through PostgREST of the rows changed after a watermark:
 * `(updated_at, key) > (at, key)` in that order, `limit` rows a request,
 * and never rows newer than `cutoff` — a transaction that started earlier
 * may still commit with an older updated_at, so the newest seconds are left
 * to the next read.
 */
export async function readChangedRows(
  client: SupabaseClient,
  table: CatchUpTable,
  after: Watermark,
  cutoff: string,
  limit: number,
): Promise<{ rows: Row[]; last: Watermark | null }> {
  let query = client
    .schema(table.schema)
    .from(table.name)
    .select(selectList(table))
    .lt(table.updatedAt, cutoff)
    .order(table.updatedAt, { ascending: true });
  if (after.at) query = query.or(keysetFilter(table, after));
  // One more logic tree: PostgREST ANDs it with the keyset's (each `or` parameter is a condition of its own).
  if (after.where) query = query.or(`and(${after.where})`);
  for (const k of table.key) query = query.order(k, { ascending: true });
  const { data, error } = await query.limit(limit);
  if (error) throw error;
  const rows = withJsonText((data ?? []) as unknown as Row[], table);
  const lastRow = rows.at(-1);
  return {
    rows,
    last: lastRow ? { at: String(lastRow[table.updatedAt]), key: table.key.map((k) => (lastRow[k] ?? null) as Value) } : null,
  };
}

/**
 * PostgREST logic tree for "after the watermark": updated_at greater, or
 * equal with a greater key (lexicographic over the key columns). Values are
 * double-quoted: timestamps contain `.` and `:`, reserved in the syntax.
 * https://postgrest.org/en/stable/references/api/tables_views.html#logical-operators
 */
export function keysetFilter(table: CatchUpTable, after: Watermark): string {
  const quote = (v: Value) => `"${String(v).replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
  const branches = [`${table.updatedAt}.gt.${quote(after.at)}`];
  table.key.forEach((k, i) => {
    if (after.key.length <= i) return;
    const equal = [`${table.updatedAt}.eq.${quote(after.at)}`, ...table.key.slice(0, i).map((p, j) => `${p}.eq.${quote(after.key[j]!)}`)];
    branches.push(`and(${[...equal, `${k}.gt.${quote(after.key[i]!)}`].join(',')})`);
  });
  return branches.join(',');
}

/**
 * `cdc-sync snapshot --where` for a source read through PostgREST: its
 * filters, not SQL, as the parameter `and=(…)` takes them (comma: all hold;
 * `or(…)` groups alternatives).
 * https://postgrest.org/en/stable/references/api/tables_views.html#logical-operators
 */
export function checkPostgrestWhere(where: string | undefined): void {
  if (where === undefined) return;
  const filter = /^(not\.)?((and|or)\(|[A-Za-z_][\w$]*(->>?[\w$']+)*\.(not\.)?(eq|neq|gt|gte|lt|lte|like|ilike|match|imatch|in|is|isdistinct|fts|plfts|phfts|wfts|cs|cd|ov|sl|sr|nxr|nxl|adj)(\(\w+\))?\.)/;
  if (!filter.test(where.trim())) {
    throw new ConfigError(
      `--where: a supabase-realtime source reads through PostgREST and takes its filters, not SQL: e.g. status.eq.active, or and(region.eq.eu,total.gt.100) (got: ${where})`,
    );
  }
}

/** The row of one key (a record Realtime cut down); null when it is gone. */
export async function readRowByKey(client: SupabaseClient, table: CatchUpTable, key: Row, stream: string): Promise<Row | null> {
  let query = client.schema(table.schema).from(table.name).select(selectList(table));
  for (const k of table.key) query = query.eq(k, key[k] as string);
  const { data, error } = await query.limit(1);
  if (error) throw new TransientError(`reading ${table.source} by key failed: ${error.message}`, { context: { stream, table: table.source } });
  return withJsonText((data ?? []) as unknown as Row[], table)[0] ?? null;
}
