import { groupStatements } from '../statement-groups.js';
import type { ChangeEvent, Row, Value } from '../../core/change-event.js';
import { JsonText, rawJsonMarker } from '../../core/json.js';

/**
 * How a batch becomes PostgREST requests: rows and keys in PostgREST's JSON
 * and query syntax, cut into chunks every hop on the way accepts.
 */
export interface ChunkLimits {
  /** Rows per upsert request. Supabase's max_rows default is 1,000. */
  maxRows: number;
  /** JSON body bytes per upsert request (API gateways cap bodies). */
  maxBodyBytes: number;
  /** Encoded characters of one delete filter; supabase-js warns past 8,000 for the whole URL. */
  maxFilterChars: number;
}

export const DEFAULT_LIMITS: ChunkLimits = { maxRows: 1000, maxBodyBytes: 1_000_000, maxFilterChars: 6000 };

export interface RequestGroup {
  table: string;
  op: 'delete' | 'upsert' | 'truncate';
  events: ChangeEvent[];
}

/**
 * Consecutive changes of one table and kind, split by column set: supabase-js
 * sends the union of the rows' keys as `columns`, and PostgREST writes NULL
 * for a listed column a row lacks, so rows of different shapes never share a
 * request. Batch order (deletes children-first, upserts parents-first) is kept.
 */
export function groupRequests(changes: ChangeEvent[]): RequestGroup[] {
  return groupStatements(changes);
}

/**
 * A row as PostgREST reads it: PostgREST builds rows with json_to_recordset
 * against the column types (PostgREST/postgrest: src/PostgREST/Query/SqlFragment.hs,
 * fromJsonBodyF), so a JSON string goes through the column's input function.
 * Exact numbers therefore travel as strings, binary as bytea hex (`\x…`),
 * and a json value as its own text (a JSON `null` there is SQL NULL to PostgREST).
 */
export function toJsonRow(row: Row): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const column in row) out[column] = jsonValue(row[column] ?? null);
  return out;
}

function jsonValue(value: Value): unknown {
  // supabase-js stringifies the rows; losslessFetch puts the JSON's own text in the marker's place.
  if (value instanceof JsonText) return rawJsonMarker(value.text);
  if (value instanceof Uint8Array) return `\\x${Buffer.from(value).toString('hex')}`;
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Date) return value.toISOString();
  return value;
}

/** Upsert chunks: at most `maxRows` rows and `maxBodyBytes` of JSON each (a larger single row goes alone). */
export function chunkRows<T>(rows: T[], limits: ChunkLimits): T[][] {
  const chunks: T[][] = [];
  let current: T[] = [];
  let bytes = 2;
  for (const row of rows) {
    const size = Buffer.byteLength(JSON.stringify(row)) + 1;
    if (current.length > 0 && (current.length >= limits.maxRows || bytes + size > limits.maxBodyBytes)) {
      chunks.push(current);
      current = [];
      bytes = 2;
    }
    current.push(row);
    bytes += size;
  }
  if (current.length > 0) chunks.push(current);
  return chunks;
}

/** One delete request: `column=in.(…)` for a one-column key, `or=(and(…),…)` for a composite one. */
export type DeleteFilter = { kind: 'in'; column: string; list: string } | { kind: 'or'; filter: string };

/**
 * Delete filters whose encoded length stays under `maxFilterChars`, so the
 * URL stays under what proxies and supabase-js's urlLengthLimit (8,000) allow.
 *
 * Values are always quoted here instead of using supabase-js's `.in()`:
 * `.in()` wraps a value in double quotes only when it contains `,()` and never
 * escapes `"` or `\` (supabase/supabase-js: packages/core/postgrest-js/src/PostgrestFilterBuilder.ts,
 * `in`), while PostgREST reads a list element as `"…"` with backslash escapes
 * or as raw text up to `,`/`)` (PostgREST/postgrest: src/PostgREST/ApiRequest/QueryParams.hs,
 * pListElement / pQuotedValue; pLogicSingleVal for `or`/`and`).
 */
export function deleteFilters(key: string[], keys: Row[], limits: ChunkLimits, version?: DeleteVersion): DeleteFilter[] {
  const filters: DeleteFilter[] = [];
  const budget = Math.max(200, limits.maxFilterChars - formLength(key.join(',')) - 16);
  let pieces: string[] = [];
  let length = 0;
  const flush = () => {
    if (pieces.length === 0) return;
    filters.push(key.length === 1 && !version ? { kind: 'in', column: fieldName(key[0]!), list: `(${pieces.join(',')})` } : { kind: 'or', filter: pieces.join(',') });
    pieces = [];
    length = 0;
  };
  for (const [i, row] of keys.entries()) {
    const match = key.map((k) => `${fieldName(k)}.eq.${filterValue(row[k] ?? null)}`);
    const piece = version
      ? `and(${[...match, olderThan(version, version.times[i]!)].join(',')})`
      : key.length === 1
        ? filterValue(row[key[0]!] ?? null)
        : `and(${match.join(',')})`;
    const size = formLength(piece) + 3;
    if (pieces.length > 0 && length + size > budget) flush();
    pieces.push(piece);
    length += size;
  }
  flush();
  return filters;
}

/** Two-way deletes: each key's change time, and the side a tie goes to. */
export interface DeleteVersion {
  column: string;
  times: Date[];
  ties: 'incoming' | 'target';
}

/**
 * The stored row changed no later than the delete (to the millisecond, as
 * change times are compared everywhere: `incomingLoses`), or has no time.
 */
function olderThan(version: DeleteVersion, at: Date): string {
  const bound = new Date(at.getTime() + (version.ties === 'incoming' ? 1 : 0)).toISOString();
  const column = fieldName(version.column);
  return `or(${column}.lt.${filterValue(bound)},${column}.is.null)`;
}

/** A value in PostgREST's list/logic syntax: text quoted with `\` escapes, numbers and booleans bare. */
export function filterValue(value: Value): string {
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  const text = typeof value === 'string' ? value : String(jsonValue(value));
  return `"${text.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

/**
 * A column in a filter key, `on_conflict` or a logic tree. PostgREST reads
 * letters, digits, `_`, `$` (and spaces, dashes) bare; anything else, a dot
 * above all (an embedded resource), needs quotes (QueryParams.hs, pFieldName).
 */
export function fieldName(name: string): string {
  return /^[A-Za-z0-9_$]+$/.test(name) ? name : `"${name.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

/** Length of `text` in application/x-www-form-urlencoded, as URLSearchParams writes it. */
export function formLength(text: string): number {
  let n = 0;
  for (let i = 0; i < text.length; i += 1) {
    const c = text.charCodeAt(i);
    const plain = (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 42 || c === 45 || c === 46 || c === 95 || c === 32;
    if (plain) n += 1;
    else if (c < 0x80) n += 3;
    else if (c < 0x800) n += 6;
    else if (c >= 0xd800 && c <= 0xdbff) {
      n += 12; // a surrogate pair is one 4-byte character
      i += 1;
    } else n += 9;
  }
  return n;
}
