import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Registry } from 'prom-client';
import * as z from 'zod';
import type { BatchRecord } from '../control/batch-log.js';
import type { RetryResult } from '../control/retry-failed.js';
import type { StreamStatus } from '../streams/stream-status.js';
import { ConfigError, TransientError } from '../core/errors.js';
import { bearerMatches } from './auth.js';

/** A stream or filter the request named does not exist (HTTP 404). */
export class NotFoundError extends Error {
  override name = 'NotFoundError';
}

export interface ControlOptions {
  /** Bearer token; when unset the control endpoints are off (404), never open. */
  token?: string | undefined;
  registry: Registry;
  streams: () => StreamStatus[];
  /** Wakes the matching streams' sources; returns their names, throws NotFoundError for an unknown stream. */
  trigger: (filter: { stream?: string | undefined; direction?: 'forward' | 'reverse' | undefined }) => string[];
  retryFailed: (filter: { stream?: string | undefined; table?: string | undefined }) => Promise<Record<string, RetryResult>>;
  logs: (limit: number) => BatchRecord[];
  /** Copies a running stream's tables again; NotFoundError for an unknown stream, ConfigError for a table or source that cannot. */
  snapshot: (request: { stream: string; tables?: string[] | undefined; where?: string | undefined }) => Promise<{ stream: string; tables: string[] }>;
}

export interface ControlStatus extends StreamStatus {
  lagSeconds: number | null;
  pending: number | null;
  /** Per table a copy of existing rows has touched in this process: rows copied, and the share of the table done. */
  snapshot: Record<string, { rows: number; ratio: number }>;
}

/** Small bodies only: these endpoints take a stream and a table name. */
const BODY_LIMIT = 16 * 1024;

/**
 * Directions by our names and by the older scripts' (seed documents 004 and
 * 002): `pull` is on-premises → cloud (SQLite → PostgreSQL there), `push`
 * cloud → on-premises, `both` every stream; `sql-to-postgres` and
 * `postgres-to-sql` name the same two ways.
 */
const DIRECTIONS = { forward: 'forward', reverse: 'reverse', both: undefined, pull: 'forward', push: 'reverse', 'sql-to-postgres': 'forward', 'postgres-to-sql': 'reverse' } as const;
const direction = z.enum(Object.keys(DIRECTIONS) as [keyof typeof DIRECTIONS, ...(keyof typeof DIRECTIONS)[]]).transform((d) => DIRECTIONS[d]);
const triggerBody = z.strictObject({ stream: z.string().min(1).optional(), direction: direction.optional() });
const triggerQuery = z.object({ stream: z.string().min(1).optional(), direction: direction.optional() });
const retryBody = z.strictObject({ stream: z.string().min(1).optional(), table: z.string().min(1).optional() });
const snapshotBody = z.strictObject({ stream: z.string().min(1), tables: z.array(z.string().min(1)).max(1000).optional(), where: z.string().min(1).max(10_000).optional() });
const logsQuery = z.object({ limit: z.coerce.number().int().min(1).max(1000).default(50) });

/**
 * `/api/sync/status`, `trigger`, `retry-failed`, `snapshot` and `logs` behind
 * `Authorization: Bearer <http.token>` (401 without it, 403 with a wrong one).
 */
export function registerControlApi(app: FastifyInstance, options: ControlOptions): void {
  const guard = async (request: FastifyRequest, reply: FastifyReply) => {
    if (!options.token) return reply.code(404).send({ error: 'the control API is off: set http.token' });
    const header = request.headers.authorization;
    if (!header) return reply.code(401).send({ error: 'a bearer token is required (Authorization: Bearer <http.token>)' });
    if (!bearerMatches(header, options.token)) return reply.code(403).send({ error: 'the bearer token is not valid' });
  };
  const invalid = (reply: FastifyReply, error: z.ZodError) => reply.code(400).send({ error: 'invalid request', issues: error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`) });
  const failed = (reply: FastifyReply, error: unknown) => {
    if (error instanceof NotFoundError) return reply.code(404).send({ error: error.message });
    if (error instanceof Error && error.name === 'NotImplementedError') return reply.code(501).send({ error: error.message });
    throw error;
  };

  app.get('/api/sync/status', { preHandler: guard }, async () => ({ streams: await controlStatus(options.registry, options.streams()) }));

  // `?direction=both|push|pull` as the older scripts sent it, or the same in a JSON body; `ok` and `success` are what they answered.
  app.post('/api/sync/trigger', { preHandler: guard, bodyLimit: BODY_LIMIT }, async (request, reply) => {
    const query = triggerQuery.safeParse(request.query ?? {});
    if (!query.success) return invalid(reply, query.error);
    const body = triggerBody.safeParse(request.body ?? {});
    if (!body.success) return invalid(reply, body.error);
    try {
      return { ok: true, success: true, triggered: options.trigger({ ...query.data, ...body.data }) };
    } catch (error) {
      return failed(reply, error);
    }
  });

  // The older scripts' counts: per stream and table, changes applied and failed, what is pending, and when it last synced.
  app.get('/api/sync/stats', { preHandler: guard }, async () => ({ streams: await streamStats(options.registry, options.streams()) }));

  app.get('/api/sync/checkpoints', { preHandler: guard }, async () => ({
    checkpoints: options.streams().map((s) => ({ stream: s.name, direction: s.direction, position: s.position, lastAppliedAt: s.lastAppliedAt })),
  }));

  app.post('/api/sync/retry-failed', { preHandler: guard, bodyLimit: BODY_LIMIT }, async (request, reply) => {
    const body = retryBody.safeParse(request.body ?? {});
    if (!body.success) return invalid(reply, body.error);
    try {
      const streams = await options.retryFailed(body.data);
      const total = (k: 'retried' | 'stillFailing' | 'skipped') => Object.values(streams).reduce((n, r) => n + r[k], 0);
      return { retried: total('retried'), stillFailing: total('stillFailing'), skipped: total('skipped'), streams };
    } catch (error) {
      return failed(reply, error);
    }
  });

  // A copy of existing rows while the stream runs (`cdc-sync snapshot`): 202, the copy goes on in the stream.
  app.post('/api/sync/snapshot', { preHandler: guard, bodyLimit: BODY_LIMIT }, async (request, reply) => {
    const body = snapshotBody.safeParse(request.body ?? {});
    if (!body.success) return invalid(reply, body.error);
    try {
      return reply.code(202).send({ requested: await options.snapshot(body.data) });
    } catch (error) {
      if (error instanceof ConfigError) return reply.code(400).send({ error: error.message });
      if (error instanceof TransientError) return reply.code(409).send({ error: error.message });
      return failed(reply, error);
    }
  });

  app.get('/api/sync/logs', { preHandler: guard }, async (request, reply) => {
    const query = logsQuery.safeParse(request.query ?? {});
    if (!query.success) return invalid(reply, query.error);
    return { batches: options.logs(query.data.limit) };
  });
}

type Series = { value: number; labels: Partial<Record<string, string | number>> }[];

/** Every series of one metric of the registry (none when it is not registered). */
async function seriesOf(registry: Registry, name: string): Promise<Series> {
  return (await registry.getSingleMetric(name)?.get())?.values ?? [];
}

/** The series of one stream. */
function ofStream(values: Series, s: StreamStatus): Series {
  return values.filter((v) => v.labels.stream === s.name && v.labels.direction === s.direction);
}

/** Stream status plus lag and pending backlog from the stream's gauges. */
export async function controlStatus(registry: Registry, streams: StreamStatus[]): Promise<ControlStatus[]> {
  const [lag, pending, rows, ratio] = await Promise.all([
    seriesOf(registry, 'cdc_sync_lag_seconds'),
    seriesOf(registry, 'cdc_sync_pending_events'),
    seriesOf(registry, 'cdc_sync_snapshot_rows_total'),
    seriesOf(registry, 'cdc_sync_snapshot_progress_ratio'),
  ]);
  const valueFor = (values: typeof lag, s: StreamStatus) => ofStream(values, s)[0]?.value ?? null;
  const snapshot = (s: StreamStatus) => {
    const tables: ControlStatus['snapshot'] = {};
    for (const v of ofStream(ratio, s)) {
      const table = String(v.labels.table);
      tables[table] = { rows: ofStream(rows, s).find((r) => r.labels.table === table)?.value ?? 0, ratio: v.value };
    }
    return tables;
  };
  return streams.map((s) => ({ ...s, lagSeconds: valueFor(lag, s), pending: valueFor(pending, s), snapshot: snapshot(s) }));
}

export interface StreamStats {
  stream: string;
  direction: string;
  applied: number;
  failed: number;
  pending: number | null;
  lastSyncAt: string | null;
  tables: Record<string, { applied: number; failed: number }>;
}

/** Applied and failed changes per stream and source table (this process's counters), the backlog and the last apply. */
export async function streamStats(registry: Registry, streams: StreamStatus[]): Promise<StreamStats[]> {
  const [applied, failedCounts, pending] = await Promise.all([
    seriesOf(registry, 'cdc_sync_events_applied_total'),
    seriesOf(registry, 'cdc_sync_events_failed_total'),
    seriesOf(registry, 'cdc_sync_pending_events'),
  ]);
  return streams.map((s) => {
    const tables: StreamStats['tables'] = {};
    const count = (list: Series, key: 'applied' | 'failed') => {
      for (const v of ofStream(list, s)) {
        const table = String(v.labels.table ?? '');
        tables[table] ??= { applied: 0, failed: 0 };
        tables[table][key] += v.value;
      }
    };
    count(applied, 'applied');
    count(failedCounts, 'failed');
    const total = (key: 'applied' | 'failed') => Object.values(tables).reduce((n, t) => n + t[key], 0);
    return { stream: s.name, direction: s.direction, applied: total('applied'), failed: total('failed'), pending: ofStream(pending, s)[0]?.value ?? null, lastSyncAt: s.lastAppliedAt, tables };
  });
}
