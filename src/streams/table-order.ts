import type { TableMapping } from '../core/mapping.js';
import type { QualifiedName } from '../core/names.js';

/**
 * The source tables in the order their targets' foreign keys need: parents
 * before children (deletes run in the reverse order). Configuration order
 * breaks ties and orders what the sink could not introspect; a cycle of
 * foreign keys keeps configuration order among its tables.
 */
export function parentsFirst(mappings: Pick<TableMapping, 'source' | 'target'>[]): string[] {
  const id = (name: QualifiedName) => `${name.schema ?? ''}.${name.name}`.toLowerCase();
  const byTarget = new Map<string, number[]>();
  mappings.forEach((m, i) => {
    const list = byTarget.get(id(m.target.name)) ?? [];
    list.push(i);
    byTarget.set(id(m.target.name), list);
  });
  // The default schema differs per database: a reference without one matches a target of any schema, and the other way round.
  const indexesOf = (name: QualifiedName): number[] => {
    const exact = byTarget.get(id(name));
    if (exact) return exact;
    return mappings.flatMap((m, i) => (m.target.name.name.toLowerCase() === name.name.toLowerCase() && (!name.schema || !m.target.name.schema) ? [i] : []));
  };
  const parents = mappings.map((m, i) => new Set((m.target.references ?? []).flatMap(indexesOf).filter((p) => p !== i)));
  const order: number[] = [];
  const placed = new Set<number>();
  while (order.length < mappings.length) {
    // The first table, in configuration order, whose parents are all placed; in a cycle, the first unplaced one.
    let next = mappings.findIndex((_, i) => !placed.has(i) && [...parents[i]!].every((p) => placed.has(p)));
    if (next === -1) next = mappings.findIndex((_, i) => !placed.has(i));
    placed.add(next);
    order.push(next);
  }
  return order.map((i) => mappings[i]!.source);
}
