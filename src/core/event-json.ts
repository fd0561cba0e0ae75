import type { ChangeEvent, Value } from './change-event.js';
import { JsonText } from './json.js';

/**
 * Changes as JSON text that reads back with the same value types (Date,
 * Uint8Array, bigint, non-finite numbers, JsonText), for state a stream keeps with its
 * checkpoint. Plain JSON would turn bytes and instants into strings, and a
 * change read back must compare and apply as the one that was written.
 */
export function eventsToJson(events: ChangeEvent[]): string {
  return JSON.stringify(events.map((e) => tag(e as unknown as Value)));
}

export function eventsFromJson(text: string): ChangeEvent[] {
  const parsed = JSON.parse(text) as unknown;
  if (!Array.isArray(parsed)) throw new Error('not a list of changes');
  return parsed.map((e) => untag(e) as unknown as ChangeEvent);
}

function tag(value: Value | undefined): unknown {
  if (value === undefined || value === null || typeof value === 'string' || typeof value === 'boolean') return value;
  // String(-0) is "0".
  if (typeof value === 'number') return Number.isFinite(value) && !Object.is(value, -0) ? value : { $number: Object.is(value, -0) ? '-0' : String(value) };
  if (typeof value === 'bigint') return { $bigint: value.toString() };
  if (value instanceof Date) return { $date: value.toISOString() };
  if (value instanceof Uint8Array) return { $bytes: Buffer.from(value).toString('hex') };
  if (value instanceof JsonText) return { $json: value.text };
  if (Array.isArray(value)) return value.map(tag);
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) if (v !== undefined) own(out, k, tag(v));
  // An object of the data that looks like a tag stays an object.
  return Object.keys(out).some((k) => k.startsWith('$')) ? { $object: out } : out;
}

function untag(value: unknown): Value {
  if (value === null || typeof value !== 'object') return value as Value;
  if (Array.isArray(value)) return value.map(untag);
  const o = value as Record<string, unknown>;
  const [only] = Object.keys(o);
  if (Object.keys(o).length === 1 && typeof o[only!] === 'string') {
    const text = o[only!] as string;
    if (only === '$date') return new Date(text);
    if (only === '$bytes') return new Uint8Array(Buffer.from(text, 'hex'));
    if (only === '$bigint') return BigInt(text);
    if (only === '$json') return new JsonText(text);
    if (only === '$number') return text === '-0' ? -0 : Number(text);
  }
  const fields = only === '$object' && Object.keys(o).length === 1 ? (o.$object as Record<string, unknown>) : o;
  const out: Record<string, Value> = {};
  for (const [k, v] of Object.entries(fields)) own(out, k, untag(v));
  return out;
}

/** Sets a property as data, even one named `__proto__` (a column may be). */
function own(target: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}
