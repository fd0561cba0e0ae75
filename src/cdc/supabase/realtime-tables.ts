import type { ChangeEvent, Row } from '../../core/change-event.js';
import { ConfigError } from '../../core/errors.js';
import type { TableConfig } from '../../core/mapping.js';
import { TOMBSTONES } from '../../db/supabase/setup.js';
import type { CatchUpTable } from './catch-up.js';

export interface RealtimeTable extends CatchUpTable {
  softDelete: string | undefined;
}

export const TOMBSTONE_SOURCE = '(tombstones)';

export const TOMBSTONE_TABLE: RealtimeTable = {
  source: TOMBSTONE_SOURCE,
  schema: TOMBSTONES.schema,
  name: TOMBSTONES.name,
  key: ['id'],
  updatedAt: 'deleted_at',
  softDelete: undefined,
};

export function realtimeTables(tables: TableConfig[]): RealtimeTable[] {
  return tables.map((t, i) => {
    if (!t.updatedAt) throw new ConfigError(`tables[${i}].updatedAt: a supabase-realtime table needs its updated-at column for catch-up reads`);
    const [schema, name] = t.source.includes('.') ? (t.source.split('.', 2) as [string, string]) : ['public', t.source];
    return { source: t.source, schema, name, key: t.key ?? ['id'], updatedAt: t.updatedAt, softDelete: t.softDelete };
  });
}

export function tombstoneEvent(tables: RealtimeTable[], row: Row): ChangeEvent | null {
  const name = String(row.table_name);
  const table = tables.find((t) => `${t.schema}.${t.name}` === name);
  if (!table || !row.key || typeof row.key !== 'object') return null;
  return { table: table.source, op: 'delete', key: row.key as Row, row: null, position: '', commitTime: new Date(String(row.deleted_at)) };
}

export function rowEvent(table: RealtimeTable, row: Row): ChangeEvent {
  const deleted = table.softDelete !== undefined && row[table.softDelete] !== null && row[table.softDelete] !== undefined;
  return {
    table: table.source,
    op: deleted ? 'delete' : 'update',
    key: Object.fromEntries(table.key.map((k) => [k, row[k] ?? null])),
    row: deleted ? null : row,
    position: '',
    commitTime: new Date(String(row[table.updatedAt])),
  };
}
