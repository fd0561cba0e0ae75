// Parsed requests as parameterized SQL, shaped like PostgREST's own statements
// (PostgREST/postgrest: src/PostgREST/Query/QueryBuilder.hs readPlanToQuery and
// mutatePlanToQuery; src/PostgREST/Query/SqlFragment.hs pgFmtFilter, orderF,
// fromJsonBodyF; src/PostgREST/Query/Statements.hs: a mutation runs in a CTE
// `pgrst_source` and the response body is json_agg of its rows). Every value is
// a bound parameter sent untyped, so PostgreSQL reads it with the column's type,
// as PostgREST's unknown-typed literals are.
import { PostgrestError, columnNotFound } from './errors.js';
import type { Filter, LogicTree, OrderTerm, QueryParams, SelectItem } from './query-string.js';
import type { CachedTable } from './schema-cache.js';

export interface Statement {
  sql: string;
  params: unknown[];
}

export interface Prefer {
  return: string | undefined;
  resolution: string | undefined;
  count: string | undefined;
  missing: string | undefined;
}

/** `Prefer: return=minimal, resolution=merge-duplicates, count=exact` (several headers arrive comma-joined). */
export function parsePrefer(header: string | string[] | undefined): Prefer {
  const prefer: Prefer = { return: undefined, resolution: undefined, count: undefined, missing: undefined };
  for (const part of [header ?? ''].flat().join(',').split(',')) {
    const [key, value] = part.trim().split('=');
    if (key && value && key in prefer) prefer[key as keyof Prefer] = value.trim();
  }
  return prefer;
}

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

export function quoteTable(table: CachedTable): string {
  return `${quoteIdent(table.schema)}.${quoteIdent(table.name)}`;
}

class Params {
  readonly values: unknown[] = [];
  add(value: unknown): string {
    this.values.push(value);
    return `$${this.values.length}`;
  }
}

const OPERATORS = { eq: '=', neq: '<>', gt: '>', gte: '>=', lt: '<', lte: '<=', like: 'LIKE', ilike: 'ILIKE' } as const;

function filterSql(qualifier: string, filter: Filter, p: Params): string {
  const column = `${qualifier}.${quoteIdent(filter.column)}`;
  const { operation } = filter;
  let sql: string;
  if (operation.op === 'in') sql = `${column} = ANY (${p.add(operation.values)})`;
  else if (operation.op === 'is') sql = `${column} IS ${operation.value.toUpperCase()}`;
  else {
    // like/ilike take `*` as the wildcard (URL-friendly) and PostgREST turns it into `%`.
    const value = operation.op === 'like' || operation.op === 'ilike' ? operation.value.replace(/\*/g, '%') : operation.value;
    sql = `${column} ${OPERATORS[operation.op]} ${p.add(value)}`;
  }
  return filter.not ? `NOT (${sql})` : sql;
}

function logicSql(qualifier: string, tree: LogicTree, p: Params): string {
  if (tree.kind === 'filter') return filterSql(qualifier, tree.filter, p);
  const inner = `(${tree.children.map((c) => logicSql(qualifier, c, p)).join(tree.kind === 'and' ? ' AND ' : ' OR ')})`;
  return tree.not ? `NOT ${inner}` : inner;
}

function whereSql(qualifier: string, q: QueryParams, p: Params): string {
  const parts = [...q.filters.map((f) => filterSql(qualifier, f, p)), ...q.logic.map((t) => logicSql(qualifier, t, p))];
  return parts.length > 0 ? ` WHERE ${parts.join(' AND ')}` : '';
}

function orderSql(qualifier: string, order: OrderTerm[]): string {
  if (order.length === 0) return '';
  const terms = order.map((o) => {
    const direction = o.direction ? ` ${o.direction.toUpperCase()}` : '';
    const nulls = o.nulls ? ` NULLS ${o.nulls.toUpperCase()}` : '';
    return `${qualifier}.${quoteIdent(o.column)}${direction}${nulls}`;
  });
  return ` ORDER BY ${terms.join(', ')}`;
}

function selectSql(qualifier: string, items: SelectItem[]): string {
  return items
    .map((item) => {
      if (item.column === '*') return `${qualifier}.*`;
      const column = `${qualifier}.${quoteIdent(item.column)}`;
      const value = item.cast ? `CAST(${column} AS ${item.cast})` : column;
      return `${value} AS ${quoteIdent(item.alias ?? item.column)}`;
    })
    .join(', ');
}

/** GET: the page as one JSON array and its row count. */
export function readStatement(table: CachedTable, q: QueryParams, range: { offset: number; limit: number | undefined }): Statement {
  const p = new Params();
  const t = quoteTable(table);
  const limit = range.limit === undefined ? '' : ` LIMIT ${range.limit}`;
  const offset = range.offset > 0 ? ` OFFSET ${range.offset}` : '';
  const inner = `SELECT ${selectSql(t, q.select)} FROM ${t}${whereSql(t, q, p)}${orderSql(t, q.order)}${limit}${offset}`;
  return { sql: `SELECT coalesce(json_agg(_pgrst_t), '[]')::text AS body, count(*)::int AS n FROM (${inner}) _pgrst_t`, params: p.values };
}

/** Prefer: count=exact on GET: the total without the page. */
export function countStatement(table: CachedTable, q: QueryParams): Statement {
  const p = new Params();
  const t = quoteTable(table);
  return { sql: `SELECT count(*)::int AS n FROM ${t}${whereSql(t, q, p)}`, params: p.values };
}

/**
 * The statement in a CTE, its rows as the body; `inserted` counts the rows an
 * upsert inserted rather than updated (a new row version's xmax is 0), which
 * PostgREST answers 201 rather than 200.
 */
function mutation(table: CachedTable, q: QueryParams, statement: string, representation: boolean): string {
  const t = quoteTable(table);
  const body = representation ? `coalesce(json_agg(_pgrst_t), '[]')::text` : 'NULL::text';
  const columns = table.columns.map((c) => quoteIdent(c.name)).join(', ');
  return (
    `WITH pgrst_mutated AS (${statement} RETURNING ${t}.*, ${t}.xmax = 0 AS "pgrst inserted"), ` +
    `pgrst_source AS (SELECT ${columns} FROM pgrst_mutated) ` +
    `SELECT count(*)::int AS n, (SELECT count(*) FROM pgrst_mutated WHERE "pgrst inserted")::int AS inserted, ${body} AS body ` +
    `FROM (SELECT ${selectSql('pgrst_source', q.select)} FROM pgrst_source) _pgrst_t`
  );
}

export function requireColumns(table: CachedTable, columns: string[]): void {
  for (const column of columns) {
    if (!table.columns.some((c) => c.name === column)) throw columnNotFound(table.name, column);
  }
}

/**
 * POST: rows expanded against the table's row type (PostgREST uses
 * json_to_recordset with the cached column types; json_populate_recordset
 * with the table type reads values the same way), then ON CONFLICT per
 * `resolution`: merge-duplicates updates every sent column with EXCLUDED,
 * ignore-duplicates does nothing.
 */
export function insertStatement(table: CachedTable, q: QueryParams, rowsJson: string, columns: string[], prefer: Prefer): Statement {
  const p = new Params();
  const t = quoteTable(table);
  const cols = columns.map(quoteIdent).join(', ');
  let sql = `INSERT INTO ${t} (${cols}) SELECT ${cols} FROM json_populate_recordset(NULL::${t}, ${p.add(rowsJson)}::json) pgrst_body`;
  if (prefer.resolution === 'merge-duplicates' || prefer.resolution === 'ignore-duplicates') {
    const conflict = q.onConflict ?? table.primaryKey;
    requireColumns(table, conflict);
    if (conflict.length === 0) throw new PostgrestError(400, '42P10', 'there is no unique or exclusion constraint matching the ON CONFLICT specification');
    sql += ` ON CONFLICT (${conflict.map(quoteIdent).join(', ')}) `;
    sql +=
      prefer.resolution === 'ignore-duplicates'
        ? 'DO NOTHING'
        : `DO UPDATE SET ${columns.map((c) => `${quoteIdent(c)} = EXCLUDED.${quoteIdent(c)}`).join(', ')}`;
  }
  return { sql: mutation(table, q, sql, prefer.return === 'representation'), params: p.values };
}

/** PATCH: the body's columns set on every row the filters match. */
export function updateStatement(table: CachedTable, q: QueryParams, rowJson: string, columns: string[], prefer: Prefer): Statement {
  const p = new Params();
  const t = quoteTable(table);
  const set = columns.map((c) => `${quoteIdent(c)} = pgrst_body.${quoteIdent(c)}`).join(', ');
  const sql = `UPDATE ${t} SET ${set} FROM (SELECT * FROM json_populate_record(NULL::${t}, ${p.add(rowJson)}::json)) pgrst_body${whereSql(t, q, p)}`;
  return { sql: mutation(table, q, sql, prefer.return === 'representation'), params: p.values };
}

export function deleteStatement(table: CachedTable, q: QueryParams, prefer: Prefer): Statement {
  const p = new Params();
  const t = quoteTable(table);
  const sql = `DELETE FROM ${t}${whereSql(t, q, p)}`;
  return { sql: mutation(table, q, sql, prefer.return === 'representation'), params: p.values };
}

/** Supabase loads pg-safeupdate for PostgREST: UPDATE and DELETE need a WHERE clause (21000 → 400). */
export function requireFilters(q: QueryParams, verb: 'UPDATE' | 'DELETE'): void {
  if (q.filters.length === 0 && q.logic.length === 0) throw new PostgrestError(400, '21000', `${verb} requires a WHERE clause`);
}
