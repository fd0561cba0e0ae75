import { embedRawJson, jsonAt, keepJsonTexts, parseJson } from '../../core/json.js';

/**
 * postgrest-js and realtime-js parse JSON with JSON.parse: an int8 key above
 * 2^53 becomes another key, and numeric(30,10) loses digits. These hand them
 * JSON in which such numbers are strings, parsed losslessly once.
 */

// The same cheap test parseJson uses: 16 digits (a dot among them) in a row.
const LONG_DIGITS = /\d[\d.]{15}/;

/** The server clock as the API gateway states it (HTTP Date), for cutoffs that must not depend on this machine's clock. */
export class ServerClock {
  private offsetMs = 0;

  observe(date: string | null): void {
    const at = date ? Date.parse(date) : Number.NaN;
    // Date has whole seconds, cut down: the server's time lies in [at, at + 1 s).
    if (!Number.isNaN(at)) this.offsetMs = at + 500 - Date.now();
  }

  now(): number {
    return Date.now() + this.offsetMs;
  }
}

/**
 * A fetch for supabase-js whose JSON bodies keep every digit (numbers a
 * double cannot hold become strings), and whose request bodies carry a json
 * value's own text where the rows held its marker (rawJsonMarker).
 */
export function losslessFetch(clock: ServerClock): typeof fetch {
  return async (input, init) => {
    const sent = init?.body;
    const response = await fetch(input, typeof sent === 'string' ? { ...init, body: embedRawJson(sent) } : init);
    clock.observe(response.headers.get('date'));
    if (!/json/.test(response.headers.get('content-type') ?? '') || [204, 205, 304].includes(response.status)) return response;
    const text = await response.text();
    const body = LONG_DIGITS.test(text) ? JSON.stringify(parseJson(text)) : text;
    const headers = new Headers(response.headers);
    headers.delete('content-length');
    headers.delete('content-encoding');
    return new Response(body, { status: response.status, statusText: response.statusText, headers });
  };
}

interface Message {
  join_ref: unknown;
  ref: unknown;
  topic: unknown;
  event: unknown;
  payload: unknown;
}

/**
 * realtime-js's `decode` for the 2.0.0 serializer's text frames
 * ([join_ref, ref, topic, event, payload], realtime-js lib/serializer.ts),
 * parsed losslessly. Binary frames carry only broadcasts, which cdc-sync
 * does not subscribe to.
 */
export function losslessDecode(raw: unknown, callback: (message: Message | Record<string, never>) => void): void {
  if (typeof raw !== 'string') return callback({});
  const [join_ref, ref, topic, event, payload] = parseJson(raw) as unknown[];
  if (event === 'postgres_changes') {
    keepLongNumbers(payload);
    restoreByteaPrefix(payload);
    keepJsonText(payload, raw);
  }
  return callback({ join_ref, ref, topic, event, payload });
}

type ChangeData = { columns?: { name: string; type: string }[]; record?: Record<string, unknown>; old_record?: Record<string, unknown> };

function changeData(payload: unknown): ChangeData | undefined {
  return (payload as { data?: ChangeData } | null)?.data;
}

/**
 * wal2json writes a bytea value as its hex digits without the `\x`
 * (wal2json.c, "start after \x"), and Realtime passes that text on as it
 * is (supabase/realtime migration FixByteaDoubleEncodingInCast). PostgREST
 * and PostgreSQL write `\x…`: the prefix back makes a Realtime image equal
 * to the catch-up read's, and keeps hex digits from being read as base64.
 */
function restoreByteaPrefix(payload: unknown): void {
  const data = changeData(payload);
  if (!data?.columns) return;
  for (const column of data.columns) {
    if (column.type !== 'bytea') continue;
    for (const image of [data.record, data.old_record]) {
      const value = image?.[column.name];
      if (typeof value === 'string' && !value.startsWith('\\x')) image![column.name] = `\\x${value}`;
    }
  }
}

/**
 * A json or jsonb column's value as the message wrote it (JsonText):
 * parsed, a number would lose its trailing zeros and digits beyond a
 * double's, and realtime-js parses a JSON string that reads as JSON
 * (lib/transformers.ts, toJson: JSON.parse of any string), so "1.0" would
 * become 1. toJson hands any value that is not a string on as it is.
 */
function keepJsonText(payload: unknown, raw: string): void {
  const data = changeData(payload);
  const json = new Set((data?.columns ?? []).filter((c) => c.type === 'json' || c.type === 'jsonb').map((c) => c.name));
  if (!data || json.size === 0) return;
  for (const side of ['record', 'old_record'] as const) {
    const image = data[side];
    const text = image ? jsonAt(raw, [4, 'data', side]) : undefined;
    if (!image || text === undefined) continue;
    keepJsonTexts(image, text, json);
  }
}

/**
 * realtime-js converts int8, numeric and float columns with parseFloat
 * (lib/transformers.ts, convertCell → toNumber), which would undo the
 * lossless parse: a column whose value came out as a digit string is
 * declared text for this one message, so the string is handed on as it is.
 */
function keepLongNumbers(payload: unknown): void {
  const data = changeData(payload);
  if (!data?.columns) return;
  for (const column of data.columns) {
    const values = [data.record?.[column.name], data.old_record?.[column.name]];
    if (values.some((v) => typeof v === 'string') && /^(int8|numeric|float8|float4|int4|int2|oid)$/.test(column.type)) column.type = 'text';
  }
}
