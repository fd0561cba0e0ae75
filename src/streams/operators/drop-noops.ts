import type { ChangeEvent, Row } from '../../core/change-event.js';
import { valuesEqual } from '../../core/values.js';

/**
 * Splits off updates whose mapped before- and after-images are equal: the
 * source saw a write that changed nothing the target keeps (only excluded
 * columns, or the same values again). Writing them would wake the other side.
 */
export function dropNoops(events: ChangeEvent[]): { kept: ChangeEvent[]; noops: ChangeEvent[] } {
  const noop = (event: ChangeEvent) => event.op === 'update' && !!event.before && !!event.row && sameImage(event.before, event.row);
  // Most batches have none (updates without a before-image never are): then `events` itself is what is kept.
  let first = 0;
  while (first < events.length && !noop(events[first]!)) first += 1;
  if (first === events.length) return { kept: events, noops: [] };
  const kept = events.slice(0, first);
  const noops = [events[first]!];
  for (let i = first + 1; i < events.length; i += 1) {
    const event = events[i]!;
    if (noop(event)) noops.push(event);
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
