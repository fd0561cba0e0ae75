// PostgREST's query-string grammar, the part supabase-js produces for tables:
// PostgREST/postgrest: src/PostgREST/ApiRequest/QueryParams.hs (parse, pOpExpr,
// pListVal/pListElement/pQuotedValue, pLogicTree/pLogicSingleVal, pOrder,
// pFieldName, pColumns). Reserved parameters: select, columns, on_conflict, and
// (possibly embedded) order, limit, offset, and, or.
import { PostgrestError } from './errors.js';

export type SimpleOp = 'eq' | 'neq' | 'gt' | 'gte' | 'lt' | 'lte' | 'like' | 'ilike';
export type Operation = { op: SimpleOp; value: string } | { op: 'in'; values: string[] } | { op: 'is'; value: 'null' | 'true' | 'false' | 'unknown' };
export interface Filter {
  column: string;
  not: boolean;
  operation: Operation;
}
export type LogicTree = { kind: 'filter'; filter: Filter } | { kind: 'and' | 'or'; not: boolean; children: LogicTree[] };
export interface OrderTerm {
  column: string;
  direction: 'asc' | 'desc' | undefined;
  nulls: 'first' | 'last' | undefined;
}
export interface SelectItem {
  column: string;
  alias: string | undefined;
  cast: string | undefined;
}
export interface QueryParams {
  select: SelectItem[];
  filters: Filter[];
  logic: LogicTree[];
  order: OrderTerm[];
  limit: number | undefined;
  offset: number | undefined;
  columns: string[] | undefined;
  onConflict: string[] | undefined;
}

const SIMPLE_OPS = new Set<string>(['eq', 'neq', 'gt', 'gte', 'lt', 'lte', 'like', 'ilike']);
const UNSUPPORTED_OPS = new Set(['cs', 'cd', 'ov', 'sl', 'sr', 'nxr', 'nxl', 'adj', 'match', 'imatch', 'fts', 'plfts', 'phfts', 'wfts', 'isdistinct']);

class Cursor {
  pos = 0;
  constructor(
    readonly text: string,
    readonly what: string,
  ) {}
  get done(): boolean {
    return this.pos >= this.text.length;
  }
  peek(): string {
    return this.text[this.pos] ?? '';
  }
  startsWith(s: string): boolean {
    return this.text.startsWith(s, this.pos);
  }
  expect(s: string): void {
    if (!this.startsWith(s)) this.fail(`expecting "${s}"`);
    this.pos += s.length;
  }
  fail(detail: string): never {
    throw new PostgrestError(400, 'PGRST100', `"failed to parse ${this.what} (${this.text})" (line 1, column ${this.pos + 1})`, `unexpected ${JSON.stringify(this.peek() || 'end of input')} ${detail}`);
  }
  skipSpaces(): void {
    while (this.peek() === ' ' || this.peek() === '\t') this.pos += 1;
  }
  /** `"…"` with backslash escapes (pQuotedValue). */
  quoted(): string {
    this.expect('"');
    let out = '';
    while (!this.done && this.peek() !== '"') {
      if (this.peek() === '\\') this.pos += 1;
      out += this.peek();
      this.pos += 1;
    }
    this.expect('"');
    return out;
  }
  /** pFieldName: a quoted name, or identifier characters (letters, digits, `_`, `$`, space) joined by dashes. */
  fieldName(): string {
    this.skipSpaces();
    if (this.peek() === '"') return this.quoted();
    const start = this.pos;
    while (/[\p{L}\p{N}_$ ]/u.test(this.peek()) || (this.peek() === '-' && this.text[this.pos + 1] !== '>')) this.pos += 1;
    const name = this.text.slice(start, this.pos).trim();
    if (!name) this.fail('expecting field name (* or [a..z0..9_$])');
    return name;
  }
  /** Raw text up to one of `stops`. */
  until(stops: string): string {
    const start = this.pos;
    while (!this.done && !stops.includes(this.peek())) this.pos += 1;
    return this.text.slice(start, this.pos);
  }
  /** A list or logic value: quoted when followed by `,` or `)`, else raw up to `,`/`)`. */
  element(allowArray: boolean): string {
    if (this.peek() === '"') {
      const save = this.pos;
      const value = this.quoted();
      if (this.done || this.peek() === ',' || this.peek() === ')') return value;
      this.pos = save;
    }
    if (allowArray && this.peek() === '{') {
      const start = this.pos;
      this.until('}');
      this.expect('}');
      return this.text.slice(start, this.pos);
    }
    return this.until(',)');
  }
}

/** `op.value`, `not.op.value`, `in.(…)`, `is.null` (pOpExpr); `inLogic` reads values the logic-tree way. */
function opExpr(c: Cursor, inLogic: boolean): { not: boolean; operation: Operation } {
  let not = false;
  if (c.startsWith('not.')) {
    not = true;
    c.pos += 4;
  }
  const name = c.until('.(');
  if (name === 'in') {
    c.expect('.');
    c.skipSpaces();
    c.expect('(');
    const values = [c.element(false)];
    while (c.peek() === ',') {
      c.pos += 1;
      values.push(c.element(false));
    }
    c.skipSpaces();
    c.expect(')');
    return { not, operation: { op: 'in', values } };
  }
  c.expect('.');
  if (name === 'is') {
    const value = c.until(',)').toLowerCase();
    if (!['null', 'true', 'false', 'unknown'].includes(value)) c.fail('expecting null or trilean value (unknown, true, false)');
    return { not, operation: { op: 'is', value: value as 'null' } };
  }
  if (!SIMPLE_OPS.has(name)) {
    if (UNSUPPORTED_OPS.has(name)) throw new PostgrestError(400, 'PGRST127', 'Feature not implemented', `the PostgREST stand-in does not implement the ${name} operator`);
    c.fail(`unknown single value operator ${name}`);
  }
  const value = inLogic ? c.element(true) : c.text.slice(c.pos);
  if (!inLogic) c.pos = c.text.length;
  return { not, operation: { op: name as SimpleOp, value } };
}

/** pLogicTree: `and(…)`/`or(…)`/`not.or(…)` of filters and nested trees. */
function logicTree(c: Cursor): LogicTree {
  c.skipSpaces();
  const save = c.pos;
  const not = c.startsWith('not.');
  if (not) c.pos += 4;
  for (const kind of ['and', 'or'] as const) {
    if (c.startsWith(`${kind}(`)) {
      c.pos += kind.length + 1;
      const children = [logicTree(c)];
      while (c.peek() === ',') {
        c.pos += 1;
        children.push(logicTree(c));
      }
      c.skipSpaces();
      c.expect(')');
      return { kind, not, children };
    }
  }
  c.pos = save;
  const column = c.fieldName();
  c.expect('.');
  const expr = opExpr(c, true);
  return { kind: 'filter', filter: { column, ...expr } };
}

function list<T>(c: Cursor, item: () => T): T[] {
  const items = [item()];
  while (c.peek() === ',') {
    c.pos += 1;
    items.push(item());
  }
  if (!c.done) c.fail('expecting "," or end of input');
  return items;
}

function selectItem(c: Cursor): SelectItem {
  c.skipSpaces();
  if (c.peek() === '*') {
    c.pos += 1;
    return { column: '*', alias: undefined, cast: undefined };
  }
  let column = c.fieldName();
  let alias: string | undefined;
  if (c.peek() === ':' && c.text[c.pos + 1] !== ':') {
    c.pos += 1;
    alias = column;
    column = c.fieldName();
  }
  if (c.peek() === '(') throw new PostgrestError(400, 'PGRST127', 'Feature not implemented', 'the PostgREST stand-in does not embed resources');
  let cast: string | undefined;
  if (c.startsWith('::')) {
    c.pos += 2;
    cast = c.until(',');
    if (!/^[A-Za-z0-9_ ]+$/.test(cast)) c.fail('expecting letter or digit');
  }
  return { column, alias, cast };
}

function orderTerm(c: Cursor): OrderTerm {
  const column = c.fieldName();
  let direction: OrderTerm['direction'];
  let nulls: OrderTerm['nulls'];
  while (c.peek() === '.') {
    c.pos += 1;
    const word = c.until('.,');
    if (word === 'asc' || word === 'desc') direction = word;
    else if (word === 'nullsfirst' || word === 'nullslast') nulls = word === 'nullsfirst' ? 'first' : 'last';
    else c.fail('expecting "asc", "desc", "nullsfirst" or "nullslast"');
  }
  return { column, direction, nulls };
}

export function parseQueryParams(search: URLSearchParams): QueryParams {
  const params: QueryParams = {
    select: [{ column: '*', alias: undefined, cast: undefined }],
    filters: [],
    logic: [],
    order: [],
    limit: undefined,
    offset: undefined,
    columns: undefined,
    onConflict: undefined,
  };
  for (const [key, value] of search) {
    if (value === '') continue;
    const last = key.split('.').at(-1)!;
    if (key === 'select') {
      const c = new Cursor(value, 'select parameter');
      params.select = list(c, () => selectItem(c));
    } else if (key === 'columns' || key === 'on_conflict') {
      const c = new Cursor(value, `${key} parameter`);
      params[key === 'columns' ? 'columns' : 'onConflict'] = list(c, () => c.fieldName());
    } else if (['order', 'limit', 'offset', 'and', 'or'].includes(last)) {
      const path = key.split('.').filter((p) => p !== 'not');
      if (path.length > 1) throw new PostgrestError(400, 'PGRST127', 'Feature not implemented', 'the PostgREST stand-in does not embed resources');
      if (last === 'limit' || last === 'offset') {
        const n = Number(value);
        if (Number.isInteger(n) && n >= 0) params[last] = n;
      } else if (last === 'order') {
        const c = new Cursor(value, 'order');
        params.order.push(...list(c, () => orderTerm(c)));
      } else {
        const c = new Cursor(`${key.startsWith('not.') ? 'not.' : ''}${last}${value}`, 'logic tree');
        params.logic.push(logicTree(c));
        if (!c.done) c.fail('expecting end of input');
      }
    } else if (!key.includes('.')) {
      if (!/^(not\.)?(eq|neq|gt|gte|lt|lte|like|ilike|in|is|cs|cd|ov|sl|sr|nxr|nxl|adj|match|imatch|isdistinct|[pw]?l?fts|phfts)[.(]/.test(value)) continue; // not a filter
      const c = new Cursor(value, `filter (${value})`);
      params.filters.push({ column: new Cursor(key, 'tree path').fieldName(), ...opExpr(c, false) });
    } else {
      throw new PostgrestError(400, 'PGRST127', 'Feature not implemented', 'the PostgREST stand-in does not embed resources');
    }
  }
  return params;
}

