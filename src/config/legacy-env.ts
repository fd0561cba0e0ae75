import type { Environment } from './load.js';

/**
 * Settings of the older sync scripts keep working where they mean the same
 * thing; a value in the file always wins over the environment.
 */
export function applyLegacyEnvironment(document: unknown, env: Environment): unknown {
  if (!document || typeof document !== 'object' || !Array.isArray((document as { streams?: unknown }).streams)) {
    return document;
  }
  const batchSize = integer(env.SYNC_BATCH_SIZE);
  const streams = (document as { streams: unknown[] }).streams.map((stream) => {
    if (!stream || typeof stream !== 'object') return stream;
    const s = stream as Record<string, unknown>;
    if (batchSize !== undefined) {
      const batch = (s.batch ?? {}) as Record<string, unknown>;
      if (batch.maxSize === undefined) s.batch = { ...batch, maxSize: batchSize };
    }
    return s;
  });
  return { ...(document as object), streams };
}

function integer(text: string | undefined): number | undefined {
  if (text === undefined || text.trim() === '') return undefined;
  const n = Number(text);
  return Number.isInteger(n) ? n : undefined;
}
