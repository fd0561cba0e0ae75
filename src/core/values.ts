import type { Value } from './change-event.js';
import { PermanentError } from './errors.js';
import { JsonText, jsonlessNumberText } from './json.js';

/**
 * Column types as far as conversion cares. Each adapter maps its native types
 * onto these (e.g. SQL Server `bit` → boolean, PostgreSQL `int8` → integer).
 */
export type LogicalType =
  | 'boolean'
  | 'integer'
  | 'decimal'
  | 'float'
  | 'text'
  | 'uuid'
  | 'date'
  | 'time'
  | 'timestamp'
  | 'timestamptz'
  | 'binary'
  | 'json'
  | 'other';

/**
 * A float as a number where JSON and a database parameter carry it exactly;
 * NaN, Infinity, -Infinity and -0 as their text, which PostgreSQL's float
 * input reads back (as numbers JSON writes NaN and the infinities as null,
 * and -0 as 0). A database that has no such values refuses the text.
 */
export function toFloat(value: Value): Value {
  const n = typeof value === 'string' ? Number(value) : value;
  return typeof n === 'number' ? (jsonlessNumberText(n) ?? n) : value;
}

/**
 * Converts a source value to the canonical form for a target column type.
 * Exactness first: decimals and 64-bit integers stay decimal strings when a
 * JavaScript number cannot hold them; timestamps keep all their digits.
 */
export function convertValue(value: Value | undefined, type: LogicalType): Value {
  if (value === null || value === undefined) return null;
  switch (type) {
    case 'boolean':
      return toBoolean(value);
    case 'integer':
      return toInteger(value);
    case 'decimal':
      return toDecimal(value);
    case 'float':
      return toFloat(value);
    case 'text':
      return toText(value);
    case 'uuid':
      return typeof value === 'string' ? value.toLowerCase() : value;
    case 'date':
      return value instanceof Date ? value.toISOString().slice(0, 10) : value;
    case 'timestamp':
      // mssql hands out datetime2 as a Date read as UTC; keep the wall-clock digits.
      return value instanceof Date ? value.toISOString().slice(0, -1) : value;
    case 'timestamptz':
      return value instanceof Date ? value.toISOString() : value;
    case 'binary':
      return toBinary(value);
    case 'json':
      return typeof value === 'string' ? jsonOrString(value) : value;
    default:
      return value;
  }
}

function toBoolean(value: Value): Value {
  if (typeof value === 'boolean') return value;
  if (value === 1 || value === 0) return value === 1;
  if (typeof value === 'string') {
    const v = value.trim().toLowerCase();
    if (['true', 't', '1', 'yes', 'y'].includes(v)) return true;
    if (['false', 'f', '0', 'no', 'n'].includes(v)) return false;
  }
  throw new PermanentError(`cannot convert ${typeName(value)} to boolean`, { reason: 'invalid-data' });
}

function toInteger(value: Value): Value {
  if (typeof value === 'number' || typeof value === 'string') return value;
  if (typeof value === 'bigint') return Number.isSafeInteger(Number(value)) ? Number(value) : value.toString();
  if (typeof value === 'boolean') return value ? 1 : 0;
  throw new PermanentError(`cannot convert ${typeName(value)} to integer`, { reason: 'invalid-data' });
}

function toDecimal(value: Value): Value {
  if (typeof value === 'number' || typeof value === 'string') return value;
  if (typeof value === 'bigint') return value.toString();
  throw new PermanentError(`cannot convert ${typeName(value)} to decimal`, { reason: 'invalid-data' });
}

function toText(value: Value): Value {
  if (typeof value === 'string') return value;
  if (value instanceof JsonText) return value.text;
  if (value instanceof Date) return value.toISOString();
  if (value instanceof Uint8Array) return Buffer.from(value).toString('base64');
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

function toBinary(value: Value): Value {
  if (value instanceof Uint8Array) return value;
  if (typeof value === 'string') {
    // PostgreSQL's row_to_json writes bytea as \x-hex; SQL Server's FOR JSON as base64.
    if (value.startsWith('\\x')) return Buffer.from(value.slice(2), 'hex');
    return Buffer.from(value, 'base64');
  }
  throw new PermanentError(`cannot convert ${typeName(value)} to binary`, { reason: 'invalid-data' });
}

/** Text that is JSON keeps its exact text (a column of text or nvarchar holding JSON, bound for a json one); other text stays a string. */
function jsonOrString(text: string): Value {
  try {
    JSON.parse(text);
    return new JsonText(text);
  } catch {
    return text;
  }
}

function typeName(value: Value): string {
  if (value instanceof Date) return 'date';
  if (value instanceof Uint8Array) return 'binary';
  if (Array.isArray(value)) return 'array';
  return typeof value;
}

/**
 * A string that is equal for equal values whatever their representation
 * (Date vs ISO text, Buffer vs hex, key order of objects); used to spot
 * updates that change nothing.
 */
export function canonicalValue(value: Value | undefined): string {
  return JSON.stringify(canonicalize(value ?? null));
}

function canonicalize(value: Value): unknown {
  if (value === null) return null;
  if (value instanceof Date) return value.toISOString();
  if (value instanceof Uint8Array) return `\\x${Buffer.from(value).toString('hex')}`;
  // Its text: json values written otherwise (1.0 and 1.00, key order) are different values to PostgreSQL's json.
  if (value instanceof JsonText) return { '\u0000json': value.text };
  if (typeof value === 'bigint') return value.toString();
  if (typeof value === 'number') return String(value);
  if (Array.isArray(value)) return value.map(canonicalize);
  if (typeof value === 'object') {
    return Object.fromEntries(
      Object.keys(value)
        .sort()
        .map((k) => [k, canonicalize(value[k] ?? null)]),
    );
  }
  return value;
}

export function valuesEqual(a: Value | undefined, b: Value | undefined): boolean {
  return canonicalValue(a) === canonicalValue(b);
}
