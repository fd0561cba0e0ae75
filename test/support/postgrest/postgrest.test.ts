import type { SupabaseClient } from '@supabase/supabase-js';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../test-database.js';
import { standInClient } from './client.js';
import { ANON_KEY, USER_TOKEN } from '../supabase-keys.js';
import { startPostgrest, type PostgrestStandIn } from './server.js';

/** The PostgREST stand-in driven by the real supabase-js client, checked against the database. */
let db: TestDatabase;
let api: PostgrestStandIn;
let client: SupabaseClient;

beforeAll(async () => {
  db = await createTestDatabase('postgrest');
  await db.query(`
    CREATE TABLE parents (parent_id int PRIMARY KEY, name text NOT NULL);
    CREATE TABLE items (
      id bigint PRIMARY KEY,
      parent_id int REFERENCES parents,
      name text NOT NULL CHECK (name <> 'poison'),
      price numeric(30,10),
      guid uuid,
      data bytea,
      at timestamptz,
      doc jsonb,
      active boolean,
      origin text DEFAULT current_setting('request.headers', true)::json->>'x-cdc-sync-origin'
    );
    CREATE TABLE pairs (region text, code int, label text, PRIMARY KEY (region, code));
    CREATE SCHEMA other;
    CREATE TABLE other.notes (id int PRIMARY KEY, body text);
    CREATE SCHEMA hidden;
    CREATE TABLE hidden.secrets (id int PRIMARY KEY);`);
  api = await startPostgrest({ databaseUrl: db.url, schemas: ['public', 'other'] });
  // Supabase grants new tables to no API role: the tests' tables are granted to service_role by hand.
  await db.query(`GRANT USAGE ON SCHEMA other TO service_role; GRANT ALL ON ALL TABLES IN SCHEMA public, other TO service_role`);
  client = standInClient(api, { 'x-cdc-sync-origin': 'tests' });
});

afterAll(async () => {
  await api.close();
  await db.drop();
});

beforeEach(async () => {
  api.reset();
  await db.query('TRUNCATE items, parents, pairs, other.notes');
});

const names = async (sql = 'SELECT name FROM items ORDER BY id') => (await db.query<{ name: string }>(sql)).map((r) => r.name);

describe('PostgREST stand-in: writes', () => {
  it('upserts what supabase-js sends: POST ?on_conflict&columns with Prefer resolution=merge-duplicates, 201, count in Content-Range', async () => {
    const rows = [
      { id: 1, name: 'a', price: '12345678901234567890.0123456789' },
      { id: 2, name: 'b', price: null },
    ];
    const first = await client.from('items').upsert(rows, { onConflict: 'id', count: 'exact' });
    expect(first).toMatchObject({ error: null, status: 201, count: 2 });
    const request = api.requests[0]!;
    expect(request).toMatchObject({ method: 'POST', table: 'items', rows: 2 });
    expect(new URLSearchParams(request.search).get('on_conflict')).toBe('id');
    expect(new URLSearchParams(request.search).get('columns')).toBe('"id","name","price"');
    expect(request.headers.prefer).toBe('resolution=merge-duplicates, count=exact');

    const second = await client.from('items').upsert([{ id: 2, name: 'b2', price: '1.5' }, { id: 3, name: 'c', price: '2' }], { onConflict: 'id' });
    expect(second.error).toBeNull();
    expect(await db.query(`SELECT id::int, name, price::text FROM items ORDER BY id`)).toEqual([
      { id: 1, name: 'a', price: '12345678901234567890.0123456789' },
      { id: 2, name: 'b2', price: '1.5000000000' },
      { id: 3, name: 'c', price: '2.0000000000' },
    ]);
  });

  it('leaves existing rows alone with ignoreDuplicates and refuses a plain insert of a duplicate with 409 23505', async () => {
    await db.query(`INSERT INTO items (id, name) VALUES (1, 'kept')`);
    const ignored = await client.from('items').upsert([{ id: 1, name: 'new' }, { id: 2, name: 'added' }], { ignoreDuplicates: true });
    expect(ignored.error).toBeNull();
    expect(api.requests[0]!.headers.prefer).toBe('resolution=ignore-duplicates');
    expect(await names()).toEqual(['kept', 'added']);

    const duplicate = await client.from('items').insert({ id: 1, name: 'again' });
    expect(duplicate.status).toBe(409);
    expect(duplicate.error).toMatchObject({ code: '23505', details: 'Key (id)=(1) already exists.', hint: null });
    expect(duplicate.error!.message).toContain('duplicate key value violates unique constraint "items_pkey"');
  });

  it('returns the written rows with return=representation, values as PostgreSQL writes them to JSON', async () => {
    const { data, error, status } = await client
      .from('items')
      .upsert({ id: 9007199254740993n.toString(), name: 'big', guid: 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', data: '\\x00ff', at: '2024-02-29T23:59:59.123456Z', doc: { k: [1, 'two'] }, active: true })
      .select('id::text,guid,data,at,doc,active,origin');
    expect(error).toBeNull();
    expect(status).toBe(201);
    expect(api.requests[0]!.headers.prefer).toContain('return=representation');
    expect(data).toEqual([
      { id: '9007199254740993', guid: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', data: '\\x00ff', at: '2024-02-29T23:59:59.123456+00:00', doc: { k: [1, 'two'] }, active: true, origin: 'tests' },
    ]);
  });

  it('deletes with in.(…) quoting values that hold commas, parentheses, quotes and backslashes', async () => {
    const tricky = ['a,b', 'c(d)', 'say "hi"', 'back\\slash', ' padded ', 'plain'];
    await client.from('items').insert(tricky.map((name, i) => ({ id: i + 1, name })));
    // supabase-js quotes a value only when it holds , ( or ); quotes and backslashes need PostgREST's escapes.
    const viaIn = await client.from('items').delete({ count: 'exact' }).in('name', ['a,b', 'c(d)', 'plain']);
    expect(viaIn).toMatchObject({ error: null, status: 204, count: 3 });
    expect(new URLSearchParams(api.requests.at(-1)!.search).get('name')).toBe('in.("a,b","c(d)",plain)');
    const escaped = await client.from('items').delete().filter('name', 'in', '("say \\"hi\\"","back\\\\slash"," padded ")');
    expect(escaped.error).toBeNull();
    expect(await names()).toEqual([]);
  });

  it('deletes composite keys with or=(and(…),…) and refuses a delete without filters (400 21000, as Supabase does)', async () => {
    await db.query(`INSERT INTO pairs VALUES ('n,1', 1, 'x'), ('n,1', 2, 'y'), ('s', 1, 'z')`);
    const { error, count } = await client.from('pairs').delete({ count: 'exact' }).or('and(region.eq."n,1",code.eq.1),and(region.eq.s,code.eq.1)');
    expect(error).toBeNull();
    expect(count).toBe(2);
    expect(await db.query('SELECT region, code FROM pairs')).toEqual([{ region: 'n,1', code: 2 }]);

    const all = await client.from('pairs').delete();
    expect(all.status).toBe(400);
    expect(all.error).toMatchObject({ code: '21000', message: 'DELETE requires a WHERE clause' });
    expect(await db.query('SELECT 1 FROM pairs')).toHaveLength(1);
  });

  it('updates with PATCH and filters', async () => {
    await client.from('items').insert([{ id: 1, name: 'a' }, { id: 2, name: 'b' }]);
    const { error, status } = await client.from('items').update({ name: 'changed' }).eq('id', 2);
    expect(error).toBeNull();
    expect(status).toBe(204);
    expect(await names()).toEqual(['a', 'changed']);
  });

  it('makes the request headers visible to the database as request.headers, like PostgREST', async () => {
    await client.from('items').insert({ id: 1, name: 'marked' });
    expect(await db.query(`SELECT origin FROM items`)).toEqual([{ origin: 'tests' }]);
  });
});

describe('PostgREST stand-in: reads', () => {
  beforeEach(async () => {
    await db.query(`INSERT INTO items (id, name, price, active) SELECT g, 'item ' || g, g * 1.5, g % 2 = 0 FROM generate_series(1, 20) g`);
    await db.query(`UPDATE items SET price = NULL WHERE id = 20`);
  });

  it('selects columns with eq, neq, gt, gte, lt, lte, in and is filters', async () => {
    const ids = async (query: PromiseLike<{ data: { id: number }[] | null; error: unknown }>) => {
      const { data, error } = await query;
      expect(error).toBeNull();
      return data!.map((r) => r.id);
    };
    const items = () => client.from('items').select('id').order('id');
    expect(await ids(items().eq('id', 3))).toEqual([3]);
    expect(await ids(items().neq('id', 3).lt('id', 5))).toEqual([1, 2, 4]);
    expect(await ids(items().gt('id', 17))).toEqual([18, 19, 20]);
    expect(await ids(items().gte('id', 19).lte('id', 20))).toEqual([19, 20]);
    expect(await ids(items().in('id', [2, 4, 99]))).toEqual([2, 4]);
    expect(await ids(items().is('price', null))).toEqual([20]);
    expect(await ids(items().is('active', true).lt('id', 7))).toEqual([2, 4, 6]);
    expect(await ids(items().in('name', ['item 1', 'item 12']))).toEqual([1, 12]);
  });

  it('orders, limits and pages with offset (range) and counts with count=exact', async () => {
    const { data, count, error, status } = await client.from('items').select('id, name', { count: 'exact' }).order('active', { ascending: false }).order('id', { ascending: false }).range(2, 4);
    expect(error).toBeNull();
    expect(status).toBe(206);
    expect(count).toBe(20);
    expect(data).toEqual([
      { id: 16, name: 'item 16' },
      { id: 14, name: 'item 14' },
      { id: 12, name: 'item 12' },
    ]);
    expect(new URLSearchParams(api.requests.at(-1)!.search).get('order')).toBe('active.desc,id.desc');
    const limited = await client.from('items').select('id').order('id').limit(2);
    expect(limited.data).toEqual([{ id: 1 }, { id: 2 }]);
  });

  it('reads or=(…) with nested and(…), and single() as one object', async () => {
    const { data } = await client.from('items').select('id').or('id.eq.1,and(id.gte.10,id.lt.12),name.eq."item 20"').order('id');
    expect(data).toEqual([{ id: 1 }, { id: 10 }, { id: 11 }, { id: 20 }]);
    const single = await client.from('items').select('name').eq('id', 7).single();
    expect(single.data).toEqual({ name: 'item 7' });
    const none = await client.from('items').select('name').eq('id', 700).single();
    expect(none.status).toBe(406);
    expect(none.error).toMatchObject({ code: 'PGRST116', details: 'The result contains 0 rows' });
  });

  it('switches schema with Accept-Profile/Content-Profile and refuses schemas it does not expose (406 PGRST106)', async () => {
    expect((await client.schema('other').from('notes').insert({ id: 1, body: 'n' })).error).toBeNull();
    expect((await client.schema('other').from('notes').select('body')).data).toEqual([{ body: 'n' }]);
    const hidden = await client.schema('hidden').from('secrets').select();
    expect(hidden.status).toBe(406);
    expect(hidden.error).toMatchObject({ code: 'PGRST106', message: 'Invalid schema: hidden', hint: 'Only the following schemas are exposed: public, other' });
  });

  it('describes the tables of a schema in its OpenAPI root, with column types and primary keys', async () => {
    const response = await fetch(`${api.url}/rest/v1/`, { headers: { apikey: api.key, Authorization: `Bearer ${api.key}` } });
    expect(response.status).toBe(200);
    const doc = (await response.json()) as { definitions: Record<string, { properties: Record<string, { format: string; type?: string; description?: string }> }> };
    expect(Object.keys(doc.definitions).sort()).toEqual(['items', 'pairs', 'parents']);
    expect(doc.definitions.items!.properties.id).toEqual({ format: 'bigint', type: 'integer', description: 'Note:\nThis is a Primary Key.<pk/>' });
    expect(doc.definitions.items!.properties.price).toEqual({ format: 'numeric', type: 'number' });
    expect(doc.definitions.items!.properties.parent_id!.description).toBe("Note:\nThis is a Foreign Key to `parents.parent_id`.<fk table='parents' column='parent_id'/>");
    expect(doc.definitions.items!.properties.at!.format).toBe('timestamp with time zone');
    expect(Object.keys(doc.definitions.pairs!.properties).filter((c) => doc.definitions.pairs!.properties[c]!.description?.includes('<pk/>'))).toEqual(['region', 'code']);
  });
});

describe('PostgREST stand-in: errors as PostgREST answers them', () => {
  it.each([
    ['an unknown table', () => client.from('nope').select(), 404, 'PGRST205', "Could not find the table 'public.nope' in the schema cache"],
    ['an unknown column in columns', () => client.from('items').upsert([{ id: 1, name: 'a', colour: 'red' }]), 400, 'PGRST204', "Could not find the 'colour' column of 'items' in the schema cache"],
    ['an unknown column in a filter', () => client.from('items').select().eq('colour', 'red'), 400, '42703', 'column items.colour does not exist'],
    ['a value of the wrong type', () => client.from('items').insert({ id: 1, name: 'a', guid: 'not-a-uuid' }), 400, '22P02', 'invalid input syntax for type uuid: "not-a-uuid"'],
    ['a missing NOT NULL value', () => client.from('items').insert({ id: 1, name: null }), 400, '23502', 'null value in column "name" of relation "items" violates not-null constraint'],
    ['a missing parent', () => client.from('items').insert({ id: 1, name: 'a', parent_id: 5 }), 409, '23503', 'insert or update on table "items" violates foreign key constraint "items_parent_id_fkey"'],
    ['a CHECK violation', () => client.from('items').insert({ id: 1, name: 'poison' }), 400, '23514', 'new row for relation "items" violates check constraint "items_name_check"'],
    ['an in filter without its parentheses', () => client.from('items').select().filter('id', 'in', '1,2'), 400, 'PGRST100', undefined],
  ])('answers %s with %i %s', async (_what, request, status, code, message) => {
    const result = await request();
    expect(result.status).toBe(status);
    expect(result.error).toMatchObject({ code, ...(message ? { message } : {}) });
  });

  it('asks for the API key like Supabase: 401 without apikey, with a wrong one, or without the bearer token', async () => {
    const get = (headers: Record<string, string>) => fetch(`${api.url}/rest/v1/items?select=id`, { headers });
    const none = await get({});
    expect(none.status).toBe(401);
    expect(await none.json()).toMatchObject({ message: 'No API key found in request' });
    expect((await get({ apikey: 'wrong', Authorization: 'Bearer wrong' })).status).toBe(401);
    expect(await (await get({ apikey: api.key, Authorization: 'Bearer wrong' })).json()).toMatchObject({ code: 'PGRST301' });
    // No bearer token: PostgREST's anonymous role (anon on Supabase), which may not read items.
    const noBearer = await get({ apikey: api.key });
    expect(noBearer.status).toBe(401);
    expect(await noBearer.json()).toMatchObject({ code: '42501', message: 'permission denied for table items' });
    expect((await get({ apikey: api.key, Authorization: `Bearer ${api.key}` })).status).toBe(200);
  });

  it('injects 503, 429 and delays on command and counts requests', async () => {
    api.fail(1, 'pgrst-503', { method: 'POST' });
    const failed = await client.from('items').insert({ id: 1, name: 'a' });
    expect(failed.status).toBe(503);
    expect(failed.error).toMatchObject({ code: 'PGRST000', message: 'Database connection error. Retrying the connection.' });
    api.fail(1, '429');
    expect((await client.from('items').insert({ id: 1, name: 'a' })).status).toBe(429);
    api.fail(1, 'gateway-503');
    const plain = await client.from('items').insert({ id: 1, name: 'a' });
    expect(plain.status).toBe(503);
    expect(plain.error!.message).toContain('upstream connect error');
    // supabase-js itself retries a GET after a 503 (packages/core/postgrest-js: RETRYABLE_STATUS_CODES).
    api.fail(1, 'pgrst-503', { method: 'GET' });
    expect((await client.from('items').select('id')).error).toBeNull();
    expect(api.requests.at(-1)!.headers['x-retry-count']).toBe('1');

    api.delay(300, 1);
    const started = Date.now();
    expect((await client.from('items').insert({ id: 1, name: 'a' })).error).toBeNull();
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    expect(api.count({ method: 'POST', table: 'items' })).toBe(4);
    expect(api.count({ method: 'GET' })).toBe(2);
    expect(await names()).toEqual(['a']);
  });
});

describe("PostgREST stand-in: Supabase's roles", () => {
  const as = (apikey: string, token: string) => standInClient(api, {}, { apikey, token });

  it('runs each request as the role of its token, in a database that grants new tables to no API role', async () => {
    await db.query(`CREATE TABLE IF NOT EXISTS portal_notes (id int PRIMARY KEY, owner text, body text)`);
    await db.query(`TRUNCATE portal_notes; INSERT INTO portal_notes VALUES (1, 'ann', 'a'), (2, 'bob', 'b')`);
    await db.query(`REVOKE ALL ON portal_notes FROM anon, authenticated, service_role`);
    await api.reloadSchema();
    // Granted to no API role: anon 401, any other role 403 (PostgREST Error.hs, 42501), service_role included.
    expect(await as(ANON_KEY, ANON_KEY).from('portal_notes').select()).toMatchObject({ status: 401, error: { code: '42501' } });
    expect(await as(ANON_KEY, USER_TOKEN).from('portal_notes').select()).toMatchObject({ status: 403, error: { code: '42501' } });
    expect(await as(api.key, api.key).from('portal_notes').select()).toMatchObject({ status: 403, error: { code: '42501' } });
    // Granted, with RLS on and a policy for signed-in users: service_role bypasses RLS, authenticated sees its policy's rows.
    await db.query(`GRANT SELECT ON portal_notes TO authenticated, service_role; ALTER TABLE portal_notes ENABLE ROW LEVEL SECURITY;
      CREATE POLICY ann_only ON portal_notes FOR SELECT TO authenticated USING (owner = 'ann')`);
    expect((await as(api.key, api.key).from('portal_notes').select('id').order('id')).data).toEqual([{ id: 1 }, { id: 2 }]);
    expect((await as(ANON_KEY, USER_TOKEN).from('portal_notes').select('id').order('id')).data).toEqual([{ id: 1 }]);
    // The role is the transaction's, and the claims say it (auth.role() reads request.jwt.claims).
    const roles = await db.query<{ rolname: string; rolinherit: boolean }>(`SELECT rolname, rolinherit FROM pg_roles WHERE rolname = 'authenticator'`);
    expect(roles).toEqual([{ rolname: 'authenticator', rolinherit: false }]);
  });

  it('answers the OpenAPI root only to the secret key, listing the tables its role holds a privilege on', async () => {
    const root = (apikey: string) => fetch(`${api.url}/rest/v1/`, { headers: { apikey, Authorization: `Bearer ${apikey}` } });
    const anon = await root(ANON_KEY);
    expect(anon.status).toBe(403);
    expect(await anon.json()).toEqual({ message: 'Access to schema is forbidden', hint: 'Accessing the schema via the Data API is only allowed using a secret API key.' });
    await db.query(`CREATE TABLE IF NOT EXISTS ungranted (id int PRIMARY KEY)`);
    await db.query(`REVOKE ALL ON ungranted FROM service_role`);
    await api.reloadSchema();
    const doc = (await (await root(api.key)).json()) as { definitions: Record<string, unknown> };
    expect(Object.keys(doc.definitions)).toContain('items');
    expect(Object.keys(doc.definitions)).not.toContain('ungranted');
  });

  it('answers an upsert 201 when it inserted a row and 200 when it only updated rows (PostgREST 12)', async () => {
    expect((await client.from('parents').upsert([{ parent_id: 1, name: 'a' }])).status).toBe(201);
    expect((await client.from('parents').upsert([{ parent_id: 1, name: 'b' }])).status).toBe(200);
    expect((await client.from('parents').upsert([{ parent_id: 1, name: 'c' }, { parent_id: 2, name: 'd' }])).status).toBe(201);
    expect((await client.from('parents').upsert([{ parent_id: 2, name: 'e' }], { ignoreDuplicates: true })).status).toBe(200);
    expect((await client.from('parents').insert([{ parent_id: 3, name: 'f' }])).status).toBe(201);
  });
});
