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
  /** json and jsonb columns (their JSON text goes as it is), `type` the one to read the text as (a domain's base type). */
  jsonColumns: { name: string; type: string }[];
  /** Columns an upsert compares by their text (see IDENTICAL_WHEN_EQUAL). */
  textCompared: string[];
}

/**
 * Types whose equality operator holds only for values of the same text:
 * an upsert compares these with IS DISTINCT FROM, all others by their text
 * (their output). Equality is wider than identity for numeric (1.0 = 1.00),
 * float (-0 = 0), interval ('1 day' = '24 hours'), citext ('A' = 'a'),
 * jsonb (1.0 = 1) and arrays or ranges of them, and box and circle compare
 * areas; json, xml and point have no equality at all (the statement fails).
 * A changed value that equality calls the same would be skipped as a no-op
 * and the target would keep the old one.
 */
const IDENTICAL_WHEN_EQUAL = new Set(['bool', 'int2', 'int4', 'int8', 'oid', 'text', 'varchar', 'bpchar', 'name', 'uuid', 'date', 'time', 'timestamp', 'timestamptz', 'bytea', 'money']);

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
    jsonColumns: m.target.columns.filter((c) => c.type === 'json').map((c) => ({ name: c.name, type: c.dbType === 'json' ? 'json' : 'jsonb' })),
    textCompared: m.target.columns.filter((c) => !IDENTICAL_WHEN_EQUAL.has(c.dbType ?? '')).map((c) => c.name),
  };
}
