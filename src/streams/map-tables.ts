import { TableMapping, type TargetTable } from '../core/mapping.js';
import { formatQualifiedName } from '../core/names.js';
import type { TableSettings } from '../config/schema.js';
import type { Logger } from '../log.js';

/** The configured tables mapped onto the targets the sink found (a target left out is named from now on). */
export function mapTables(tables: TableSettings[], targets: TargetTable[], log: Logger): TableMapping[] {
  nameFoundTargets(tables, targets, log);
  const warned = new Set<string>();
  const warn = (message: string, context: Record<string, string>) => {
    const id = `${message}${JSON.stringify(context)}`;
    if (!warned.has(id)) log.warn(context, message);
    warned.add(id);
  };
  return tables.map((t, i) => new TableMapping(t, targets[i]!, `tables[${i}]`, warn));
}

/** Targets the configuration left out, as the sink found them (matchTarget): named from now on, and said once. */
function nameFoundTargets(tables: TableSettings[], targets: TargetTable[], log: Logger): void {
  for (const [i, table] of tables.entries()) {
    if (table.target) continue;
    table.target = formatQualifiedName(targets[i]!.name);
    log.info({ table: table.source, target: table.target }, `tables[${i}].target left out: the sink's table named like the source's is used`);
  }
}
