import { createClient, type SupabaseClient } from '@supabase/supabase-js';
import ws from 'ws';
import type { PostgrestStandIn } from './server.js';

/** The real supabase-js client pointed at the stand-in (Node 20 needs `ws` for the Realtime part it builds). */
export function standInClient(standIn: PostgrestStandIn, headers: Record<string, string> = {}): SupabaseClient {
  return createClient(standIn.url, standIn.key, {
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
    global: { headers },
    realtime: { transport: ws as never },
  });
}
