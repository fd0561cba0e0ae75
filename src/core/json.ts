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

/** JSON text for database parameters: binary as PostgreSQL hex, bigint as digits, NaN, the infinities and -0 as their text (JSON has no such numbers). */
export function toJsonText(value: unknown): string {
  return JSON.stringify(value, jsonReplacer);
}

function jsonReplacer(this: unknown, key: string, value: unknown): unknown {
  // Buffer.toJSON runs before the replacer sees it; look at the holder instead.
  const raw = (this as Record<string, unknown>)[key];
  if (raw instanceof Uint8Array) return `\\x${Buffer.from(raw).toString('hex')}`;
  if (typeof value === 'bigint') return value.toString();
  if (typeof value === 'number') return jsonlessNumberText(value) ?? value;
  return value;
}
