import { createClient, type SupabaseClient } from '@supabase/supabase-js';
import ws from 'ws';
import type { PostgrestStandIn } from './server.js';

/**
 * The real supabase-js client pointed at the stand-in (Node 20 needs `ws` for the Realtime part it builds):
 * with the service-role key, or with another project key and a user's token as supabase-js sends them.
 */
export function standInClient(standIn: PostgrestStandIn, headers: Record<string, string> = {}, as?: { apikey: string; token: string }): SupabaseClient {
  return createClient(standIn.url, as?.apikey ?? standIn.key, {
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
    global: { headers: { ...headers, ...(as ? { Authorization: `Bearer ${as.token}` } : {}) } },
    realtime: { transport: ws as never },
  });
}
