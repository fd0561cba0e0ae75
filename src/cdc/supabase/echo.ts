import type { ChangeEvent } from '../../core/change-event.js';
import type { OwnWrites } from '../../core/own-writes.js';
import type { RealtimeTable } from './realtime-tables.js';

/**
 * A change cdc-sync itself made here (the forward stream of a two-way
 * pair): an upsert carrying the change time it was written with, or the
 * live delete of a key it deleted (its tombstones are not recorded).
 */
export function isEcho(own: OwnWrites | undefined, url: string, event: ChangeEvent, table: RealtimeTable, via: string): boolean {
  if (!own) return false;
  const name = `${table.schema}.${table.name}`;
  if (event.op === 'delete') return via === 'live' && own.takeDeleteEcho(url, name, event.key);
  const stamped = event.row?.[table.updatedAt];
  return typeof stamped === 'string' && own.isUpsertEcho(url, name, event.key, stamped);
}
