import type { Environment } from './environment.js';

/**
 * Settings of the older sync scripts keep working where they mean the same
 * thing; a value in the file always wins over the environment.
 */
export function applyLegacyEnvironment(document: unknown, env: Environment): unknown {
  if (!document || typeof document !== 'object' || !Array.isArray((document as { streams?: unknown }).streams)) {
    return document;
  }
  const batchSize = integer(env.SYNC_BATCH_SIZE);
  const reverse = {
    enabled: flag(env.REVERSE_SYNC_ENABLED),
    intervalMinutes: integer(env.REVERSE_SYNC_INTERVAL_MINUTES),
    lookbackHours: integer(env.REVERSE_SYNC_LOOKBACK_HOURS),
    maxRecords: integer(env.REVERSE_SYNC_MAX_RECORDS),
  };
  const streams = (document as { streams: unknown[] }).streams.map((stream) => {
    if (!stream || typeof stream !== 'object') return stream;
    const s = { ...(stream as Record<string, unknown>) };
    if (batchSize !== undefined) {
      const batch = (s.batch ?? {}) as Record<string, unknown>;
      if (batch.maxSize === undefined) s.batch = { ...batch, maxSize: batchSize };
    }
    const source = s.source as Record<string, unknown> | undefined;
    if (source?.type === 'supabase-realtime') {
      // The older reverse poller: Supabase → SQL Server.
      if (reverse.enabled !== undefined && s.enabled === undefined) s.enabled = reverse.enabled;
      const catchUp = { ...((source.catchUp ?? {}) as Record<string, unknown>) };
      for (const name of ['intervalMinutes', 'lookbackHours', 'maxRecords'] as const) {
        if (reverse[name] !== undefined && catchUp[name] === undefined) catchUp[name] = reverse[name];
      }
      s.source = { ...source, catchUp };
    }
    return s;
  });
  const result: Record<string, unknown> = { ...(document as object), streams };
  // The older sync's SYNC_MODE=cron + SYNC_CRON; SYNC_MODE=continuous (or unset) changes nothing.
  if (env.SYNC_MODE?.trim().toLowerCase() === 'cron' && result.schedule === undefined) result.schedule = { cron: env.SYNC_CRON ?? '' };
  return result;
}

function flag(text: string | undefined): boolean | undefined {
  if (text === undefined || text.trim() === '') return undefined;
  return /^(1|true|yes|on)$/i.test(text.trim());
}

function integer(text: string | undefined): number | undefined {
  if (text === undefined || text.trim() === '') return undefined;
  const n = Number(text);
  return Number.isInteger(n) ? n : undefined;
}
