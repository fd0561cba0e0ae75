import { ConfigError } from './errors.js';
import { columnMatchKey } from './names.js';

/**
 * `tables[i].target` left out: the sink's table whose name is the source
 * table's ignoring case and underscores (`InvoiceLine` finds `invoice_line`),
 * as columns are matched. Schemas are not part of the comparison; more than
 * one such table is an error that names them, none is an error too.
 * `candidates` are the sink's tables as `schema.name` (or `name`).
 */
export function matchTarget(source: string, candidates: readonly string[], path: string): string {
  const wanted = tableMatchKey(source);
  const found = candidates.filter((c) => tableMatchKey(c) === wanted);
  if (found.length === 1) return found[0]!;
  if (found.length === 0) {
    throw new ConfigError(`${path}.target: no table of the sink database is named like ${source} (ignoring case and underscores); name the target table`);
  }
  throw new ConfigError(`${path}.target: several tables of the sink database are named like ${source} (${found.join(', ')}); name the target table`);
}

/** A table's name as unnamed targets are matched: without its schema, case or underscores. */
export function tableMatchKey(table: string): string {
  return columnMatchKey(table.slice(table.lastIndexOf('.') + 1));
}
