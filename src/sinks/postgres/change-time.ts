import { append } from '../../core/arrays.js';
import type { ChangeEvent, Row } from '../../core/change-event.js';
import { parseJson, toJsonText } from '../../core/json.js';
import type { QualifiedName } from '../../core/names.js';
import { byChangeTimeTable, incomingLoses, judgedByChangeTime, lostToDeletes, lostToStored, type ConflictEntry } from '../conflicts.js';
import type { PoolClient } from '../../db/postgres/connection.js';
import { INSERT_CONFLICTS_SQL, PING_BACK_DELETES_SQL, localChangesSql, lockRowsSql } from './queries.js';
import type { TargetInfo } from './target-info.js';

export interface ChangeTimeResolution {
  losers: ChangeEvent[];
  entries: ConflictEntry[];
  /**
   * Some keys had no stored row to lock. An application transaction may be
   * inserting one of them right now: the batch's write then waits for it,
   * and it must be judged again once the batch has written.
   */
  unlocked: boolean;
}

/**
 * newer-wins by change time (see `incomingLoses`): locks the stored rows of
 * the events' keys, then reads this database's newest own change of each.
 * Returns the losers, to be left out of the batch, and their log entries.
 */
export async function resolveByChangeTime(
  client: PoolClient,
  target: { table: QualifiedName; qualified: string; key: string[]; deletesByChangeTime?: boolean },
  events: ChangeEvent[],
  options: { stream: string; preferIncoming: boolean },
): Promise<ChangeTimeResolution> {
  const keys = toJsonText(events.map((e) => e.key));
  const locked = (await client.query(lockRowsSql(target.table, target.key), [keys])).rowCount ?? 0;
  const unlocked = locked < new Set(events.map((e) => toJsonText(e.key))).size;
  let since = events[0]!.commitTime.getTime();
  for (const e of events) since = Math.min(since, e.commitTime.getTime());
  const found = await client.query<{ idx: number; local_time: Date; stored: string | null }>(localChangesSql(target.table, target.key), [
    keys,
    target.qualified,
    new Date(since).toISOString(),
  ]);
  const losers: ChangeEvent[] = [];
  const entries: ConflictEntry[] = [];
  for (const { idx, local_time, stored } of found.rows) {
    const event = events[idx]!;
    if (!judgedByChangeTime(target.deletesByChangeTime === true, event, stored)) continue;
    if (!incomingLoses(local_time, event, options.preferIncoming)) continue;
    losers.push(event);
    entries.push(lostToStored(options.stream, event, stored === null ? null : (parseJson(stored) as Row), local_time));
  }
  return { losers, entries, unlocked };
}

/** Per table that resolves by change time: the incoming changes that lose to a newer change made here. */
export async function resolveChangeTimeConflicts(
  client: PoolClient,
  changes: ChangeEvent[],
  target: (table: string) => TargetInfo,
  options: { stream: string; preferIncoming: boolean },
): Promise<{ losers: Set<ChangeEvent>; logged: ConflictEntry[]; unlocked: ChangeEvent[] }> {
  const losers = new Set<ChangeEvent>();
  const logged: ConflictEntry[] = [];
  const unlocked: ChangeEvent[] = [];
  const byTable = byChangeTimeTable(changes, (table) => target(table).byChangeTime || target(table).deletesByChangeTime);
  for (const [source, events] of byTable) {
    const resolved = await resolveByChangeTime(client, { ...target(source), table: target(source).table.name }, events, options);
    for (const e of resolved.losers) losers.add(e);
    append(logged, resolved.entries);
    if (resolved.unlocked) append(unlocked, events);
  }
  return { losers, logged, unlocked };
}

/** The ping-back of deletes that won here (see `lostToDeletes`), in the batch's transaction. */
export async function pingBackDeletes(
  client: PoolClient,
  entries: ConflictEntry[],
  target: (table: string) => { qualified: string; key: string[] },
): Promise<void> {
  const rows = lostToDeletes(entries).map((e) => {
    const { qualified, key } = target(e.table);
    return { table: qualified, key: Object.fromEntries(key.map((k) => [k, e.key[k] ?? null])), at: e.stored_time!.toISOString() };
  });
  if (rows.length > 0) await client.query(PING_BACK_DELETES_SQL, [toJsonText(rows)]);
}

/** Writes the conflict log rows in the batch's transaction. */
export async function logConflicts(client: PoolClient, entries: ConflictEntry[]): Promise<void> {
  if (entries.length > 0) await client.query(INSERT_CONFLICTS_SQL, [toJsonText(entries)]);
}
