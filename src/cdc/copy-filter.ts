import { ConfigError } from '../core/errors.js';

/**
 * `cdc-sync snapshot --where`: a condition in the source database's own SQL
 * that limits the copy of one table to the rows it holds for (Debezium's
 * `additional-conditions`). It runs as written, with the stream's login,
 * inside the copy's statement (`… WHERE (<key after>) AND (<condition>)`):
 * whoever may ask for copies (the control API's token) may run it.
 */
export function checkWhere(tables: string[], where: string | undefined): void {
  if (where === undefined) return;
  if (tables.length !== 1) throw new ConfigError('--where limits the copy of one table: name exactly one --table');
  if (where.trim() === '') throw new ConfigError('--where: the condition is empty');
  // One condition, not more statements (a driver that takes several would run them).
  if (/;|--|\/\*/.test(where)) throw new ConfigError(`--where: a condition without ";" or comments, e.g. "updated_at > '2024-01-01'" (got: ${where})`);
}
