import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import type { FastifyInstance } from 'fastify';
import { createHttpServer } from '../../src/server/http.js';
import { NotFoundError } from '../../src/server/control.js';
import { ConfigError, TransientError } from '../../src/core/errors.js';
import { BatchLog } from '../../src/control/batch-log.js';
import { createMetrics } from '../../src/metrics/metrics.js';
import type { StreamStatus } from '../../src/streams/stream-status.js';

const TOKEN = 'control-token-123';
const auth = { authorization: `Bearer ${TOKEN}` };

function status(name: string, direction: string): StreamStatus {
  return {
    name,
    direction,
    source: 'postgres-changelog',
    sink: 'postgres',
    state: 'running',
    connected: true,
    position: '{"after":"42"}',
    applied: 7,
    failed: 1,
    lastError: 'violates check constraint',
    problems: [],
    lastAppliedAt: '2026-01-01T00:00:00.000Z',
    copying: name === 'a-to-b' ? ['public.items'] : [],
  };
}

const woken: string[] = [];
const retries: unknown[] = [];
const snapshots: unknown[] = [];
const batchLog = new BatchLog(200);
let app: FastifyInstance;
let off: FastifyInstance;

function server(token: string | undefined): FastifyInstance {
  const metrics = createMetrics(new Registry());
  metrics.lag.set({ stream: 'a-to-b', direction: 'forward' }, 2.5);
  metrics.pending.set({ stream: 'a-to-b', direction: 'forward' }, 12);
  metrics.snapshotRows.inc({ stream: 'a-to-b', direction: 'forward', table: 'public.items' }, 4500);
  metrics.snapshotProgress.set({ stream: 'a-to-b', direction: 'forward', table: 'public.items' }, 0.45);
  const streams = [status('a-to-b', 'forward'), status('b-to-a', 'reverse')];
  return createHttpServer({
    registry: metrics.registry,
    streams: () => streams,
    wake: () => undefined,
    token,
    control: {
      trigger: ({ stream, direction }) => {
        if (stream && !streams.some((s) => s.name === stream)) throw new NotFoundError(`no stream named "${stream}"`);
        const chosen = streams.filter((s) => (!stream || s.name === stream) && (!direction || s.direction === direction)).map((s) => s.name);
        woken.push(...chosen);
        return chosen;
      },
      retryFailed: async (filter) => {
        retries.push(filter);
        return { 'a-to-b': { retried: 2, stillFailing: 1, skipped: 0 } };
      },
      logs: (limit) => batchLog.recent(limit),
      snapshot: async (request) => {
        if (request.stream === 'nope') throw new NotFoundError('no stream named "nope"');
        if (request.tables?.includes('public.unknown')) throw new ConfigError('--table: not a table of stream a-to-b: public.unknown');
        if (request.stream === 'b-to-a') throw new TransientError('stream b-to-a is not running (failed); ask again once it runs');
        snapshots.push(request);
        return { stream: request.stream, tables: request.tables ?? [] };
      },
    },
  });
}

beforeAll(async () => {
  app = server(TOKEN);
  off = server(undefined);
  await Promise.all([app.ready(), off.ready()]);
});
afterAll(async () => {
  await Promise.all([app.close(), off.close()]);
});

describe('control API authentication', () => {
  it('answers 401 without an Authorization header', async () => {
    const response = await app.inject({ method: 'GET', url: '/api/sync/status' });
    expect(response.statusCode).toBe(401);
  });

  it('answers 403 with a wrong bearer token', async () => {
    for (const authorization of ['Bearer wrong', `Bearer ${TOKEN}x`, TOKEN]) {
      const response = await app.inject({ method: 'POST', url: '/api/sync/trigger', headers: { authorization }, payload: {} });
      expect(response.statusCode).toBe(403);
    }
    expect(woken).toEqual([]);
  });

  it('is off (404), not open, when no token is configured', async () => {
    for (const [method, url] of [['GET', '/api/sync/status'], ['POST', '/api/sync/trigger'], ['POST', '/api/sync/retry-failed'], ['GET', '/api/sync/logs']] as const) {
      const response = await off.inject({ method, url, headers: auth, ...(method === 'POST' ? { payload: {} } : {}) });
      expect(response.statusCode).toBe(404);
      expect(response.json()).toEqual({ error: 'the control API is off: set http.token' });
    }
    expect(woken).toEqual([]);
  });
});

describe('GET /api/sync/status', () => {
  // A stream without gauge series (none reported yet) shows null: unknown, not 0.
  it('lists every stream with position, lag and pending from its gauges', async () => {
    const response = await app.inject({ method: 'GET', url: '/api/sync/status', headers: auth });
    expect(response.statusCode).toBe(200);
    const [first, second] = response.json().streams;
    expect(first).toEqual({
      ...status('a-to-b', 'forward'),
      lagSeconds: 2.5,
      pending: 12,
      snapshot: { 'public.items': { rows: 4500, ratio: 0.45 } },
    });
    expect(second).toMatchObject({ name: 'b-to-a', direction: 'reverse', position: '{"after":"42"}', lagSeconds: null, pending: null });
  });
});

describe('POST /api/sync/snapshot', () => {
  it('asks a running stream for a copy of some tables (202), and says why it cannot: unknown stream 404, unknown table 400, stream not running 409', async () => {
    const ask = (payload: unknown) => app.inject({ method: 'POST', url: '/api/sync/snapshot', headers: auth, payload: payload as object });
    const accepted = await ask({ stream: 'a-to-b', tables: ['public.items'] });
    expect(accepted.statusCode).toBe(202);
    expect(accepted.json()).toEqual({ requested: { stream: 'a-to-b', tables: ['public.items'] } });
    expect(snapshots).toEqual([{ stream: 'a-to-b', tables: ['public.items'] }]);
    expect((await ask({ stream: 'nope' })).statusCode).toBe(404);
    expect((await ask({ stream: 'a-to-b', tables: ['public.unknown'] })).json()).toEqual({ error: '--table: not a table of stream a-to-b: public.unknown' });
    expect((await ask({ stream: 'b-to-a' })).statusCode).toBe(409);
    expect((await ask({})).statusCode).toBe(400); // the stream is required: a copy of everything everywhere is not one click away
    expect((await ask({ stream: 'a-to-b', columns: ['id'] })).statusCode).toBe(400); // an unknown key of the body
    expect((await off.inject({ method: 'POST', url: '/api/sync/snapshot', headers: auth, payload: { stream: 'a-to-b' } })).statusCode).toBe(404);
    expect(snapshots).toHaveLength(1);
  });
});

describe('POST /api/sync/trigger', () => {
  it('wakes all streams for an empty body and only the named ones otherwise', async () => {
    woken.length = 0;
    expect((await app.inject({ method: 'POST', url: '/api/sync/trigger', headers: auth })).json()).toEqual({ ok: true, success: true, triggered: ['a-to-b', 'b-to-a'] });
    expect((await app.inject({ method: 'POST', url: '/api/sync/trigger', headers: auth, payload: { direction: 'reverse' } })).json()).toMatchObject({
      triggered: ['b-to-a'],
    });
    expect((await app.inject({ method: 'POST', url: '/api/sync/trigger', headers: auth, payload: { stream: 'a-to-b' } })).json()).toMatchObject({
      triggered: ['a-to-b'],
    });
    expect(woken).toEqual(['a-to-b', 'b-to-a', 'b-to-a', 'a-to-b']);
  });

  it('takes the older scripts\' directions: ?direction=both|push|pull and sql-to-postgres / postgres-to-sql in the body', async () => {
    const triggered = async (request: { url: string; payload?: object }) =>
      ((await app.inject({ method: 'POST', headers: auth, ...request })).json() as { ok: boolean; triggered: string[] }).triggered;
    expect(await triggered({ url: '/api/sync/trigger?direction=both' })).toEqual(['a-to-b', 'b-to-a']);
    expect(await triggered({ url: '/api/sync/trigger?direction=pull' })).toEqual(['a-to-b']);
    expect(await triggered({ url: '/api/sync/trigger?direction=push' })).toEqual(['b-to-a']);
    expect(await triggered({ url: '/api/sync/trigger', payload: { direction: 'sql-to-postgres' } })).toEqual(['a-to-b']);
    expect(await triggered({ url: '/api/sync/trigger', payload: { direction: 'postgres-to-sql' } })).toEqual(['b-to-a']);
    expect((await app.inject({ method: 'POST', url: '/api/sync/trigger?direction=sideways', headers: auth })).statusCode).toBe(400);
  });

  it('answers 404 for an unknown stream', async () => {
    const response = await app.inject({ method: 'POST', url: '/api/sync/trigger', headers: auth, payload: { stream: 'nope' } });
    expect(response.statusCode).toBe(404);
    expect(response.json().error).toContain('nope');
  });

  it('answers 400 for a body that is malformed JSON or has the wrong shape', async () => {
    const malformed = await app.inject({
      method: 'POST',
      url: '/api/sync/trigger',
      headers: { ...auth, 'content-type': 'application/json' },
      payload: '{"stream": ',
    });
    expect(malformed.statusCode).toBe(400);
    const wrong = await app.inject({ method: 'POST', url: '/api/sync/trigger', headers: auth, payload: { direction: 'sideways' } });
    expect(wrong.statusCode).toBe(400);
    const extra = await app.inject({ method: 'POST', url: '/api/sync/trigger', headers: auth, payload: { stream: 'a-to-b', drop: true } });
    expect(extra.statusCode).toBe(400);
  });

  it('answers 413 for a body over 16 KiB', async () => {
    const response = await app.inject({ method: 'POST', url: '/api/sync/trigger', headers: auth, payload: { stream: 'x'.repeat(20_000) } });
    expect(response.statusCode).toBe(413);
  });
});

describe('POST /api/sync/retry-failed', () => {
  it('passes stream and table on and answers the totals', async () => {
    const response = await app.inject({ method: 'POST', url: '/api/sync/retry-failed', headers: auth, payload: { stream: 'a-to-b', table: 'public.items' } });
    expect(response.statusCode).toBe(200);
    expect(response.json()).toMatchObject({ retried: 2, stillFailing: 1 });
    expect(retries.at(-1)).toEqual({ stream: 'a-to-b', table: 'public.items' });
  });

  it('answers 413 for a body over 16 KiB', async () => {
    const response = await app.inject({ method: 'POST', url: '/api/sync/retry-failed', headers: auth, payload: { table: 'x'.repeat(20_000) } });
    expect(response.statusCode).toBe(413);
  });
});

describe('GET /api/sync/logs', () => {
  it('keeps only the last 200 batches, newest first, and honours ?limit', async () => {
    for (let i = 0; i < 250; i++) {
      batchLog.add({ time: new Date(i * 1000).toISOString(), stream: 'a-to-b', tables: { 'public.items': { applied: i, failed: 0 } }, durationMs: 1 });
    }
    const all = (await app.inject({ method: 'GET', url: '/api/sync/logs?limit=1000', headers: auth })).json().batches;
    expect(all).toHaveLength(200);
    expect(all[0].tables['public.items'].applied).toBe(249);
    expect(all.at(-1).tables['public.items'].applied).toBe(50);
    const few = (await app.inject({ method: 'GET', url: '/api/sync/logs?limit=3', headers: auth })).json().batches;
    expect(few.map((b: { tables: Record<string, { applied: number }> }) => b.tables['public.items']!.applied)).toEqual([249, 248, 247]);
    expect((await app.inject({ method: 'GET', url: '/api/sync/logs?limit=abc', headers: auth })).statusCode).toBe(400);
  });
});

describe('GET /api/sync/stats and /api/sync/checkpoints (the older scripts\' endpoints)', () => {
  it('counts applied and failed changes per stream and table, with the backlog and the last sync time', async () => {
    const metrics = createMetrics(new Registry());
    metrics.applied.inc({ stream: 'a-to-b', direction: 'forward', table: 'public.items', op: 'insert' }, 5);
    metrics.applied.inc({ stream: 'a-to-b', direction: 'forward', table: 'public.items', op: 'update' }, 2);
    metrics.applied.inc({ stream: 'a-to-b', direction: 'forward', table: 'public.notes', op: 'delete' }, 1);
    metrics.failed.inc({ stream: 'a-to-b', direction: 'forward', table: 'public.items', reason: 'permanent' }, 3);
    metrics.pending.set({ stream: 'a-to-b', direction: 'forward' }, 12);
    const streams = [status('a-to-b', 'forward')];
    const stats = createHttpServer({ registry: metrics.registry, streams: () => streams, wake: () => undefined, token: TOKEN, control: { trigger: () => [], retryFailed: async () => ({}), logs: () => [], snapshot: async () => ({ stream: '', tables: [] }) } });
    try {
      expect((await stats.inject({ method: 'GET', url: '/api/sync/stats', headers: auth })).json()).toEqual({
        streams: [
          {
            stream: 'a-to-b',
            direction: 'forward',
            applied: 8,
            failed: 3,
            pending: 12,
            lastSyncAt: '2026-01-01T00:00:00.000Z',
            tables: { 'public.items': { applied: 7, failed: 3 }, 'public.notes': { applied: 1, failed: 0 } },
          },
        ],
      });
      expect((await stats.inject({ method: 'GET', url: '/api/sync/checkpoints', headers: auth })).json()).toEqual({
        checkpoints: [{ stream: 'a-to-b', direction: 'forward', position: '{"after":"42"}', lastAppliedAt: '2026-01-01T00:00:00.000Z' }],
      });
      expect((await stats.inject({ method: 'GET', url: '/api/sync/stats' })).statusCode).toBe(401);
    } finally {
      await stats.close();
    }
  });
});
