import { isSafeNumber } from 'lossless-json';
import type { Value } from './change-event.js';

// Any decimal with at most 15 significant digits survives a trip through a
// double, so JSON.parse is exact unless a number token (after `:`, `,`, `[`
// or at the start) has 16+ digits together (a decimal point may sit among
// them). That is a cheap, linear test; long digit runs inside strings
// (positions, phone numbers) keep the fast path, and a false alarm only
// takes the slower exact parser.
const LONG_DIGITS = /(?:^|[:,[])\s*-?\d[\d.]{15}/;

/**
 * A whole JSON string (so that nothing inside one is taken for a number) or
 * a number token, exactly as JSON's grammar has it (RFC 8259, section 6).
 */
const STRING_OR_NUMBER = /"(?:[^"\\]|\\.)*"|-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/g;

/** A number token a double cannot hold exactly, quoted: JSON.parse then hands it over as its decimal string. */
function quoteUnsafe(token: string): string {
  return token.length < 16 || token.charCodeAt(0) === 0x22 || isSafeNumber(token) ? token : `"${token}"`;
}

/**
 * Parses JSON without losing precision: numbers a double cannot hold exactly
 * (bigint ids, money, numeric(38,10)) come back as their decimal strings.
 * Both paths end in JSON.parse: lossless-json's own parser, used before,
 * took 20 µs for a row of the memory benchmark's table (7 µs for JSON.parse)
 * and built its strings a character at a time, which made every later use
 * of them (a bytea's hex decoded) 20 times slower and the heap larger.
 */
export function parseJson(text: string): Value {
  if (!LONG_DIGITS.test(text)) return JSON.parse(text) as Value;
  return JSON.parse(text.replace(STRING_OR_NUMBER, quoteUnsafe)) as Value;
}

/**
 * The text of a number JSON has no token for: NaN, Infinity, -Infinity (JSON.stringify writes null) and -0 (it
 * writes 0); PostgreSQL's float input reads each back. Undefined for every other number.
 */
export function jsonlessNumberText(n: number): string | undefined {
  if (Number.isFinite(n)) return Object.is(n, -0) ? '-0' : undefined;
  return String(n);
}

/**
 * A json or jsonb value exactly as its source wrote it. Parsed into
 * JavaScript values it would lose what PostgreSQL keeps: json's own text
 * (spaces, key order, duplicate keys), a jsonb number's trailing zeros and
 * digits beyond a double's, a JSON `null` as against SQL NULL, a string
 * that reads as JSON. Sinks write `text` itself; a path that knows nothing
 * of it serializes the parsed value (`toJSON`), as before this kind existed.
 */
export class JsonText {
  constructor(readonly text: string) {}

  toJSON(): unknown {
    // toJsonText embeds the text itself: no parse wasted on a value it replaces.
    return embedding > 0 ? this : parseJson(this.text);
  }
}

/** A value bound for a json column as its JSON text: JsonText as written, anything else as toJsonText writes it. */
export function jsonTextOf(value: Value): string {
  return value instanceof JsonText ? value.text : toJsonText(value);
}

let embedding = 0;

/**
 * A JsonText's place in JSON text that JSON.stringify writes, to be replaced
 * by its own text (`embedRawJson`): its text in base64 behind lone
 * surrogates, which JSON.stringify writes escaped (\udfff\udbff) and text
 * from a database never holds. Stateless, so a marker may be written long
 * before the replacement (supabase-js stringifies the rows it is given).
 */
export function rawJsonMarker(text: string): string {
  return `${RAW_MARK}${Buffer.from(text).toString('base64')}`;
}

const RAW_MARK = '\udfff\udbffjson:';
const RAW_SPOT = /"\\udfff\\udbffjson:([A-Za-z0-9+/=]*)"/g;

/** JSON text with each JsonText's marker (a whole JSON string) replaced by the JsonText's own text. */
export function embedRawJson(json: string): string {
  return json.includes('\\udfff\\udbffjson:') ? json.replace(RAW_SPOT, (_, base64: string) => Buffer.from(base64, 'base64').toString()) : json;
}

/**
 * JSON text for database parameters: binary as PostgreSQL hex, bigint as
 * digits, NaN, the infinities and -0 as their text (JSON has no such
 * numbers), a JsonText as its own text.
 */
export function toJsonText(value: unknown): string {
  let raw = false;
  embedding += 1;
  let text: string;
  try {
    text = JSON.stringify(value, function (this: unknown, key: string, value: unknown): unknown {
      // Buffer.toJSON runs before the replacer sees it; look at the holder instead.
      const held = (this as Record<string, unknown>)[key];
      if (held instanceof Uint8Array) return `\\x${Buffer.from(held).toString('hex')}`;
      if (held instanceof JsonText) {
        raw = true;
        return rawJsonMarker(held.text);
      }
      if (typeof value === 'bigint') return value.toString();
      if (typeof value === 'number') return jsonlessNumberText(value) ?? value;
      return value;
    });
  } finally {
    embedding -= 1;
  }
  return raw ? embedRawJson(text) : text;
}

/**
 * The text of the members `names` of a JSON object's top level, as written
 * (a change log's row image holds a json column's text and a jsonb column's
 * output there, which JSON.parse would turn into JavaScript values). The
 * text must be valid JSON: the caller has parsed it already.
 */
export function jsonMembers(text: string, names: ReadonlySet<string>): Map<string, string> {
  const found = new Map<string, string>();
  let wanted = quotedNames.get(names);
  if (!wanted) quotedNames.set(names, (wanted = [...names].map((name) => ({ name, quoted: JSON.stringify(name) }))));
  items(text, 0, (keyStart, keyEnd, start, end) => {
    const match = wanted.find((w) => keyIs(text, keyStart, keyEnd, w.name, w.quoted));
    if (match) found.set(match.name, detached(text.slice(start, end)));
    return found.size === wanted.length;
  });
  return found;
}

/**
 * Sets `row`'s json columns to their text in `text`, the JSON object the row
 * was parsed from, as JsonText. A JSON `null` stays SQL NULL: the row images
 * this reads (row_to_json, Realtime's record, the NATS envelope) write both alike.
 */
export function keepJsonTexts(row: Record<string, unknown>, text: string, columns: ReadonlySet<string>): void {
  for (const [column, raw] of jsonMembers(text, columns)) if (raw !== 'null') row[column] = new JsonText(raw);
}

/**
 * A copy of a part of a string that does not hold on to the whole: V8 makes
 * a substring a view of its parent, so a value kept from a row image would
 * keep the image alive as long as the change is buffered (10 MiB more at the
 * peak of `npm run bench:memory`'s change-log drain).
 */
function detached(part: string): string {
  return Buffer.from(part, 'utf8').toString('utf8');
}

/** The names a caller looks for, each with its JSON string: callers keep their set, so it is made once. */
const quotedNames = new WeakMap<ReadonlySet<string>, { name: string; quoted: string }[]>();

/** The text of the value at `path` (member names and array indexes) in valid JSON text, as written; undefined when there is none. */
export function jsonAt(text: string, path: readonly (string | number)[]): string | undefined {
  let start = skipSpace(text, 0);
  let end = trimmedEnd(text, start, valueEnd(text, start));
  for (const step of path) {
    const quoted = JSON.stringify(step);
    let found = false;
    items(text, start, (keyStart, keyEnd, from, to) => {
      if (typeof step === 'number' ? keyStart !== -1 || keyEnd !== step : keyStart === -1 || !keyIs(text, keyStart, keyEnd, step, quoted)) return false;
      [start, end, found] = [from, to, true];
      return true;
    });
    if (!found) return undefined;
  }
  return text.slice(start, end);
}

/** Whether the member name whose JSON string spans keyStart…keyEnd is `name`; `quoted` is JSON.stringify(name). */
function keyIs(text: string, keyStart: number, keyEnd: number, name: string, quoted: string): boolean {
  if (keyEnd - keyStart === quoted.length && text.startsWith(quoted, keyStart)) return true;
  // Written with other escapes than JSON.stringify's (\u0061 for a): decode it.
  const escaped = text.indexOf('\\', keyStart);
  return escaped !== -1 && escaped < keyEnd && JSON.parse(text.slice(keyStart, keyEnd)) === name;
}

/**
 * Walks the members of the object or the items of the array that starts at
 * `at`, handing each one's name (the bounds of its JSON string; -1 and the
 * index for an array's item) and the bounds of its value to `visit` until it
 * returns true.
 */
function items(text: string, at: number, visit: (keyStart: number, keyEnd: number, start: number, end: number) => boolean): void {
  let i = skipSpace(text, at);
  const open = text.charCodeAt(i);
  if (open !== 0x7b /* { */ && open !== 0x5b /* [ */) return;
  i = skipSpace(text, i + 1);
  for (let index = 0; i < text.length; index += 1) {
    const c = text.charCodeAt(i);
    if (c === 0x7d || c === 0x5d /* } ] */) return;
    let keyStart = -1;
    let keyEnd = index;
    if (open === 0x7b) {
      keyStart = i;
      keyEnd = stringEnd(text, i);
      i = skipSpace(text, skipSpace(text, keyEnd) + 1 /* : */);
    }
    const end = valueEnd(text, i);
    if (visit(keyStart, keyEnd, i, trimmedEnd(text, i, end))) return;
    i = skipSpace(text, end);
    if (text.charCodeAt(i) !== 0x2c /* , */) return;
    i = skipSpace(text, i + 1);
  }
}

function trimmedEnd(text: string, start: number, end: number): number {
  while (end > start && isSpace(text.charCodeAt(end - 1))) end -= 1;
  return end;
}

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

function skipSpace(text: string, i: number): number {
  while (i < text.length && isSpace(text.charCodeAt(i))) i += 1;
  return i;
}

/** The index after the string that starts at `i` (its opening quote): the next quote not escaped by an odd run of backslashes. */
function stringEnd(text: string, i: number): number {
  for (let from = i + 1; ; ) {
    const quote = text.indexOf('"', from);
    if (quote === -1) return text.length;
    let backslash = quote - 1;
    while (backslash > i && text.charCodeAt(backslash) === 0x5c) backslash -= 1;
    if ((quote - 1 - backslash) % 2 === 0) return quote + 1;
    from = quote + 1;
  }
}

/** The index after the value that starts at `i`: its closing bracket or quote, or the `,`, `}` or `]` after a scalar. */
function valueEnd(text: string, i: number): number {
  let depth = 0;
  for (let j = i; j < text.length; j += 1) {
    const c = text.charCodeAt(j);
    if (c === 0x22) {
      j = stringEnd(text, j) - 1;
      if (depth === 0) return j + 1;
    } else if (c === 0x7b || c === 0x5b /* { [ */) depth += 1;
    else if (c === 0x7d || c === 0x5d /* } ] */) {
      if (depth === 0) return j;
      depth -= 1;
      if (depth === 0) return j + 1;
    } else if (c === 0x2c && depth === 0) return j;
  }
  return text.length;
}
