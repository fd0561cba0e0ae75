import type { Statement } from 'better-sqlite3';
import type { Value } from '../../core/change-event.js';
import { PermanentError } from '../../core/errors.js';
import { JsonText } from '../../core/json.js';
import type { LogicalType } from '../../core/values.js';
import { quoteIdent } from '../../db/sqlite/connection.js';
import type { StatementGroup } from '../statement-groups.js';
import type { ForeignKey } from '../../db/sqlite/introspect.js';
import { encode } from './json-params.js';

/**
 * A foreign-key failure names no row. Look, inside the failed transaction
 * (so parents written earlier in it count), for the first upserted row whose
 * parent is missing and say which parent.
 */
export function explainForeignKey(
  error: unknown,
  groups: StatementGroup[],
  targetOf: (source: string) => { table: string; key: string[]; types: Map<string, LogicalType>; foreignKeys: ForeignKey[] },
  statement: (sql: string) => Statement<unknown[]>,
): unknown {
  if ((error as { code?: unknown }).code !== 'SQLITE_CONSTRAINT_FOREIGNKEY') return error;
  for (const group of groups) {
    if (group.op !== 'upsert') continue;
    const target = targetOf(group.table);
    for (const fk of target.foreignKeys) {
      if (!fk.columns.every((c) => group.columns.includes(c)) || fk.parentColumns.length !== fk.columns.length) continue;
      const exists = statement(`SELECT 1 FROM ${quoteIdent(fk.parent)} WHERE ${fk.parentColumns.map((c) => `${quoteIdent(c)} = ?`).join(' AND ')} LIMIT 1`);
      for (const event of group.events) {
        const values = fk.columns.map((c) => event.row![c] ?? null);
        if (values.some((v) => v === null)) continue;
        if (exists.get(...values.map((v, i) => bindable(v, target.types.get(fk.columns[i]!) ?? 'other')))) continue;
        const key = target.key.map((k) => text(event.key[k] ?? null)).join(',');
        return new PermanentError(`${target.table}:${key} missing ${fk.columns.join(',')} -> ${fk.parent}[${values.map(text).join(',')}]`, {
          reason: 'missing-parent',
          context: { table: group.table },
          cause: error,
        });
      }
    }
  }
  return new PermanentError(`${(error as Error).message}: a change deletes a row that others still reference, or points to a missing row`, {
    reason: 'constraint',
    cause: error,
  });
}

/** A value bound directly (missing-parent lookups): like encode, binary as a blob. */
function bindable(value: Value, type: LogicalType): string | number | bigint | Buffer | null {
  if (value instanceof Uint8Array) return Buffer.from(value);
  if (typeof value === 'bigint') return value;
  const encoded = encode(value, type);
  return type === 'binary' && typeof encoded === 'string' ? Buffer.from(encoded, 'hex') : encoded;
}

function text(value: Value): string {
  if (value instanceof Date) return value.toISOString();
  if (value instanceof Uint8Array) return `\\x${Buffer.from(value).toString('hex')}`;
  if (value instanceof JsonText) return value.text;
  if (value !== null && typeof value === 'object') return JSON.stringify(value);
  return String(value);
}
