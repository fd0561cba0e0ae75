import type { ChangeEvent } from '../core/change-event.js';
import { PermanentError } from '../core/errors.js';

/** Changes one set-based statement (or request) applies. */
export interface StatementGroup {
  table: string;
  /** `truncate`: every row of the table goes (a TRUNCATE the source applied); no columns, no rows. */
  op: 'delete' | 'upsert' | 'truncate';
  /** Sorted column names of the rows (key columns for deletes). */
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
  let run = '';
  const byShape = new Map<string, StatementGroup>();
  // Rows of one table nearly always list their columns in the same order:
  // reuse the sorted columns of the previous row when they do.
  let previous: { keys: string[]; columns: string[]; shape: string } | undefined;
  for (const event of changes) {
    const op = event.op === 'delete' || event.op === 'truncate' ? event.op : 'upsert';
    const id = `${event.table}\u0000${op}`;
    if (id !== run) {
      run = id;
      byShape.clear();
      previous = undefined;
    }
    const keys = op === 'truncate' ? [] : Object.keys(op === 'delete' ? event.key : (event.row ?? {}));
    if (!previous || !sameList(previous.keys, keys)) {
      const columns = [...keys].sort();
      previous = { keys, columns, shape: columns.join('\u0001') };
    }
    let group = byShape.get(previous.shape);
    if (!group) {
      group = { table: event.table, op, columns: previous.columns, events: [] };
      byShape.set(previous.shape, group);
      groups.push(group);
    }
    group.events.push(event);
  }
  return groups;
}

function sameList(a: string[], b: string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i += 1) if (a[i] !== b[i]) return false;
  return true;
}

/** For sinks that cannot empty a table: configuration validation keeps TRUNCATE from reaching them, this says so if one does. */
export function truncateUnsupported(sink: string, table: string, stream: string | undefined): PermanentError {
  return new PermanentError(`the ${sink} sink cannot apply a TRUNCATE of ${table}; use source.truncate: dead-letter`, {
    reason: 'other',
    context: { stream, table },
  });
}
