import type { Source } from '../cdc/source.js';
import type { ChangeEvent, Row } from '../core/change-event.js';
import type { TableSettings } from '../config/schema.js';

/** A change pushed from outside (a Supabase Database Webhook). */
export interface PushedChange {
  schema: string;
  table: string;
  op: ChangeEvent['op'];
  record: Row | null;
  oldRecord: Row | null;
}

/** Hands `change` to `source` when it is of one of `tables`; false when the source does not take it. */
export function pushChange(source: Source, tables: TableSettings[], change: PushedChange): boolean {
  if (!source.push) return false;
  const table = tables.find((t) => t.source === `${change.schema}.${change.table}` || (change.schema === 'public' && t.source === change.table));
  if (!table) return false;
  const image = change.record ?? change.oldRecord;
  if (!image) return false;
  source.push([
    {
      table: table.source,
      op: change.op,
      key: Object.fromEntries((table.key ?? ['id']).map((k) => [k, image[k] ?? null])),
      row: change.op === 'delete' ? null : change.record,
      before: change.oldRecord,
      position: '',
      commitTime: new Date(),
    },
  ]);
  return true;
}
