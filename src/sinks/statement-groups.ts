import type { ChangeEvent } from '../core/change-event.js';
import { PermanentError } from '../core/errors.js';
import { rowText } from '../core/row-text.js';

/** Changes one set-based statement (or request) applies. */
export interface StatementGroup {
  table: string;
  /** `truncate`: every row of the table goes (a TRUNCATE the source applied); no columns, no rows. */
  op: 'delete' | 'upsert' | 'truncate';
  /** Sorted column names of the rows (key columns for deletes); a COPY of text rows names them in its lines' order (batch-statements.ts). */
  columns: string[];
  events: ChangeEvent[];
}

/**
 * Groups a batch for set-based statements: within each run of consecutive
 * changes of one table and kind, rows with the same column set share a
 * statement. Rows with different column sets are split, so a column one row
 * lacks is never written as NULL. Runs keep the batch order (deletes
 * children-first, upserts parents-first).
 */
export function groupStatements(changes: ChangeEvent[]): StatementGroup[] {
  const groups: StatementGroup[] = [];
  let runTable: string | undefined;
  let runOp: StatementGroup['op'] | undefined;
  const byShape = new Map<string, StatementGroup>();
  // Rows of one table nearly always list their columns in the same order:
  // the previous row's group is taken again when this row has its columns, checked without a copy of the names.
  let previous: { keys: readonly string[]; group: StatementGroup } | undefined;
  for (const event of changes) {
    const op = event.op === 'delete' || event.op === 'truncate' ? event.op : 'upsert';
    if (event.table !== runTable || op !== runOp) {
      runTable = event.table;
      runOp = op;
      byShape.clear();
      previous = undefined;
    }
    const row = op === 'truncate' ? {} : op === 'delete' ? event.key : (event.row ?? {});
    // A text row's columns are its text's (asked of the row, they would decode it).
    const text = op === 'upsert' ? rowText(row) : undefined;
    if (previous && (text ? sameNames(text.columns, previous.keys) : hasColumns(row, previous.keys))) {
      previous.group.events.push(event);
      continue;
    }
    const keys = text ? text.columns : Object.keys(row);
    const columns = [...keys].sort();
    const shape = columns.join('\u0001');
    let group = byShape.get(shape);
    if (!group) {
      group = { table: event.table, op, columns, events: [] };
      byShape.set(shape, group);
      groups.push(group);
    }
    group.events.push(event);
    previous = { keys, group };
  }
  return groups;
}

/** Whether `row`'s own columns are exactly `keys`, in that order. */
function hasColumns(row: object, keys: readonly string[]): boolean {
  let i = 0;
  for (const name in row) {
    if (name !== keys[i]) return false;
    i += 1;
  }
  return i === keys.length;
}

function sameNames(names: readonly string[], keys: readonly string[]): boolean {
  return names === keys || (names.length === keys.length && names.every((name, i) => name === keys[i]));
}

/** For sinks that cannot empty a table: configuration validation keeps TRUNCATE from reaching them, this says so if one does. */
export function truncateUnsupported(sink: string, table: string, stream: string | undefined): PermanentError {
  return new PermanentError(`the ${sink} sink cannot apply a TRUNCATE of ${table}; use source.truncate: dead-letter`, {
    reason: 'other',
    context: { stream, table },
  });
}
