// From decoded changes to postgres_changes messages: which subscriptions see a change
// (realtime.apply_rls + is_visible_through_filters in supabase/realtime
// priv/repo/tenant_schema/realtime/functions/) and what each channel receives
// (Extensions.PostgresCdcRls.MessageDispatcher, lib/extensions/postgres_cdc_rls/message_dispatcher.ex).
import type { FilterCheck, WalChange } from './poller.js';
import type { ChannelRecord } from './session.js';
import type { Action, Filter } from './subscriptions.js';

export interface ActiveSubscription {
  channel: ChannelRecord;
  bindingId: number;
  action: Action;
  entities: Set<number>;
  filters: Filter[];
}

export interface Delivery {
  change: WalChange;
  /** Each channel that sees the change, with the ids of its bindings that match. */
  targets: Map<ChannelRecord, number[]>;
}

/** Decides who sees each change; filter comparisons run in the database (check). */
export async function route(
  changes: WalChange[],
  subscriptions: Iterable<ActiveSubscription>,
  check: (checks: FilterCheck[]) => Promise<boolean[]>,
): Promise<Delivery[]> {
  const subs = [...subscriptions];
  const checks: FilterCheck[] = [];
  // For each (change, candidate): the check indexes of each column set tried, null = invisible.
  const plans = changes.map((change) => {
    const candidates = subs.filter((s) => s.entities.has(change.entity) && (s.action === '*' || s.action === change.type));
    return candidates.map((sub) => {
      // Changes that carry an error (no primary key) go to every subscriber of the table.
      if (sub.filters.length === 0 || change.errors?.some((e) => e.startsWith('Error 400'))) return { sub, sets: [[]] as number[][] };
      const sets: (number[] | null)[] = [plan(change.values.new, sub.filters, checks)];
      // Deletes have no new tuple; they pass when the old image passes (identity columns only).
      if (change.type === 'DELETE') sets.push(plan(change.values.old, sub.filters, checks));
      return { sub, sets: sets.filter((s): s is number[] => s !== null) };
    });
  });
  const results = await check(checks);

  return changes.map((change, i) => {
    const matched = new Set<ActiveSubscription>();
    for (const { sub, sets } of plans[i] ?? []) {
      if (sets.some((set) => set.every((k) => results[k] === true))) matched.add(sub);
    }
    const targets = new Map<ChannelRecord, number[]>();
    for (const sub of matched) {
      if (sub.channel.closed) continue;
      // The dispatcher walks the channel's {binary id, id} list and prepends each match, so
      // `ids` lists the matching bindings in reverse binding order.
      const ids = targets.get(sub.channel) ?? [];
      ids.unshift(sub.bindingId);
      targets.set(sub.channel, ids);
    }
    return { change, targets };
  });
}

/** Queues the comparisons of one filter set against one column set; null if a column is absent. */
function plan(values: Record<string, [string, string | null]>, filters: Filter[], checks: FilterCheck[]): number[] | null {
  const indexes: number[] = [];
  for (const f of filters) {
    const column = values[f.column];
    if (!column) return null;
    indexes.push(checks.push({ op: f.op, type: column[0], lhs: column[1], rhs: f.value }) - 1);
  }
  return indexes;
}

/**
 * The message `data`: a NewRecord / UpdatedRecord / DeletedRecord struct encoded by Jason
 * (supabase/realtime lib/realtime/adapters/changes.ex): keys in sorted order, no `old_record`
 * on INSERT and no `record` on DELETE, `errors` null unless the change carries errors,
 * `columns`/`record`/`old_record` the database's own JSON text.
 */
export function changeDataJson(c: WalChange): string {
  const j = JSON.stringify;
  const parts = [`"columns":${c.columnsJson}`, `"commit_timestamp":${j(c.commitTimestamp)}`, `"errors":${j(c.errors)}`];
  if (c.type !== 'INSERT') parts.push(`"old_record":${c.oldRecordJson}`);
  if (c.type !== 'DELETE') parts.push(`"record":${c.recordJson}`);
  parts.push(`"schema":${j(c.schema)}`, `"table":${j(c.table)}`, `"type":${j(c.type)}`);
  return `{${parts.join(',')}}`;
}

/** MessageDispatcher (new API): %{ids: valid_ids, data: Jason.Fragment.new(payload)}. */
export function postgresChangesPayload(dataJson: string, ids: number[]): string {
  return `{"data":${dataJson},"ids":${JSON.stringify(ids)}}`;
}
