import { isSafeNumber, parse as parseLossless } from 'lossless-json';
import type { Value } from './change-event.js';

// Any decimal with at most 15 significant digits survives a trip through a
// double, so JSON.parse is exact unless a number token (after `:`, `,`, `[`
// or at the start) has 16+ digits together (a decimal point may sit among
// them). That is a cheap, linear test; long digit runs inside strings
// (positions, phone numbers) keep the fast path, and a false alarm only
// takes the slower exact parser.
const LONG_DIGITS = /(?:^|[:,[])\s*-?\d[\d.]{15}/;

/**
 * Parses JSON without losing precision: numbers a double cannot hold exactly
 * (bigint ids, money, numeric(38,10)) come back as their decimal strings.
 */
export function parseJson(text: string): Value {
  if (!LONG_DIGITS.test(text)) return JSON.parse(text) as Value;
  return parseLossless(text, null, (digits: string) => (isSafeNumber(digits) ? Number(digits) : digits)) as Value;
}

/** JSON text for database parameters: binary as PostgreSQL hex, bigint as digits. */
export function toJsonText(value: unknown): string {
  return JSON.stringify(value, jsonReplacer);
}

function jsonReplacer(this: unknown, key: string, value: unknown): unknown {
  // Buffer.toJSON runs before the replacer sees it; look at the holder instead.
  const raw = (this as Record<string, unknown>)[key];
  if (raw instanceof Uint8Array) return `\\x${Buffer.from(raw).toString('hex')}`;
  if (typeof value === 'bigint') return value.toString();
  return value;
}
