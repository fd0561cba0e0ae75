import { ConfigError } from '../core/errors.js';
import type { TableConfig } from '../core/mapping.js';

/**
 * The checks every source type runs on a configured table against the
 * columns it found there: `key`, `columns` and `exclude` must name columns
 * that exist (an `exclude` with a typo would send what the operator meant to
 * hold back). Returns the key: the configured one, else the primary key.
 * `captured` says how the source knows its columns, for the message.
 */
export function checkSourceColumns(table: TableConfig, path: string, columns: readonly string[], primaryKey: readonly string[], captured = ''): string[] {
  const missing = (column: string) => `column ${column} does not exist in ${table.source}${captured}`;
  for (const [j, column] of (table.key ?? []).entries()) {
    if (!columns.includes(column)) throw new ConfigError(`${path}.key[${j}]: ${missing(column)}`);
  }
  for (const column of Object.keys(table.columns ?? {})) {
    if (!columns.includes(column)) throw new ConfigError(`${path}.columns.${column}: ${missing(column)}`);
  }
  for (const [j, column] of (table.exclude ?? []).entries()) {
    if (!columns.includes(column)) throw new ConfigError(`${path}.exclude[${j}]: ${missing(column)}`);
  }
  const key = table.key ?? [...primaryKey];
  if (key.length === 0) throw new ConfigError(`${path}.key: ${table.source} has no primary key; name the key columns`);
  return key;
}
