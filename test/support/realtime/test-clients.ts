// Helpers for driving the Realtime stand-in with the real clients.
// supabase-js re-exports @supabase/realtime-js (the same 2.108.2 instance it uses itself).
import { createClient, RealtimeClient, type RealtimeClientOptions, type SupabaseClient } from '@supabase/supabase-js';
import WebSocket from 'ws';

/** A `ws` WebSocket that also records every frame the server sends, for wire-format checks. */
export function recordingTransport(frames: string[]): new (address: string | URL, protocols?: string | string[]) => WebSocket {
  return class RecordingWebSocket extends WebSocket {
    constructor(address: string | URL, protocols?: string | string[]) {
      super(address, protocols);
      this.on('message', (data, isBinary) => {
        if (!isBinary) frames.push(data.toString());
      });
    }
  };
}

export interface ClientOptions {
  frames?: string[];
  vsn?: '1.0.0' | '2.0.0';
  reconnectAfterMs?: number;
  heartbeatIntervalMs?: number;
  heartbeatCallback?: RealtimeClientOptions['heartbeatCallback'];
}

function realtimeOptions(options: ClientOptions): RealtimeClientOptions {
  return {
    transport: (options.frames ? recordingTransport(options.frames) : WebSocket) as never,
    ...(options.vsn ? { vsn: options.vsn } : {}),
    reconnectAfterMs: () => options.reconnectAfterMs ?? 200,
    ...(options.heartbeatIntervalMs ? { heartbeatIntervalMs: options.heartbeatIntervalMs } : {}),
    ...(options.heartbeatCallback ? { heartbeatCallback: options.heartbeatCallback } : {}),
  };
}

/** supabase-js, the way the product builds it on Node 20 (no global WebSocket). */
export function supabaseClient(url: string, key: string, options: ClientOptions = {}): SupabaseClient {
  return createClient(url, key, {
    auth: { persistSession: false, autoRefreshToken: false },
    realtime: realtimeOptions(options),
  });
}

/** realtime-js on its own. */
export function realtimeClient(url: string, key: string, options: ClientOptions = {}): RealtimeClient {
  return new RealtimeClient(`${url}/realtime/v1`, { params: { apikey: key }, ...realtimeOptions(options) });
}

export async function waitFor<T>(probe: () => T | undefined | false | null, what: string, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined && value !== false && value !== null) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The postgres_changes frames among recorded ones, decoded for either vsn. */
export function changeFrames(frames: string[]): { topic: string; payload: { ids: number[]; data: Record<string, unknown> } }[] {
  return frames
    .map((f) => JSON.parse(f) as unknown)
    .map((m) => (Array.isArray(m) ? { topic: m[2], event: m[3], payload: m[4] } : (m as { topic: string; event: string; payload: unknown })))
    .filter((m) => m.event === 'postgres_changes') as never;
}
