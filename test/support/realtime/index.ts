// Supabase Realtime stand-in for tests (see server.ts).
export { startRealtimeServer, WEBSOCKET_PATH } from './server.js';
export type { RateLimit, RealtimeServer, RealtimeServerOptions, RealtimeServerStats } from './server.js';
export { ensurePublication, publishTables } from './publication.js';
export type { PublishOptions } from './publication.js';
