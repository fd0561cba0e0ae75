import type { ChangeEvent, Value } from '../../core/change-event.js';
import { toJsonText } from '../../core/json.js';
import type { LogicalType } from '../../core/values.js';
import { sqliteTimestamp } from './timestamp-text.js';

export function rowsJson(events: ChangeEvent[], columns: { name: string; type: LogicalType }[]): string {
  return JSON.stringify(events.map((e) => columns.map((c) => encode(e.row![c.name] ?? null, c.type))));
}

export function keysJson(events: ChangeEvent[], target: { key: string[]; types: Map<string, LogicalType> }): string {
  return JSON.stringify(events.map((e) => target.key.map((k) => encode(e.key[k] ?? null, target.types.get(k) ?? 'other'))));
}

/**
 * A value as it travels in the JSON parameter: booleans as 0/1, binary as hex
 * (unhex() in SQL for binary columns, `\x`-hex text elsewhere), timestamps as
 * SQLite's own date-time text (instants in UTC; see timestamp-text.ts), JSON
 * as its text, big integers as digits.
 */
export function encode(value: Value, type: LogicalType): string | number | null {
  if (value === null || value === undefined) return null;
  if (typeof value === 'boolean') return value ? 1 : 0;
  if (value instanceof Uint8Array) return type === 'binary' ? Buffer.from(value).toString('hex') : `\\x${Buffer.from(value).toString('hex')}`;
  if (value instanceof Date) return sqliteTimestamp(value.toISOString());
  if (typeof value === 'bigint') return value.toString();
  if (typeof value === 'object') return toJsonText(value);
  if (typeof value === 'string' && (type === 'timestamptz' || type === 'timestamp')) return sqliteTimestamp(value);
  if (typeof value === 'string' && type === 'binary') return value.startsWith('\\x') ? value.slice(2) : Buffer.from(value, 'base64').toString('hex');
  return value;
}
