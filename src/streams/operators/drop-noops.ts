import type { ChangeEvent, Row } from '../../core/change-event.js';
import { valuesEqual } from '../../core/values.js';

/**
 * Splits off updates whose mapped before- and after-images are equal: the
 * source saw a write that changed nothing the target keeps (only excluded
 * columns, or the same values again). Writing them would wake the other side.
 */
export function dropNoops(events: ChangeEvent[]): { kept: ChangeEvent[]; noops: ChangeEvent[] } {
  const kept: ChangeEvent[] = [];
  const noops: ChangeEvent[] = [];
  for (const event of events) {
    if (event.op === 'update' && event.before && event.row && sameImage(event.before, event.row)) noops.push(event);
    else kept.push(event);
  }
  return { kept, noops };
}

function sameImage(before: Row, after: Row): boolean {
  const columns = new Set([...Object.keys(before), ...Object.keys(after)]);
  for (const column of columns) {
    if (!valuesEqual(before[column], after[column])) return false;
  }
  return true;
}
