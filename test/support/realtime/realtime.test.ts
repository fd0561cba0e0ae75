// The Realtime stand-in driven by the real @supabase/supabase-js / @supabase/realtime-js clients.
import type { RealtimePostgresChangesPayload, SupabaseClient } from '@supabase/supabase-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../test-database.js';
import { publishTables, type RealtimeServer, startRealtimeServer } from './index.js';
import { createSupabaseRoles } from '../supabase-roles.js';
import { ANON_KEY, SERVICE_ROLE_KEY, USER_TOKEN } from '../supabase-keys.js';
import { changeFrames, sleep, supabaseClient, waitFor } from './test-clients.js';

type Row = Record<string, unknown>;
type Payload = RealtimePostgresChangesPayload<Row>;

let db: TestDatabase;
let server: RealtimeServer | undefined;
let clients: SupabaseClient[] = [];
let tableNo = 0;

beforeAll(async () => {
  db = await createTestDatabase('realtime');
  await createSupabaseRoles(db);
});
afterEach(async () => {
  for (const c of clients) await c.removeAllChannels();
  clients = [];
  await server?.close();
  server = undefined;
});
afterAll(() => db?.drop());

async function table(opts: { full?: boolean; publish?: boolean } = {}): Promise<string> {
  const name = `items_${++tableNo}`;
  // Realtime sends a role only what it may select (apply_rls): the subscribers here are service_role.
  await db.query(`CREATE TABLE ${name} (id int PRIMARY KEY, name text, qty numeric, tags text[], meta jsonb, done bool, at timestamptz); GRANT SELECT ON ${name} TO service_role`);
  if (opts.publish !== false) await publishTables(db.url, [name], { replicaIdentityFull: opts.full });
  return name;
}

async function start(options: { systemMessageDelayMs?: number } = {}): Promise<RealtimeServer> {
  server = await startRealtimeServer({ databaseUrl: db.url, ...options });
  return server;
}

/** A channel with one postgres_changes binding, recording everything it hears. */
function listen(srv: RealtimeServer, tbl: string, opts: { frames?: string[]; event?: '*' | 'INSERT' | 'UPDATE' | 'DELETE'; filter?: string; key?: string; token?: string } = {}) {
  const supabase = supabaseClient(srv.url, opts.key ?? SERVICE_ROLE_KEY, { frames: opts.frames });
  // A signed-in user's token goes with the join (realtime-js: the channel's access_token).
  if (opts.token) void supabase.realtime.setAuth(opts.token);
  clients.push(supabase);
  const heard = { changes: [] as Payload[], statuses: [] as string[], system: [] as Row[] };
  const filter = { event: opts.event ?? '*', schema: 'public', table: tbl, ...(opts.filter ? { filter: opts.filter } : {}) };
  const channel = supabase
    .channel('x')
    .on('postgres_changes', filter as never, (p: Payload) => heard.changes.push(p))
    .on('system', {}, (p: Row) => heard.system.push(p))
    .subscribe((status) => heard.statuses.push(status));
  const subscribedTimes = () => heard.system.filter((s) => s.status === 'ok').length;
  return { supabase, channel, heard, listening: (n = 1) => waitFor(() => subscribedTimes() >= n, `system message #${n}`) };
}

const ids = (changes: Payload[]) => changes.map((c) => (c.eventType === 'DELETE' ? c.old.id : c.new.id));

describe('Realtime stand-in with supabase-js', () => {
  it('subscribes and delivers INSERT / UPDATE / DELETE with Realtime’s payload shapes (REPLICA IDENTITY DEFAULT)', async () => {
    const tbl = await table();
    const srv = await start();
    const frames: string[] = [];
    const { heard, listening } = listen(srv, tbl, { frames });
    await waitFor(() => heard.statuses.includes('SUBSCRIBED'), 'SUBSCRIBED');
    await listening();
    expect(heard.system[0]).toEqual({ extension: 'postgres_changes', status: 'ok', message: 'Subscribed to PostgreSQL', channel: 'x' });

    await db.query(`INSERT INTO ${tbl} VALUES (1, 'a', 1.50, '{red,blue}', '{"k": [1, 2]}', true, '2024-01-02 03:04:05.678+00')`);
    await db.query(`UPDATE ${tbl} SET name = 'b' WHERE id = 1`);
    await db.query(`DELETE FROM ${tbl} WHERE id = 1`);
    await srv.flush();
    await waitFor(() => heard.changes.length >= 3, 'three changes');

    const [ins, upd, del] = heard.changes as [Payload, Payload, Payload];
    const record = { id: 1, name: 'a', qty: 1.5, tags: ['red', 'blue'], meta: { k: [1, 2] }, done: true, at: '2024-01-02T03:04:05.678+00:00' };
    expect(ins).toMatchObject({ schema: 'public', table: tbl, eventType: 'INSERT', new: record, old: {}, errors: null });
    expect(ins.commit_timestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(upd).toMatchObject({ eventType: 'UPDATE', new: { ...record, name: 'b' }, old: { id: 1 } }); // key only
    expect(del).toMatchObject({ eventType: 'DELETE', new: {}, old: { id: 1 } });
    expect(Object.keys(del.old)).toEqual(['id']);
    expect(Date.parse(del.commit_timestamp)).toBeGreaterThanOrEqual(Date.parse(ins.commit_timestamp));

    // On the wire (vsn 2.0.0 by default): fastlane arrays, ids, columns, no old_record on INSERT.
    const wire = changeFrames(frames);
    const firstChange = frames.map((f) => JSON.parse(f) as unknown[]).find((m) => m[3] === 'postgres_changes');
    expect(firstChange?.slice(0, 4)).toEqual([null, null, 'realtime:x', 'postgres_changes']);
    const insData = wire[0]!.payload.data;
    expect(Object.keys(insData)).toEqual(['columns', 'commit_timestamp', 'errors', 'record', 'schema', 'table', 'type']);
    expect(Object.keys(wire[2]!.payload.data)).toEqual(['columns', 'commit_timestamp', 'errors', 'old_record', 'schema', 'table', 'type']);
    expect(insData.columns).toEqual([
      { name: 'id', type: 'int4' }, { name: 'name', type: 'text' }, { name: 'qty', type: 'numeric' }, { name: 'tags', type: '_text' },
      { name: 'meta', type: 'jsonb' }, { name: 'done', type: 'bool' }, { name: 'at', type: 'timestamptz' },
    ]);
    expect(wire[0]!.payload.ids).toEqual([expect.any(Number)]);
    expect(srv.stats()).toMatchObject({ joins: 1, messagesSent: 3, activeSubscriptions: 1 });
  });

  it('sends the whole old row under REPLICA IDENTITY FULL', async () => {
    const tbl = await table({ full: true });
    const srv = await start();
    const { heard, listening } = listen(srv, tbl);
    await listening();
    await db.query(`INSERT INTO ${tbl} (id, name, qty) VALUES (7, 'a', 2)`);
    await db.query(`UPDATE ${tbl} SET name = 'b', qty = 3 WHERE id = 7`);
    await db.query(`DELETE FROM ${tbl} WHERE id = 7`);
    await srv.flush();
    await waitFor(() => heard.changes.length >= 3, 'three changes');
    const old = { id: 7, name: 'a', qty: 2, tags: null, meta: null, done: null, at: null };
    expect(heard.changes[1]).toMatchObject({ eventType: 'UPDATE', old, new: { ...old, name: 'b', qty: 3 } });
    expect(heard.changes[2]).toMatchObject({ eventType: 'DELETE', old: { ...old, name: 'b', qty: 3 } });
  });

  it('applies the event and filter of each binding and matches bindings by the ids the server sends', async () => {
    const tbl = await table();
    const srv = await start();
    const supabase = supabaseClient(srv.url, 'k');
    clients.push(supabase);
    const inserts: Payload[] = [];
    const second: Payload[] = [];
    const system: Row[] = [];
    supabase
      .channel('y')
      .on('postgres_changes', { event: 'INSERT', schema: 'public', table: tbl }, (p) => inserts.push(p as Payload))
      .on('postgres_changes', { event: '*', schema: 'public', table: tbl, filter: 'id=in.(2,3)' }, (p) => second.push(p as Payload))
      .on('system', {}, (p: Row) => system.push(p))
      .subscribe();
    await waitFor(() => system.length > 0, 'system message');
    await db.query(`INSERT INTO ${tbl} (id) VALUES (1), (2)`);
    await db.query(`UPDATE ${tbl} SET name = 'x'`);
    await srv.flush();
    await waitFor(() => inserts.length >= 2 && second.length >= 2, 'changes');
    await sleep(100);
    expect(ids(inserts)).toEqual([1, 2]);
    expect(second.map((p) => `${p.eventType}:${(p.new as Row).id}`)).toEqual(['INSERT:2', 'UPDATE:2']);
  });

  it('reports tables outside the publication and malformed filters in the system message', async () => {
    const unpublished = await table({ publish: false });
    const srv = await start();
    const a = listen(srv, unpublished);
    await waitFor(() => a.heard.system.length > 0, 'system message');
    expect(a.heard.system[0]).toMatchObject({ extension: 'postgres_changes', status: 'error', channel: 'x' });
    expect(a.heard.system[0]!.message).toMatch(/^Unable to subscribe to changes with given parameters\. Please check Realtime is enabled/);
    const b = listen(srv, await table(), { filter: 'id=like.1' });
    await waitFor(() => b.heard.system.length > 0, 'system message');
    expect(b.heard.system[0]).toMatchObject({ status: 'error', message: 'Error parsing `filter` params: ["like", "1"]' });
    expect(srv.stats().activeSubscriptions).toBe(0);
  });

  it('loses the changes made while the connection is down; the client reconnects, rejoins and gets later ones', async () => {
    const tbl = await table();
    const srv = await start();
    const { heard, listening } = listen(srv, tbl);
    await listening();
    await db.query(`INSERT INTO ${tbl} (id) VALUES (1)`);
    await srv.flush();
    await waitFor(() => heard.changes.length === 1, 'first change');

    expect(srv.dropConnections()).toBe(1);
    await db.query(`INSERT INTO ${tbl} (id) VALUES (2)`); // while the socket is down
    await waitFor(() => heard.statuses.includes('CHANNEL_ERROR'), 'CHANNEL_ERROR');
    await listening(2); // rejoined: a new "Subscribed to PostgreSQL"
    expect(heard.statuses.filter((s) => s === 'SUBSCRIBED').length).toBe(2);
    await db.query(`INSERT INTO ${tbl} (id) VALUES (3)`);
    await srv.flush();
    await waitFor(() => heard.changes.length >= 2, 'change after the reconnect');
    await sleep(200);
    expect(ids(heard.changes)).toEqual([1, 3]); // 2 is lost for good
    expect(srv.stats()).toMatchObject({ joins: 2, droppedConnections: 1, connections: 2 });
  });

  it('loses the changes made before the delayed "Subscribed to PostgreSQL"', async () => {
    const tbl = await table();
    const srv = await start({ systemMessageDelayMs: 1000 });
    const { heard, listening } = listen(srv, tbl);
    await waitFor(() => heard.statuses.includes('SUBSCRIBED'), 'SUBSCRIBED'); // the join reply is immediate
    await db.query(`INSERT INTO ${tbl} (id) VALUES (1)`);
    expect(heard.system).toEqual([]);
    await listening();
    await db.query(`INSERT INTO ${tbl} (id) VALUES (2)`);
    await srv.flush();
    await waitFor(() => heard.changes.length >= 1, 'change after the system message');
    await sleep(200);
    expect(ids(heard.changes)).toEqual([2]);
  });

  it('drops events on command: dropNextEvents, pause, rate limit', async () => {
    const tbl = await table();
    const srv = await start();
    const { heard, listening } = listen(srv, tbl);
    await listening();
    srv.dropNextEvents(2);
    await db.query(`INSERT INTO ${tbl} (id) VALUES (1), (2), (3)`);
    await srv.flush();
    srv.pause();
    await db.query(`INSERT INTO ${tbl} (id) VALUES (4)`);
    await srv.flush();
    srv.resume();
    srv.rateLimit({ eventsPerSecond: 2 });
    await db.query(`INSERT INTO ${tbl} (id) SELECT g FROM generate_series(5, 9) g`);
    await srv.flush();
    srv.rateLimit(null);
    await db.query(`INSERT INTO ${tbl} (id) VALUES (10)`);
    await srv.flush();
    await waitFor(() => heard.changes.some((c) => (c.new as Row).id === 10), 'last change');
    expect(ids(heard.changes)).toEqual([3, 5, 6, 10]);
    expect(srv.stats()).toMatchObject({ changesDropped: 6, changesDecoded: 10, messagesSent: 4 });
  });

  it('rate limit with shutdown: system error "Too many messages per second", then the channel closes', async () => {
    const tbl = await table();
    const srv = await start();
    const { heard, listening } = listen(srv, tbl);
    await listening();
    srv.rateLimit({ eventsPerSecond: 1, mode: 'shutdown' });
    await db.query(`INSERT INTO ${tbl} (id) VALUES (1), (2), (3)`);
    await srv.flush();
    await waitFor(() => heard.statuses.includes('CLOSED'), 'CLOSED');
    expect(heard.system.at(-1)).toMatchObject({ extension: 'system', status: 'error', message: 'Too many messages per second', channel: 'x' });
    expect(ids(heard.changes)).toEqual([1, 2]);
    expect(srv.stats().activeSubscriptions).toBe(0);
  });

  it('answers heartbeats, access_token and phx_leave as Realtime does', async () => {
    const tbl = await table();
    const srv = await start();
    const beats: string[] = [];
    const supabase = supabaseClient(srv.url, 'k', { heartbeatIntervalMs: 250, heartbeatCallback: (status) => beats.push(status) });
    clients.push(supabase);
    const heard: Payload[] = [];
    let system = 0;
    const channel = supabase
      .channel('z')
      .on('postgres_changes', { event: '*', schema: 'public', table: tbl }, (p) => heard.push(p as Payload))
      .on('system', {}, () => system++)
      .subscribe();
    await waitFor(() => system > 0, 'system message');
    await waitFor(() => beats.filter((b) => b === 'ok').length >= 2, 'two heartbeat replies');
    expect(beats).not.toContain('timeout');

    await supabase.realtime.setAuth('another-token'); // pushes access_token: no reply, channel stays
    await db.query(`INSERT INTO ${tbl} (id) VALUES (1)`);
    await srv.flush();
    await waitFor(() => heard.length === 1, 'change after access_token');

    expect(await channel.unsubscribe()).toBe('ok'); // phoenix.js resolves a leave locally at once
    await waitFor(() => srv.stats().leaves === 1, 'phx_leave at the server');
    expect(srv.stats().activeSubscriptions).toBe(0);
    expect(srv.stats().heartbeats).toBeGreaterThanOrEqual(2);
  });
});

describe("Realtime stand-in: each subscriber's role (apply_rls)", () => {
  it('sends a role only what it may select: 401 with no record without the key, no hidden columns, no rows its policies hide', async () => {
    const tbl = `notes_${++tableNo}`;
    await db.query(`CREATE TABLE ${tbl} (id int PRIMARY KEY, owner text, secret text)`);
    // Portal users may read id and owner of their own notes; anon may read nothing; service_role everything.
    await db.query(`GRANT SELECT (id, owner) ON ${tbl} TO authenticated; GRANT SELECT ON ${tbl} TO service_role;
      ALTER TABLE ${tbl} ENABLE ROW LEVEL SECURITY; CREATE POLICY own ON ${tbl} FOR SELECT TO authenticated USING (owner = 'ann')`);
    await publishTables(db.url, [tbl], { replicaIdentityFull: true });
    const srv = await start();
    const service = listen(srv, tbl);
    const anon = listen(srv, tbl, { key: ANON_KEY });
    const user = listen(srv, tbl, { key: ANON_KEY, token: USER_TOKEN });
    await Promise.all([service.listening(), anon.listening(), user.listening()]);

    await db.query(`INSERT INTO ${tbl} VALUES (1, 'ann', 's1'), (2, 'bob', 's2')`);
    await db.query(`DELETE FROM ${tbl} WHERE id = 2`);
    await srv.flush();
    await waitFor(() => service.heard.changes.length >= 3 && anon.heard.changes.length >= 2 && user.heard.changes.length >= 2, 'the changes');
    await sleep(300);

    expect(service.heard.changes.map((c) => [c.eventType, c.eventType === 'DELETE' ? c.old : c.new])).toEqual([
      ['INSERT', { id: 1, owner: 'ann', secret: 's1' }],
      ['INSERT', { id: 2, owner: 'bob', secret: 's2' }],
      ['DELETE', { id: 2 }], // RLS enabled: a delete's old record is the key only
    ]);
    // Inserts: 401 and no record. A delete passes (apply_rls checks the key's privilege for inserts and updates only).
    expect(anon.heard.changes.slice(0, 2).map((c) => [c.eventType, c.errors, c.new])).toEqual([
      ['INSERT', ['Error 401: Unauthorized'], {}],
      ['INSERT', ['Error 401: Unauthorized'], {}],
    ]);
    // bob's note is hidden by the policy, and secret from every note; the delete passes RLS.
    expect(user.heard.changes.map((c) => [c.eventType, c.errors, c.eventType === 'DELETE' ? c.old : c.new])).toEqual([
      ['INSERT', null, { id: 1, owner: 'ann' }],
      ['DELETE', null, { id: 2 }],
    ]);
  });
});
