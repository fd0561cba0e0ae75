import type { TableMapping, TargetTable } from '../../core/mapping.js';

export interface TargetInfo {
  table: TargetTable;
  key: string[];
  newerWinsBy: string | undefined;
  updatable: string[] | null;
  /** The change-log trigger captures this table here: lost conflicts are pinged back. */
  captured: boolean;
  /** `schema.table` as the change-log trigger records it. */
  qualified: string;
  /** newer-wins by change time against this database's own change log (captured tables only). */
  byChangeTime: boolean;
  /** newer-wins by the updated-at column on a captured table: changes that meet a delete are judged by change time (judgedByChangeTime). */
  deletesByChangeTime: boolean;
  /** json and jsonb columns (COPY writes their JSON text; upserts compare them as text). */
  jsonColumns: string[];
}

/** A mapping's target as the sink writes it; `capturedTables`: the tables the change-log trigger captures here (`schema.table`). */
export function targetInfo(m: TableMapping, capturedTables: Set<string>): TargetInfo {
  const qualified = `${m.target.name.schema ?? 'public'}.${m.target.name.name}`;
  const captured = capturedTables.has(qualified);
  return {
    table: m.target,
    key: m.targetKey,
    newerWinsBy: m.conflict === 'newer-wins' ? m.targetUpdatedAt : undefined,
    updatable: m.owned,
    captured,
    qualified,
    byChangeTime: captured && m.byChangeTime,
    deletesByChangeTime: captured && m.byUpdatedAt,
    jsonColumns: m.target.columns.filter((c) => c.type === 'json').map((c) => c.name),
  };
}
