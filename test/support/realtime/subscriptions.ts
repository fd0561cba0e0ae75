// postgres_changes bindings: the ids the server hands back at join and puts into every
// change message, and the parsing of one `config.postgres_changes` entry into a subscription.
import { createHash } from 'node:crypto';

export type Action = '*' | 'INSERT' | 'UPDATE' | 'DELETE';

export interface Filter {
  column: string;
  op: FilterOp;
  /** As Realtime stores it: `in.(a,b)` becomes the array literal `{a,b}`. */
  value: string;
}

/** Parsed like Subscriptions.parse_subscription_params/1 (schema/table '*' = wildcard). */
export interface SubscriptionParams {
  action: Action;
  schema: string;
  table: string;
  filters: Filter[];
}

// The operators realtime-js documents for postgres_changes filters. Newer servers also accept
// like/ilike/is/match/imatch/isdistinct and a `not.` prefix (supabase/realtime
// lib/extensions/postgres_cdc_rls/subscriptions.ex @filter_types); this stand-in does not.
export const FILTER_OPS = ['eq', 'neq', 'lt', 'lte', 'gt', 'gte', 'in'] as const;
export type FilterOp = (typeof FILTER_OPS)[number];

/**
 * The binding id. Realtime uses `:erlang.phash2(params)` of the client's raw binding map
 * (supabase/realtime lib/realtime_web/channels/realtime_channel.ex, add_id_to_postgres_changes
 * and postgres_cdc_subscribe): an integer in [0, 2^27), equal for equal params, the same in
 * the join reply and in every message's `ids`. This is a stable hash with the same range and
 * properties, not Erlang's phash2 itself (the client only compares ids for equality).
 */
export function bindingId(params: unknown): number {
  const digest = createHash('sha1').update(canonicalJson(params)).digest();
  return digest.readUInt32BE(0) % 2 ** 27;
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value ?? null);
}

export type ParseResult = { ok: true; value: SubscriptionParams } | { ok: false; error: string };

/** Follows Subscriptions.parse_subscription_params/1 (same cases, same error texts). */
export function parseSubscriptionParams(params: Record<string, unknown>): ParseResult {
  const action = actionFilter(params.event);
  const { schema, table, filter } = params;
  const has = (key: string) => Object.prototype.hasOwnProperty.call(params, key);
  const ok = (s: string, t: string, filters: Filter[] = []): ParseResult => ({
    ok: true,
    value: { action, schema: s, table: t, filters },
  });

  if (typeof schema === 'string' && typeof table === 'string' && typeof filter === 'string') {
    const parsed = parseFilters(filter);
    return 'error' in parsed ? { ok: false, error: `Error parsing \`filter\` params: ${parsed.error}` } : ok(schema, table, parsed.filters);
  }
  if (typeof schema === 'string' && typeof table === 'string' && !has('filter')) return ok(schema, table);
  if (typeof schema === 'string' && !has('table') && !has('filter')) return ok(schema, '*');
  if (typeof table === 'string' && !has('schema') && !has('filter')) return ok('public', table);
  return {
    ok: false,
    error: `No subscription params provided. Please provide at least a \`schema\` or \`table\` to subscribe to: ${inspectMap(params)}`,
  };
}

function actionFilter(event: unknown): Action {
  if (typeof event !== 'string') return '*';
  const upper = event.toUpperCase();
  return upper === 'INSERT' || upper === 'UPDATE' || upper === 'DELETE' ? upper : '*';
}

/** `col=op.value[,col=op.value…]`; commas inside `in.(…)` do not split (AND composition). */
function parseFilters(filter: string): { filters: Filter[] } | { error: string } {
  const trimmed = filter.trim();
  if (trimmed === '') return { filters: [] };
  const segments: string[] = [];
  let depth = 0;
  let current = '';
  for (const ch of trimmed) {
    if (ch === '(') depth++;
    if (ch === ')') depth = Math.max(0, depth - 1);
    if (ch === ',' && depth === 0) {
      segments.push(current);
      current = '';
    } else current += ch;
  }
  segments.push(current);

  const filters: Filter[] = [];
  for (const segment of segments) {
    const eq = segment.indexOf('=');
    if (eq < 0) return { error: inspectList([segment]) };
    const column = segment.slice(0, eq);
    const rest = segment.slice(eq + 1);
    const dot = rest.indexOf('.');
    if (dot < 0) return { error: inspectList([rest]) };
    const op = rest.slice(0, dot);
    let value = rest.slice(dot + 1);
    if (!(FILTER_OPS as readonly string[]).includes(op)) return { error: inspectList([op, value]) };
    if (op === 'in') {
      if (!/^\(.*\)$/.test(value)) return { error: inspectList([op, value]) };
      value = `{${value.slice(1, -1)}}`;
    }
    filters.push({ column, op: op as FilterOp, value });
  }
  return { filters };
}

// Elixir `inspect/1` look-alikes for the error texts Realtime sends in system messages.
const inspectList = (items: string[]) => `[${items.map((s) => JSON.stringify(s)).join(', ')}]`;

function inspectMap(map: Record<string, unknown>): string {
  const entries = Object.entries(map).map(([k, v]) => `${JSON.stringify(k)} => ${typeof v === 'string' ? JSON.stringify(v) : JSON.stringify(v) ?? 'nil'}`);
  return `%{${entries.join(', ')}}`;
}

/** As Subscriptions.params_to_log/1 formats them in "Unable to subscribe …" errors. */
export function describeParams(p: SubscriptionParams): string {
  const filters = `[${p.filters.map((f) => `{${JSON.stringify(f.column)}, ${JSON.stringify(f.op)}, ${JSON.stringify(f.value)}, false}`).join(', ')}]`;
  return `event: ${p.action}, schema: ${p.schema}, table: ${p.table}, filters: ${filters}, select: nil`;
}
