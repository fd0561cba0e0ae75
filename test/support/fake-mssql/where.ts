import { collate, type Row } from './fake-cdc.js';

/**
 * The condition of `cdc-sync snapshot --where` as the SQL Server stand-ins
 * evaluate it on their in-memory rows. SQL Server runs any T-SQL predicate
 * in the page statement (`… WHERE (<key after>) AND (<condition>)`); the
 * stand-in knows a small part of the grammar, and refuses the rest rather
 * than let a test pass on a condition it did not understand:
 * `column [% n] (= | <> | != | < | <= | > | >=) literal`, `column IS [NOT] NULL`,
 * AND, OR, NOT and parentheses; a literal is a number or a quoted string
 * (N'…' too). Columns may be bracketed. Text compares as the default
 * collation does (without case, see `collate`).
 * https://learn.microsoft.com/en-us/sql/t-sql/queries/search-condition-transact-sql
 */
export function rowFilter(where: string): (row: Row) => boolean {
  const tokens = where.match(/\s*(N?'(?:[^']|'')*'|\[[^\]]+\]|[A-Za-z_][\w]*|-?\d+(?:\.\d+)?|<>|!=|<=|>=|[=<>%()])/gy);
  if (!tokens || tokens.join('').replace(/\s/g, '') !== where.replace(/\s/g, '')) throw unsupported(where);
  const list = tokens.map((t) => t.trim());
  let at = 0;
  const peek = () => list[at]?.toUpperCase();
  const take = () => list[at++]!;
  const expect = (t: string) => {
    if (peek() !== t) throw unsupported(where);
    at += 1;
  };
  type Test = (row: Row) => boolean;
  const or = (): Test => {
    const parts = [and()];
    while (peek() === 'OR') (at += 1), parts.push(and());
    return (row) => parts.some((p) => p(row));
  };
  const and = (): Test => {
    const parts = [not()];
    while (peek() === 'AND') (at += 1), parts.push(not());
    return (row) => parts.every((p) => p(row));
  };
  const not = (): Test => {
    if (peek() === 'NOT') {
      at += 1;
      const inner = not();
      return (row) => !inner(row);
    }
    if (peek() === '(') {
      at += 1;
      const inner = or();
      expect(')');
      return inner;
    }
    return comparison();
  };
  const comparison = (): Test => {
    const name = take()?.replace(/^\[|\]$/g, '');
    if (!name || !/^[\w ]+$/.test(name)) throw unsupported(where);
    let modulo: number | undefined;
    if (peek() === '%') (at += 1), (modulo = Number(take()));
    if (peek() === 'IS') {
      at += 1;
      const negated = peek() === 'NOT' ? (at += 1) > 0 : false;
      expect('NULL');
      return (row) => (row[name] === null || row[name] === undefined) !== negated;
    }
    const op = take();
    const literal = literalValue(take(), where);
    const value = (row: Row) => (modulo === undefined ? row[name] : Number(row[name]) % modulo);
    const compare: Record<string, (d: number) => boolean> = { '=': (d) => d === 0, '<>': (d) => d !== 0, '!=': (d) => d !== 0, '<': (d) => d < 0, '<=': (d) => d <= 0, '>': (d) => d > 0, '>=': (d) => d >= 0 };
    const test = compare[op ?? ''];
    if (!test) throw unsupported(where);
    // A comparison with NULL is unknown: the row is left out.
    return (row) => value(row) !== null && value(row) !== undefined && test(collate(value(row), literal));
  };
  const filter = or();
  if (at !== list.length) throw unsupported(where);
  return filter;
}

function literalValue(token: string | undefined, where: string): unknown {
  if (token === undefined) throw unsupported(where);
  if (/^N?'/.test(token)) return token.replace(/^N?'|'$/g, '').replace(/''/g, "'");
  if (/^-?\d+(\.\d+)?$/.test(token)) return Number(token);
  throw unsupported(where);
}

function unsupported(where: string): Error {
  return new Error(`the SQL Server stand-in does not evaluate this --where condition (see test/support/fake-mssql/where.ts): ${where}`);
}

/** The rows of a page statement's condition, after checking the statement carries it as the snapshot reader writes it. */
export function pageFilter(meta: Record<string, string> | undefined, sql: string): (row: Row) => boolean {
  const where = meta?.where;
  if (where === undefined) return () => true;
  if (!sql.includes(`(${where})`)) throw new Error(`the page statement does not carry its --where condition: ${sql}`);
  return rowFilter(where);
}
