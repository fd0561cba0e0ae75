import type { RealtimeChannel, RealtimePostgresChangesPayload, SupabaseClient } from '@supabase/supabase-js';
import type { ChangeEvent, Op, Row } from '../../core/change-event.js';
import { keyChange, sameKey } from '../key-change.js';

export interface FeedTable {
  source: string;
  schema: string;
  name: string;
  key: string[];
  /** The updated-at column: an insert's or update's time is the row's, as in catch-up reads. */
  updatedAt?: string;
}

export interface FeedHandlers {
  change(event: ChangeEvent): void;
  /**
   * A record Realtime did not send whole: "Error 413: Payload Too Large"
   * (values of at most 64 bytes kept; `key` when those include the key) or
   * "Error 401: Unauthorized" (no record). Never applied as it is.
   */
  cutDown(table: FeedTable, key: Row | null, errors: string[]): void;
  /** The server confirmed it listens ("Subscribed to PostgreSQL"): events before now may be lost. */
  listening(): void;
  state(connected: boolean, detail?: string): void;
  /**
   * The server will send nothing more on this channel, though realtime-js
   * may still call it subscribed: a system message with status "error"
   * (e.g. "Unable to subscribe to changes with given parameters" for a table
   * left out of the publication), or phx_close from the server (realtime-js
   * then reports CLOSED and never rejoins). The source makes a new channel.
   */
  broken(cause: string): void;
}

const OPS: Record<string, Op> = { INSERT: 'insert', UPDATE: 'update', DELETE: 'delete' };

/**
 * One Realtime channel with a postgres_changes binding per table. Realtime
 * delivers at most once; the handlers hear when the feed (re)starts so the
 * source can run a catch-up read for whatever the gap swallowed.
 */
export function subscribeFeed(client: SupabaseClient, channelName: string, tables: FeedTable[], handlers: FeedHandlers, options: { private: boolean } = { private: false }): RealtimeChannel {
  // A project with "Allow public access" off refuses channels that are not private.
  let channel = client.channel(channelName, { config: { private: options.private } });
  for (const table of tables) {
    channel = channel.on('postgres_changes', { event: '*', schema: table.schema, table: table.name }, (payload: RealtimePostgresChangesPayload<Row>) => {
      // supabase/realtime priv/repo/tenant_schema/realtime/functions (apply_rls): errors 413 and 401 come with a cut-down or no record.
      const errors = (payload as { errors?: string[] | null }).errors;
      if (errors && errors.length > 0) {
        handlers.cutDown(table, keyOf(table, payload), errors);
        return;
      }
      for (const event of toEvents(table, payload)) handlers.change(event);
    });
  }
  // https://github.com/supabase/realtime lib/extensions/postgres_cdc_rls: the system
  // message with status ok follows once the server's replication poller is set up.
  channel = channel.on('system', {}, (payload: { extension?: string; status?: string; message?: string }) => {
    if (payload.extension === 'postgres_changes' && payload.status === 'ok') handlers.listening();
    // supabase/realtime RealtimeChannel push_system_message: {extension, status, message}.
    if (payload.status === 'error') handlers.broken(`${payload.extension ?? 'system'}: ${payload.message ?? 'error'}`);
  });
  channel.subscribe((status, error) => {
    if (status === 'SUBSCRIBED') handlers.state(true);
    else if (status === 'CLOSED') handlers.broken('the server closed the channel');
    else handlers.state(false, `${status}${error ? `: ${error.message}` : ''}`);
  });
  return channel;
}

/**
 * The change of one message. An update that moved the row to another key
 * (the old image is whole: REPLICA IDENTITY FULL) is the delete of the old
 * key and the insert of the new one, or the old row would stay on the target.
 */
function toEvents(table: FeedTable, payload: RealtimePostgresChangesPayload<Row>): ChangeEvent[] {
  const op = OPS[payload.eventType];
  if (!op) return [];
  const after = op === 'delete' ? null : (payload.new as Row);
  const before = payload.old && Object.keys(payload.old).length > 0 ? (payload.old as Row) : null;
  const image = after ?? before;
  if (!image) return [];
  const keyOfImage = (row: Row) => Object.fromEntries(table.key.map((k) => [k, row[k] ?? null])) as Row;
  // The row's updated-at, not the commit time: a row cdc-sync wrote carries the time of the change it came from.
  const stamped = after && table.updatedAt ? after[table.updatedAt] : undefined;
  const commitTime = typeof stamped === 'string' && !Number.isNaN(Date.parse(stamped)) ? new Date(stamped) : new Date(payload.commit_timestamp);
  const event: ChangeEvent = { table: table.source, op, key: keyOfImage(image), row: after, before, position: '', commitTime };
  if (op === 'update' && before && table.key.every((k) => k in before) && !sameKey(keyOfImage(before), event.key)) return keyChange(event, keyOfImage(before));
  return [event];
}

/** The key of a cut-down record, when every key column survived the cut (values over 64 bytes are left out). */
function keyOf(table: FeedTable, payload: RealtimePostgresChangesPayload<Row>): Row | null {
  const image = { ...((payload.old as Row | undefined) ?? {}), ...((payload.new as Row | undefined) ?? {}) };
  return table.key.every((k) => image[k] !== undefined && image[k] !== null) ? Object.fromEntries(table.key.map((k) => [k, image[k]!])) : null;
}
