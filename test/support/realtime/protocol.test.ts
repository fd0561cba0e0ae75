// Wire-level checks of the Realtime stand-in: exact Phoenix frames for vsn 1.0.0 and 2.0.0,
// both protocol versions through the real RealtimeClient, refusals, sharing an http.Server.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { RealtimePostgresChangesPayload } from '@supabase/supabase-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { createTestDatabase, type TestDatabase } from '../test-database.js';
import { publishTables, type RealtimeServer, startRealtimeServer } from './index.js';
import { realtimeClient, supabaseClient, waitFor } from './test-clients.js';

let db: TestDatabase;
let server: RealtimeServer;
let tableNo = 0;
const cleanups: (() => Promise<unknown> | void)[] = [];

beforeAll(async () => {
  db = await createTestDatabase('realtime_wire');
  server = await startRealtimeServer({ databaseUrl: db.url });
});
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()?.();
});
afterAll(async () => {
  await server?.close();
  await db?.drop();
});

async function table(): Promise<string> {
  const name = `wire_${++tableNo}`;
  // Realtime sends a role only what it may select (apply_rls): these subscribers are service_role.
  await db.query(`CREATE TABLE ${name} (id int PRIMARY KEY, name text); GRANT SELECT ON ${name} TO service_role`);
  await publishTables(db.url, [name]);
  return name;
}

/** A bare WebSocket speaking the protocol by hand. */
async function raw(vsn: string, query = 'apikey=k') {
  const frames: string[] = [];
  const ws = new WebSocket(`${server.websocketUrl}?${query}&vsn=${vsn}`);
  ws.on('message', (data) => frames.push(data.toString()));
  await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
  cleanups.push(() => ws.terminate());
  let seen = 0;
  return {
    send: (frame: unknown) => ws.send(JSON.stringify(frame)),
    /** The next frame not read yet. */
    next: async () => {
      await waitFor(() => frames.length > seen, 'a frame');
      return frames[seen++]!;
    },
  };
}

const upgradeStatus = (query: string, path?: string) => upgradeStatusAt(server.url, query, path);

async function upgradeStatusAt(base: string, query: string, path = '/realtime/v1/websocket'): Promise<number | undefined> {
  const ws = new WebSocket(`${base.replace('http', 'ws')}${path}?${query}`);
  cleanups.push(() => ws.terminate());
  return new Promise((resolve) => {
    ws.on('unexpected-response', (_req, res) => resolve(res.statusCode));
    ws.on('open', () => resolve(101));
    ws.on('error', () => resolve(undefined));
  });
}

describe('Realtime stand-in wire protocol', () => {
  it('vsn 2.0.0: heartbeat, join reply with binding ids, system message, change, leave, unmatched topic', async () => {
    const tbl = await table();
    const c = await raw('2.0.0');
    c.send([null, '1', 'phoenix', 'heartbeat', {}]);
    expect(await c.next()).toBe('[null,"1","phoenix","phx_reply",{"response":{},"status":"ok"}]');

    const binding = { event: 'INSERT', schema: 'public', table: tbl };
    c.send(['2', '2', 'realtime:r', 'phx_join', { config: { postgres_changes: [binding] }, access_token: 'k' }]);
    const reply = JSON.parse(await c.next());
    const id = reply[4].response.postgres_changes[0].id as number;
    expect(reply).toEqual(['2', '2', 'realtime:r', 'phx_reply', { response: { postgres_changes: [{ id, ...binding }] }, status: 'ok' }]);
    expect(Number.isInteger(id) && id >= 0 && id < 2 ** 27).toBe(true);
    expect(await c.next()).toBe(
      '["2",null,"realtime:r","system",{"channel":"r","extension":"postgres_changes","message":"Subscribed to PostgreSQL","status":"ok"}]',
    );

    await db.query(`INSERT INTO ${tbl} VALUES (1, 'a')`);
    await server.flush();
    const change = JSON.parse(await c.next());
    expect(change).toEqual([null, null, 'realtime:r', 'postgres_changes', {
      data: {
        columns: [{ name: 'id', type: 'int4' }, { name: 'name', type: 'text' }],
        commit_timestamp: expect.stringMatching(/Z$/),
        errors: null,
        record: { id: 1, name: 'a' },
        schema: 'public',
        table: tbl,
        type: 'INSERT',
      },
      ids: [id],
    }]);

    c.send(['2', '3', 'realtime:r', 'phx_leave', {}]);
    expect(await c.next()).toBe('["2","3","realtime:r","phx_reply",{"response":{},"status":"ok"}]');
    expect(await c.next()).toBe('["2","2","realtime:r","phx_close",{}]');
    c.send([null, '4', 'realtime:gone', 'broadcast', {}]);
    expect(await c.next()).toBe('[null,"4","realtime:gone","phx_reply",{"response":{"reason":"unmatched topic"},"status":"error"}]');
  });

  it('vsn 1.0.0: JSON objects with topic, event, payload, ref and no join_ref', async () => {
    const c = await raw('1.0.0');
    c.send({ topic: 'phoenix', event: 'heartbeat', payload: {}, ref: '1' });
    expect(await c.next()).toBe('{"event":"phx_reply","payload":{"response":{},"status":"ok"},"ref":"1","topic":"phoenix"}');
    c.send({ topic: 'realtime:v1', event: 'phx_join', payload: { config: { postgres_changes: [] } }, ref: '2', join_ref: '2' });
    expect(await c.next()).toBe('{"event":"phx_reply","payload":{"response":{"postgres_changes":[]},"status":"ok"},"ref":"2","topic":"realtime:v1"}');
  });

  it.each(['1.0.0', '2.0.0'] as const)('RealtimeClient with vsn %s subscribes and receives changes', async (vsn) => {
    const tbl = await table();
    const frames: string[] = [];
    const client = realtimeClient(server.url, 'k', { vsn, frames });
    cleanups.push(() => client.disconnect());
    const got: RealtimePostgresChangesPayload<Record<string, unknown>>[] = [];
    let listening = false;
    client
      .channel(`vsn-${vsn}`)
      .on('postgres_changes', { event: '*', schema: 'public', table: tbl }, (p) => got.push(p))
      .on('system', {}, (p: { status: string }) => (listening = p.status === 'ok'))
      .subscribe();
    await waitFor(() => listening, 'system message');
    await db.query(`INSERT INTO ${tbl} VALUES (5, 'v')`);
    await server.flush();
    await waitFor(() => got.length === 1, 'a change');
    expect(got[0]).toMatchObject({ eventType: 'INSERT', new: { id: 5, name: 'v' } });
    const decoded = frames.map((f) => JSON.parse(f) as unknown);
    if (vsn === '1.0.0') {
      for (const m of decoded) expect(Object.keys(m as object)).toEqual(['event', 'payload', 'ref', 'topic']);
    } else {
      for (const m of decoded) expect(Array.isArray(m) && m.length === 5).toBe(true);
    }
  });

  it('sends apply_rls errors: 400 for a table without primary key, 413 (values ≤ 64 bytes) for a large record', async () => {
    const small = await startRealtimeServer({ databaseUrl: db.url, maxRecordBytes: 300 });
    cleanups.push(() => small.close());
    const tbl = await table();
    await db.query(`CREATE TABLE ${tbl}_nopk (id int, name text); GRANT SELECT ON ${tbl}_nopk TO service_role`);
    await publishTables(db.url, [`${tbl}_nopk`]);
    const frames: string[] = [];
    const client = realtimeClient(small.url, 'k', { frames });
    cleanups.push(() => client.disconnect());
    let listening = false;
    client
      .channel('errors')
      .on('postgres_changes', { event: 'INSERT', schema: 'public', table: tbl }, () => {})
      .on('postgres_changes', { event: 'INSERT', schema: 'public', table: `${tbl}_nopk` }, () => {})
      .on('system', {}, (p: { status: string }) => (listening = p.status === 'ok'))
      .subscribe();
    await waitFor(() => listening, 'system message');
    await db.query(`INSERT INTO ${tbl}_nopk VALUES (1, 'x')`);
    await db.query(`INSERT INTO ${tbl} VALUES (2, $1)`, ['y'.repeat(200)]);
    await small.flush();
    const changes = () => frames.map((f) => JSON.parse(f) as unknown[]).filter((m) => m[3] === 'postgres_changes');
    await waitFor(() => changes().length === 2, 'two changes');
    const [noPk, large] = changes().map((m) => (m[4] as { data: Record<string, unknown> }).data);
    expect(noPk).toEqual({ columns: [], commit_timestamp: null, errors: ['Error 400: Bad Request, no primary key'], record: {}, schema: 'public', table: `${tbl}_nopk`, type: 'INSERT' });
    expect(large).toMatchObject({ errors: ['Error 413: Payload Too Large'] });
    expect(large!.record).toEqual({ id: 2 }); // the 200-byte name is left out
  });

  it('refuses upgrades without apikey or with an unknown vsn (403), and other paths (404)', async () => {
    expect(await upgradeStatus('vsn=2.0.0')).toBe(403);
    expect(await upgradeStatus('apikey=k&vsn=3.0.0')).toBe(403);
    expect(await upgradeStatus('apikey=k&vsn=2.0.0', '/socket/websocket')).toBe(404);
    expect(await upgradeStatus('apikey=k&vsn=2.0.0')).toBe(101);
    expect(server.stats().pollerError).toBeNull();
  });

  it('can share one base URL with another HTTP stand-in (attached to its http.Server)', async () => {
    const rest = http.createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('[]'));
    await new Promise<void>((resolve) => rest.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise((resolve) => rest.close(resolve)));
    const shared = await startRealtimeServer({ databaseUrl: db.url, server: rest });
    cleanups.push(() => shared.close());
    expect(shared.url).toBe(`http://127.0.0.1:${(rest.address() as AddressInfo).port}`);

    const tbl = await table();
    const supabase = supabaseClient(shared.url, 'k');
    cleanups.push(() => supabase.removeAllChannels());
    let status = '';
    supabase.channel('shared').on('postgres_changes', { event: '*', schema: 'public', table: tbl }, () => {}).subscribe((s) => (status = s));
    await waitFor(() => status === 'SUBSCRIBED', 'SUBSCRIBED');
    expect((await fetch(`${shared.url}/rest/v1/${tbl}`)).status).toBe(200);
  });

  it('or forwards plain HTTP requests from its own server to another base URL', async () => {
    const rest = http.createServer((req, res) => res.writeHead(201, { 'x-path': req.url ?? '' }).end(`${req.method}`));
    await new Promise<void>((resolve) => rest.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise((resolve) => rest.close(resolve)));
    const front = await startRealtimeServer({ databaseUrl: db.url, forwardHttpTo: `http://127.0.0.1:${(rest.address() as AddressInfo).port}` });
    cleanups.push(() => front.close());
    const res = await fetch(`${front.url}/rest/v1/t?select=*`, { method: 'POST', body: '{}' });
    expect([res.status, res.headers.get('x-path'), await res.text()]).toEqual([201, '/rest/v1/t?select=*', 'POST']);
    expect(await upgradeStatusAt(front.url, 'apikey=k&vsn=2.0.0')).toBe(101);
  });
});
