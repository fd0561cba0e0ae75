import type { MssqlExecutor, Params } from '../../db/mssql/client.js';
import type { ChangeEvent, Row } from '../../core/change-event.js';
import { parseJson, toJsonText } from '../../core/json.js';
import type { QualifiedName } from '../../core/names.js';
import { incomingLoses, judgedByChangeTime, lostToDeletes, lostToStored, type ConflictEntry } from '../conflicts.js';
import { INSERT_CONFLICTS, localChangesSql, lockKeysSql, pingBackSql, type QueueClock } from './change-time-queries.js';

export interface ChangeTimeTarget {
  name: QualifiedName;
  key: { name: string; type: string }[];
  clock: QueueClock;
  /** The batch's keys as the sink sends rows (see encodeRows). */
  encode: (keys: Row[]) => string;
  /** newer-wins by the updated-at column: only changes that meet a delete are judged by change time (judgedByChangeTime). */
  deletesOnly: boolean;
}

function tableParam(target: ChangeTimeTarget): Params {
  return { table: { type: target.clock.names, value: `${target.name.schema ?? 'dbo'}.${target.name.name}` } };
}

/**
 * newer-wins by change time (see `incomingLoses`) against this database's
 * SyncQueue: locks the keys, then reads the newest queued change of each.
 * Returns the losers, to be left out of the batch, and their log entries.
 */
export async function resolveByChangeTime(
  tx: MssqlExecutor,
  target: ChangeTimeTarget,
  events: ChangeEvent[],
  options: { stream: string; preferIncoming: boolean },
): Promise<{ losers: ChangeEvent[]; entries: ConflictEntry[] }> {
  const keys = { type: 'nvarchar-max' as const, value: target.encode(events.map((e) => e.key)) };
  await tx.query(lockKeysSql(target.name, target.key), { keys });
  let since = events[0]!.commitTime.getTime();
  for (const e of events) since = Math.min(since, e.commitTime.getTime());
  const found = await tx.query<{ idx: number; local_time: Date; stored: string | null }>(localChangesSql(target.name, target.key, target.clock), {
    keys,
    since: { type: 'datetime2', value: new Date(since) },
    ...tableParam(target),
  });
  const losers: ChangeEvent[] = [];
  const entries: ConflictEntry[] = [];
  for (const { idx, local_time, stored } of found) {
    const event = events[idx]!;
    if (!judgedByChangeTime(target.deletesOnly, event, stored)) continue;
    if (!incomingLoses(local_time, event, options.preferIncoming)) continue;
    losers.push(event);
    entries.push(lostToStored(options.stream, event, stored === null ? null : (parseJson(stored) as Row), local_time));
  }
  return { losers, entries };
}

/** The log rows and the ping-backs of deletes that won here (see `lostToDeletes`), in the batch's transaction. */
export async function recordConflicts(tx: MssqlExecutor, entries: ConflictEntry[], target: (table: string) => ChangeTimeTarget): Promise<void> {
  if (entries.length === 0) return;
  await tx.query(INSERT_CONFLICTS, { rows: { type: 'nvarchar-max', value: toJsonText(entries) } });
  const byTable = new Map<string, ConflictEntry[]>();
  for (const e of lostToDeletes(entries)) byTable.set(e.table, [...(byTable.get(e.table) ?? []), e]);
  for (const [table, lost] of byTable) {
    const t = target(table);
    const rows = lost.map((e) => `{"key":${t.encode([e.key]).slice(1, -1)},"at":${JSON.stringify(e.stored_time!.toISOString())}}`);
    await tx.query(pingBackSql(t.name, t.key, t.clock), { rows: { type: 'nvarchar-max', value: `[${rows.join(',')}]` }, ...tableParam(t) });
  }
}
