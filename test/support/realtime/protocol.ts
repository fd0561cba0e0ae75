// Phoenix channel wire format as the Supabase Realtime server speaks it, for both protocol
// versions the realtime-js client can ask for with `?vsn=` (RealtimeClient option `vsn`,
// default '2.0.0': supabase/supabase-js packages/core/realtime-js/src/lib/constants.ts).
//
// vsn 1.0.0 — phoenixframework/phoenix lib/phoenix/socket/serializers/v1_json_serializer.ex:
//   every frame is a JSON object made of `topic`, `event`, `payload`, `ref` only (the server
//   never sends `join_ref` in 1.0.0); replies are `event: "phx_reply"` with
//   `payload: {status, response}`; broadcasts (postgres_changes) have `ref: null`.
// vsn 2.0.0 — supabase/realtime lib/realtime_web/socket/v2_serializer.ex (a superset of
//   Phoenix's V2 JSONSerializer): text frames are JSON arrays
//   `[join_ref, ref, topic, event, payload]`; pushes carry the channel's join_ref and a null
//   ref; fastlane broadcasts (postgres_changes) are `[null, null, topic, event, payload]`.
//   Binary frames exist only for user broadcast (kinds 3/4, see the client's
//   src/lib/serializer.ts); postgres_changes never uses them, so binary input is ignored here.
//
// Maps are encoded by Jason in key order (Elixir small maps iterate sorted), so the objects
// below list their keys alphabetically, as the real server does. Payloads are passed in as
// JSON text so that database-produced fragments (record, columns) go out byte for byte, like
// Jason.Fragment in supabase/realtime lib/extensions/postgres_cdc_rls/replication_poller.ex.

export type Vsn = '1.0.0' | '2.0.0';

export interface InboundMessage {
  joinRef: string | null;
  ref: string | null;
  topic: string;
  event: string;
  payload: Record<string, unknown>;
}

export interface Address {
  joinRef: string | null;
  ref: string | null;
  topic: string;
}

/**
 * Phoenix accepts `vsn` matching "~> 1.0.0" (V1 serializer) or "~> 2.0.0" (V2), and treats a
 * missing vsn as "1.0.0" (phoenixframework/phoenix lib/phoenix/socket.ex, negotiate_serializer).
 * Anything else is refused (403 at the upgrade).
 */
export function negotiateVsn(vsn: string | null): Vsn | null {
  if (vsn === null) return '1.0.0';
  if (/^1\.0\.\d+$/.test(vsn)) return '1.0.0';
  if (/^2\.0\.\d+$/.test(vsn)) return '2.0.0';
  return null;
}

const str = (value: unknown): string | null =>
  typeof value === 'string' ? value : typeof value === 'number' ? String(value) : null;

const asPayload = (value: unknown): Record<string, unknown> =>
  value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : {};

/** Decodes one client frame; null for frames this stand-in does not understand. */
export function decodeFrame(vsn: Vsn, data: string): InboundMessage | null {
  let parsed: unknown;
  try {
    parsed = JSON.parse(data);
  } catch {
    return null;
  }
  if (vsn === '2.0.0') {
    if (!Array.isArray(parsed) || parsed.length !== 5) return null;
    const [joinRef, ref, topic, event, payload] = parsed as unknown[];
    if (typeof topic !== 'string' || typeof event !== 'string') return null;
    return { joinRef: str(joinRef), ref: str(ref), topic, event, payload: asPayload(payload) };
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return null;
  const m = parsed as Record<string, unknown>;
  if (typeof m.topic !== 'string' || typeof m.event !== 'string') return null;
  return { joinRef: str(m.join_ref), ref: str(m.ref), topic: m.topic, event: m.event, payload: asPayload(m.payload) };
}

const j = JSON.stringify;

function frame(vsn: Vsn, addr: Address, event: string, payloadJson: string): string {
  if (vsn === '2.0.0') return `[${j(addr.joinRef)},${j(addr.ref)},${j(addr.topic)},${j(event)},${payloadJson}]`;
  return `{"event":${j(event)},"payload":${payloadJson},"ref":${j(addr.ref)},"topic":${j(addr.topic)}}`;
}

/** %Phoenix.Socket.Reply{}: event phx_reply, payload {response, status}. */
export function encodeReply(vsn: Vsn, addr: Address, status: 'ok' | 'error', responseJson: string): string {
  return frame(vsn, addr, 'phx_reply', `{"response":${responseJson},"status":${j(status)}}`);
}

/** %Phoenix.Socket.Message{} pushed by a channel process (system messages, phx_close). */
export function encodePush(vsn: Vsn, addr: Address, event: string, payloadJson: string): string {
  return frame(vsn, addr, event, payloadJson);
}

/** %Phoenix.Socket.Broadcast{} sent through the fastlane: no join_ref, no ref. */
export function encodeBroadcast(vsn: Vsn, topic: string, event: string, payloadJson: string): string {
  return frame(vsn, { joinRef: null, ref: null, topic }, event, payloadJson);
}
