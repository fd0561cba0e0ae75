import type { Statement } from 'better-sqlite3';
import type { ChangeEvent, Row } from '../../core/change-event.js';
import { parseJson, toJsonText } from '../../core/json.js';
import { incomingLoses, judgedByChangeTime, lostToStored, type ConflictEntry } from '../conflicts.js';
import { INSERT_CONFLICTS_SQL, localChangesSql } from './queries.js';

/**
 * newer-wins by change time (see `incomingLoses`) against this database's
 * own change log; `keys` are the events' keys as the sink binds them. The
 * caller's BEGIN IMMEDIATE keeps local writers out until the batch commits.
 */
export function resolveByChangeTime(
  statement: (sql: string) => Statement<unknown[]>,
  target: { table: string; key: string[]; imageColumns: string[]; deletesByChangeTime?: boolean },
  events: ChangeEvent[],
  keys: string,
  options: { stream: string; preferIncoming: boolean },
): { losers: ChangeEvent[]; entries: ConflictEntry[] } {
  let since = events[0]!.commitTime.getTime();
  for (const e of events) since = Math.min(since, e.commitTime.getTime());
  const found = statement(localChangesSql(target.table, target.key, target.imageColumns)).all({
    keys,
    table: target.table,
    since: new Date(since).toISOString(),
  }) as { idx: number; local_time: string; stored: string | null }[];
  const losers: ChangeEvent[] = [];
  const entries: ConflictEntry[] = [];
  for (const { idx, local_time, stored } of found) {
    const event = events[idx]!;
    if (!judgedByChangeTime(target.deletesByChangeTime === true, event, stored)) continue;
    const storedTime = new Date(local_time);
    if (!incomingLoses(storedTime, event, options.preferIncoming)) continue;
    losers.push(event);
    entries.push(lostToStored(options.stream, event, stored === null ? null : (parseJson(stored) as Row), storedTime));
  }
  return { losers, entries };
}

export function logConflicts(statement: (sql: string) => Statement<unknown[]>, entries: ConflictEntry[]): void {
  if (entries.length > 0) statement(INSERT_CONFLICTS_SQL).run(toJsonText(entries));
}
