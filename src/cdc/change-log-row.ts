import type { ChangeEvent, Op, RejectedChange, Row } from '../core/change-event.js';
import { PermanentError } from '../core/errors.js';
import { keepJsonTexts, parseJson } from '../core/json.js';
import { keyChange, sameKey } from './key-change.js';

/** A row of a trigger-fed change table (PostgreSQL `cdc_sync.changes`, SQLite `cdc_sync_changes`). */
export interface ChangeLogRow {
  id: string | number | bigint;
  op: string;
  row_data: string | null;
  old_data: string | null;
  origin: string | null;
}

const OPS: Record<string, Op> = { I: 'insert', U: 'update', D: 'delete' };

/** What one change-table row becomes: a change, a key change's two changes, or a rejected change. */
export type ChangeLogResult = ChangeEvent | [ChangeEvent, ChangeEvent] | RejectedChange;

/**
 * The change a change-table row records, or — when its JSON is malformed or
 * its operation unknown — a rejected change with the raw payload, which goes
 * to the dead letter while the stream goes on. An update that changed the
 * key is two changes, the delete of the old key and the insert of the new
 * one (see keyChange).
 */
export function changeLogEvent(
  row: ChangeLogRow,
  table: ChangeLogTable,
  position: string,
  commitTime: Date,
  stream: string,
): ChangeLogResult {
  const op = OPS[row.op];
  try {
    const after = row.row_data === null ? null : rowImage(row.row_data, table.json);
    const before = row.old_data === null ? null : rowImage(row.old_data, table.json);
    const image = after ?? before;
    if (!op || !image) throw new Error(`change ${row.id} has no ${op ? 'row image' : 'known operation'}`);
    const key: Row = {};
    for (const k of table.key) key[k] = image[k] ?? null;
    const event: ChangeEvent = {
      table: table.source,
      op,
      key,
      row: op === 'delete' ? null : after,
      before,
      position,
      commitTime,
      ...(row.origin ? { origin: row.origin } : {}),
    };
    if (op === 'update' && before) {
      const oldKey: Row = {};
      for (const k of table.key) oldKey[k] = before[k] ?? null;
      if (!sameKey(oldKey, key)) return keyChange(event, oldKey);
    }
    return event;
  } catch (error) {
    return {
      table: table.source,
      key: null,
      payload: row.row_data ?? row.old_data ?? '',
      error: new PermanentError(`malformed change ${row.id}: ${(error as Error).message}`, {
        reason: 'malformed',
        context: { stream, table: table.source, position: String(row.id) },
      }),
      position,
    };
  }
}

/** A change-log table as the reader knows it. */
export interface ChangeLogTable {
  source: string;
  key: string[];
  /** Its json and jsonb columns: their values are kept as the image writes them (JsonText). */
  json?: ReadonlySet<string> | undefined;
}

/**
 * A row image. A json column's text and a jsonb column's output are taken
 * from the image as written; a JSON `null` there is SQL NULL, as the image
 * writes both alike.
 */
function rowImage(text: string, json: ReadonlySet<string> | undefined): Row {
  const value = parseJson(text);
  if (!value || typeof value !== 'object' || Array.isArray(value)) throw new Error('row image is not a JSON object');
  const row = value as Row;
  if (json !== undefined && json.size > 0) keepJsonTexts(row, text, json);
  return row;
}

/** A page's changes (a key change's two in source order), apart from those that go to the dead letter unread. */
export function splitRejected(results: ChangeLogResult[]): { events: ChangeEvent[]; rejected: RejectedChange[] } {
  const events: ChangeEvent[] = [];
  const rejected: RejectedChange[] = [];
  for (const result of results) {
    if (Array.isArray(result)) events.push(result[0], result[1]);
    else if ('error' in result) rejected.push(result);
    else events.push(result);
  }
  return { events, rejected };
}
