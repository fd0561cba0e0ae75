import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import type { FastifyInstance } from 'fastify';
import { createHttpServer } from '../../src/server/http.js';
import type { WebhookPayload } from '../../src/server/webhook.js';

const SECRET = 'a-long-shared-webhook-secret';
let app: FastifyInstance;
let base: string;
const received: WebhookPayload[] = [];

beforeAll(async () => {
  app = createHttpServer({
    registry: new Registry(),
    streams: () => [],
    wake: () => undefined,
    webhook: {
      secret: SECRET,
      header: 'x-webhook-secret',
      bodyLimit: 1024,
      receive: (payload) => {
        if (payload.table !== 'aligner_notes') return false;
        received.push(payload);
        return true;
      },
    },
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
});

afterAll(async () => {
  await app.close();
});

const post = (body: unknown, headers: Record<string, string> = { 'x-webhook-secret': SECRET }) =>
  fetch(`${base}/api/sync/webhook`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body) });

const insert = { type: 'INSERT', table: 'aligner_notes', schema: 'public', record: { id: 1, note: 'hi' }, old_record: null };

describe('POST /api/sync/webhook', () => {
  it('accepts a Database Webhook payload for a configured table', async () => {
    const response = await post(insert);
    expect(response.status).toBe(202);
    expect(received.at(-1)).toEqual(insert);
  });

  it('rejects a request without the secret (401) and with a wrong one (403), changing nothing', async () => {
    const before = received.length;
    expect((await post(insert, {})).status).toBe(401);
    expect((await post(insert, { 'x-webhook-secret': 'wrong-secret-of-the-same-len' })).status).toBe(403);
    expect((await post(insert, { 'x-webhook-secret': 'short' })).status).toBe(403);
    expect(received.length).toBe(before);
  });

  it('rejects tables no stream takes, malformed payloads and oversized bodies with a clear 4xx', async () => {
    const before = received.length;
    const unknown = await post({ ...insert, table: 'secrets' });
    expect(unknown.status).toBe(422);
    expect(((await unknown.json()) as { error: string }).error).toContain('public.secrets');
    const malformed = await post({ type: 'TRUNCATE', table: 'aligner_notes' });
    expect(malformed.status).toBe(400);
    expect(JSON.stringify(await malformed.json())).toContain('type');
    expect((await post('{not json')).status).toBe(400);
    expect((await post({ ...insert, record: { id: 1, note: 'x'.repeat(2000) } })).status).toBe(413);
    expect((await post({ ...insert, type: 'DELETE', old_record: null })).status).toBe(400);
    expect(received.length).toBe(before);
  });
});
