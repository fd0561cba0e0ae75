import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { ChangeEvent } from '../../../src/core/change-event.js';
import { JsonText } from '../../../src/core/json.js';
import { ConfigError, PermanentError, TransientError, type CdcSyncError } from '../../../src/core/errors.js';
import { TableMapping, type TableConfig } from '../../../src/core/mapping.js';
import { skipNoopSetupSql } from '../../../src/sinks/supabase/skip-noop-sql.js';
import { SupabaseSink, type SupabaseSinkOptions } from '../../../src/sinks/supabase/supabase-sink.js';
import { keyChange } from '../../../src/cdc/key-change.js';
import { coalesce } from '../../../src/streams/operators/coalesce.js';
import { startPostgrest, type PostgrestStandIn } from '../../support/postgrest/server.js';
import { testContext } from '../../support/stream-context.js';
import { createTestDatabase, type TestDatabase } from '../../support/test-database.js';

const TABLES: TableConfig[] = [
  { source: 'dbo.Parents', target: 'public.parents', key: ['ParentID'] },
  { source: 'dbo.Items', target: 'public.items', key: ['ItemID'] },
  { source: 'dbo.Pairs', target: 'public.pairs' },
  { source: 'dbo.Plain', target: 'public.plain' },
];

let db: TestDatabase;
let api: PostgrestStandIn;
let sink: SupabaseSink;
const opened: SupabaseSink[] = [];

function change(table: string, op: ChangeEvent['op'], key: Record<string, unknown>, row: Record<string, unknown> | null): ChangeEvent {
  return { table, op, key: key as ChangeEvent['key'], row: row as ChangeEvent['row'], position: '1', commitTime: new Date() };
}
const item = (id: number, extra: Record<string, unknown> = {}) => change('dbo.Items', 'insert', { item_id: id }, { item_id: id, name: `item ${id}`, ...extra });

async function open(options: Partial<SupabaseSinkOptions> = {}, tables = TABLES, context = testContext('s1')): Promise<SupabaseSink> {
  const s = new SupabaseSink({ url: api.url, key: api.key, ...options });
  opened.push(s);
  const targets = await s.open(context, tables);
  s.bind(tables.map((t, i) => new TableMapping(t, targets[i]!, `tables[${i}]`, () => {})));
  return s;
}

async function failure(promise: Promise<unknown>): Promise<CdcSyncError> {
  return (await promise.then(
    () => {
      throw new Error('expected a failure');
    },
    (e: unknown) => e,
  )) as CdcSyncError;
}

beforeAll(async () => {
  db = await createTestDatabase('supabase_sink');
  await db.query(`
    CREATE TABLE parents (parent_id int PRIMARY KEY, name text NOT NULL);
    CREATE TABLE items (
      item_id bigint PRIMARY KEY, parent_id int REFERENCES parents, name text NOT NULL CHECK (name <> 'poison'),
      price numeric(30,10), guid uuid UNIQUE, data bytea, at timestamptz, doc jsonb, active boolean,
      origin text DEFAULT current_setting('request.headers', true)::json->>'x-cdc-sync-origin');
    CREATE TABLE pairs (region text, code int, label text, PRIMARY KEY (region, code));
    CREATE TABLE plain (id text PRIMARY KEY, name text);`);
  // The trigger cdc-sync init-sql prints for supabase sink tables; "plain" goes without it.
  await db.query(skipNoopSetupSql(['public.parents', 'public.items', 'public.pairs']));
  api = await startPostgrest({ databaseUrl: db.url });
  // Made by hand here, so granted by hand: Supabase grants new tables to no API role.
  await db.query(`GRANT SELECT, INSERT, UPDATE, DELETE ON parents, items, pairs, plain TO service_role`);
  sink = await open();
});

afterAll(async () => {
  await Promise.all(opened.map((s) => s.close()));
  await api.close();
  await db.drop();
});

beforeEach(async () => {
  api.reset();
  await db.query('TRUNCATE items, parents, pairs, plain');
});

describe('SupabaseSink: batching', () => {
  it('upserts 2,500 rows of one table in 3 POST requests of at most 1,000 rows', async () => {
    const result = await sink.apply({ changes: Array.from({ length: 2500 }, (_, i) => item(i + 1)), deadLetters: [] });
    expect(result.written).toBe(2500);
    expect(api.requests.filter((r) => r.method === 'POST').map((r) => r.rows)).toEqual([1000, 1000, 500]);
    const post = api.requests[0]!;
    expect(new URLSearchParams(post.search).get('on_conflict')).toBe('item_id');
    expect(post.headers.prefer).toBe('resolution=merge-duplicates, count=exact');
    expect(await db.query('SELECT count(*)::int AS n FROM items')).toEqual([{ n: 2500 }]);
  });

  it('also cuts upsert requests at the body size limit', async () => {
    const small = await open({ limits: { maxBodyBytes: 20_000 } });
    await small.apply({ changes: Array.from({ length: 600 }, (_, i) => item(i + 1, { doc: { pad: 'x'.repeat(100) } })), deadLetters: [] });
    const posts = api.requests.filter((r) => r.method === 'POST');
    expect(posts.length).toBeGreaterThan(4);
    expect(Math.max(...posts.map((r) => r.bodyBytes))).toBeLessThanOrEqual(20_000);
    expect(posts.reduce((n, r) => n + r.rows, 0)).toBe(600);
    expect(await db.query('SELECT count(*)::int AS n FROM items')).toEqual([{ n: 600 }]);
  });

  it('deletes keys with in.(…) in chunks that keep every URL under 8,000 characters', async () => {
    await db.query(`INSERT INTO items (item_id, name) SELECT g, 'n' FROM generate_series(1, 3000) g`);
    const deletes = Array.from({ length: 2990 }, (_, i) => change('dbo.Items', 'delete', { item_id: 1_000_000_000_000 + i }, null));
    deletes.push(...Array.from({ length: 2000 }, (_, i) => change('dbo.Items', 'delete', { item_id: i + 1 }, null)));
    const result = await sink.apply({ changes: deletes, deadLetters: [] });
    const urls = api.requests.filter((r) => r.method === 'DELETE').map((r) => `${api.url}${r.path}${r.search}`);
    expect(urls.length).toBeGreaterThan(5);
    expect(Math.max(...urls.map((u) => u.length))).toBeLessThan(8000);
    expect(result.written).toBe(2000);
    expect(await db.query('SELECT min(item_id)::int AS min, count(*)::int AS n FROM items')).toEqual([{ min: 2001, n: 1000 }]);
  });

  it('keeps the batch order: deletes of children, then upserts of parents before their children', async () => {
    await db.query(`INSERT INTO parents VALUES (1, 'old'); INSERT INTO items (item_id, parent_id, name) VALUES (1, 1, 'child')`);
    await sink.apply({
      changes: [
        change('dbo.Items', 'delete', { item_id: 1 }, null),
        change('dbo.Parents', 'delete', { parent_id: 1 }, null),
        change('dbo.Parents', 'insert', { parent_id: 2 }, { parent_id: 2, name: 'p' }),
        item(2, { parent_id: 2 }),
      ],
      deadLetters: [],
    });
    expect(api.requests.map((r) => `${r.method} ${r.table}`)).toEqual(['DELETE items', 'DELETE parents', 'POST parents', 'POST items']);
    expect(await db.query('SELECT item_id::int AS id, parent_id FROM items')).toEqual([{ id: 2, parent_id: 2 }]);
  });

  it('sends rows of different column sets separately, so a column a row lacks is not written as NULL', async () => {
    await sink.apply({ changes: [item(1, { price: '1.5', active: true })], deadLetters: [] });
    await sink.apply({ changes: [change('dbo.Items', 'update', { item_id: 1 }, { item_id: 1, name: 'renamed' }), item(2, { price: '2' })], deadLetters: [] });
    expect(api.requests.filter((r) => r.method === 'POST')).toHaveLength(3);
    expect(await db.query('SELECT item_id::int AS id, name, price::text, active FROM items ORDER BY 1')).toEqual([
      { id: 1, name: 'renamed', price: '1.5000000000', active: true },
      { id: 2, name: 'item 2', price: '2.0000000000', active: null },
    ]);
  });
});

describe('SupabaseSink: keys and values', () => {
  it('upserts and deletes composite keys, values with commas, quotes, backslashes and parentheses included', async () => {
    const regions = ['n,1', 'say "hi"', 'back\\slash', 'f(x)', ' padded ', 'plain'];
    const pair = (region: string, code: number) => change('dbo.Pairs', 'insert', { region, code }, { region, code, label: `${region}/${code}` });
    await sink.apply({ changes: regions.flatMap((r) => [pair(r, 1), pair(r, 2)]), deadLetters: [] });
    expect(new URLSearchParams(api.requests[0]!.search).get('on_conflict')).toBe('region,code');
    await sink.apply({ changes: regions.map((region) => change('dbo.Pairs', 'delete', { region, code: 1 }, null)), deadLetters: [] });
    const del = api.requests.find((r) => r.method === 'DELETE')!;
    expect(new URLSearchParams(del.search).get('or')).toMatch(/^\(and\(region\.eq\."n,1",code\.eq\.1\),and\(region\.eq\."say \\"hi\\"",code\.eq\.1\),/);
    expect(await db.query('SELECT region, code FROM pairs ORDER BY region COLLATE "C"')).toEqual(regions.map((region) => ({ region, code: 2 })).sort((a, b) => (a.region < b.region ? -1 : 1)));
  });

  it('a key change moves the row: the old key deleted, the new one upserted; a batch sent twice ends the same', async () => {
    await db.query(`INSERT INTO items (item_id, name) VALUES (1, 'one'), (2, 'two')`);
    const update: ChangeEvent = { ...change('dbo.Items', 'update', { item_id: 1001 }, { item_id: 1001, name: 'one' }), before: { item_id: 1, name: 'one' } };
    const changes = coalesce(keyChange(update, { item_id: 1 }), TABLES.map((t) => t.source));
    await sink.apply({ changes, deadLetters: [] });
    await sink.apply({ changes, deadLetters: [] });
    expect(api.requests.map((r) => `${r.method} ${r.table}`)).toEqual(['DELETE items', 'POST items', 'DELETE items', 'POST items']);
    expect(await db.query('SELECT item_id::int AS id, name FROM items ORDER BY item_id')).toEqual([
      { id: 2, name: 'two' },
      { id: 1001, name: 'one' },
    ]);
  });

  it('deletes one-column text keys with in.(…), quoting what PostgREST would misread', async () => {
    const ids = ['a,b', 'say "hi"', 'back\\slash', 'f(x)', ' padded ', 'keep'];
    await sink.apply({ changes: ids.map((id) => change('dbo.Plain', 'insert', { id }, { id, name: 'x' })), deadLetters: [] });
    await sink.apply({ changes: ids.slice(0, -1).map((id) => change('dbo.Plain', 'delete', { id }, null)), deadLetters: [] });
    const del = api.requests.find((r) => r.method === 'DELETE')!;
    expect(new URLSearchParams(del.search).get('id')).toBe('in.("a,b","say \\"hi\\"","back\\\\slash","f(x)"," padded ")');
    expect(await db.query('SELECT id FROM plain')).toEqual([{ id: 'keep' }]);
  });

  it('keeps exact values: int8 beyond 2^53, numeric(30,10), uuid, bytea, timestamptz with microseconds, jsonb, boolean', async () => {
    await sink.apply({
      changes: [
        change('dbo.Parents', 'insert', { parent_id: 1 }, { parent_id: 1, name: 'p' }),
        change('dbo.Items', 'insert', { item_id: '9007199254740993' }, {
          item_id: '9007199254740993',
          parent_id: 1,
          name: 'exact',
          price: '12345678901234567890.0123456789',
          guid: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
          data: Buffer.from([0, 1, 2, 255]),
          at: '2024-02-29T23:59:59.123456Z',
          doc: { nested: [1, 'two', { deep: null }] },
          active: false,
        }),
      ],
      deadLetters: [],
    });
    const [row] = await db.query<Record<string, unknown>>(
      `SELECT item_id::text, price::text, guid::text, encode(data, 'hex') AS data, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') AS at, doc, active, origin FROM items`,
    );
    expect(row).toEqual({
      item_id: '9007199254740993',
      price: '12345678901234567890.0123456789',
      guid: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
      data: '000102ff',
      at: '2024-02-29 23:59:59.123456',
      doc: { nested: [1, 'two', { deep: null }] },
      active: false,
      origin: 's1', // x-cdc-sync-origin, seen by the database as request.headers
    });
  });

  it('writes a json value (JsonText) as its own text: trailing zeros, digits beyond a double, a string that reads as JSON', async () => {
    const doc = '{"n": 2.50, "big": 123456789012345678901234567890.000, "s": "1.0", "deep": [1.0, {"x": -0.10}]}';
    await sink.apply({
      changes: [
        change('dbo.Parents', 'insert', { parent_id: 1 }, { parent_id: 1, name: 'p' }),
        change('dbo.Items', 'insert', { item_id: 1 }, { item_id: 1, parent_id: 1, name: 'a', doc: new JsonText(doc) }),
        change('dbo.Items', 'insert', { item_id: 2 }, { item_id: 2, parent_id: 1, name: 'b', doc: new JsonText('"1.0"') }),
      ],
      deadLetters: [],
    });
    expect(await db.query(`SELECT item_id, doc::text AS doc FROM items ORDER BY item_id`)).toEqual([
      { item_id: '1', doc: '{"n": 2.50, "s": "1.0", "big": 123456789012345678901234567890.000, "deep": [1.0, {"x": -0.10}]}' },
      { item_id: '2', doc: '"1.0"' },
    ]);
  });
});

describe('SupabaseSink: no-op updates', () => {
  it('makes no new row version for an update that changes nothing once the init-sql trigger is installed', async () => {
    const same = { parent_id: 1, name: 'same' };
    await sink.apply({ changes: [change('dbo.Parents', 'insert', { parent_id: 1 }, same)], deadLetters: [] });
    const [before] = await db.query<{ xmin: string }>('SELECT xmin::text FROM parents');
    const result = await sink.apply({ changes: [change('dbo.Parents', 'update', { parent_id: 1 }, same)], deadLetters: [] });
    const [after] = await db.query<{ xmin: string }>('SELECT xmin::text FROM parents');
    expect(api.count({ method: 'POST' })).toBe(2); // sent again: the database decides
    expect(result.written).toBe(0);
    expect(after!.xmin).toBe(before!.xmin);
  });

  it('does make a new row version for the same update on a table without the trigger', async () => {
    const s = await open({}, [{ source: 'dbo.Plain', target: 'public.plain' }]);
    await s.apply({ changes: [change('dbo.Plain', 'insert', { id: 'one' }, { id: 'one', name: 'same' })], deadLetters: [] });
    const [before] = await db.query<{ xmin: string }>('SELECT xmin::text FROM plain');
    const result = await s.apply({ changes: [change('dbo.Plain', 'update', { id: 'one' }, { id: 'one', name: 'same' })], deadLetters: [] });
    const [after] = await db.query<{ xmin: string }>('SELECT xmin::text FROM plain');
    expect(result.written).toBe(1);
    expect(after!.xmin).not.toBe(before!.xmin);
  });
});

describe('SupabaseSink: errors', () => {
  it.each([
    ['a missing parent (23503)', [item(1, { parent_id: 42 })], 'missing-parent', '23503'],
    ['a CHECK violation (23514)', [item(1, { name: 'poison' })], 'constraint', '23514'],
    ['a NOT NULL violation (23502)', [item(1, { name: null })], 'constraint', '23502'],
    ['a unique violation on another key (23505)', [item(1, { guid: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11' }), item(2, { guid: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11' })], 'constraint', '23505'],
    ['a value PostgreSQL cannot read (22P02)', [item(1, { guid: 'not-a-uuid' })], 'invalid-data', '22P02'],
  ])('classifies %s as permanent with reason %s', async (_what, changes, reason, code) => {
    const error = await failure(sink.apply({ changes, deadLetters: [] }));
    expect(error).toBeInstanceOf(PermanentError);
    expect(error).toMatchObject({ reason, context: { stream: 's1', table: 'dbo.Items', code } });
  });

  it('classifies a column or table PostgREST no longer knows (PGRST204, PGRST205) as permanent schema errors', async () => {
    await db.query('CREATE TABLE extra (id int PRIMARY KEY, note text); GRANT ALL ON extra TO service_role');
    await api.reloadSchema();
    const s = await open({}, [{ source: 'dbo.Extra', target: 'public.extra' }]);
    await db.query('ALTER TABLE extra DROP COLUMN note');
    await api.reloadSchema();
    const column = await failure(s.apply({ changes: [change('dbo.Extra', 'insert', { id: 1 }, { id: 1, note: 'n' })], deadLetters: [] }));
    expect(column).toMatchObject({ transient: false, reason: 'schema', context: { code: 'PGRST204' } });
    await db.query('DROP TABLE extra');
    await api.reloadSchema();
    const table = await failure(s.apply({ changes: [change('dbo.Extra', 'insert', { id: 1 }, { id: 1 })], deadLetters: [] }));
    expect(table).toMatchObject({ transient: false, reason: 'schema', context: { code: 'PGRST205' } });
  });

  it.each([
    ['pgrst-503', 'PGRST000'],
    ['gateway-503', 'HTTP 503'],
    ['gateway-504', 'HTTP 504'],
    ['429', 'HTTP 429'],
  ] as const)('classifies an injected %s as transient and marks the sink disconnected on 5xx', async (kind, code) => {
    const context = testContext('s1');
    const s = await open({}, TABLES, context);
    api.fail(1, kind, { method: 'POST' });
    const error = await failure(s.apply({ changes: [item(1)], deadLetters: [] }));
    expect(error).toBeInstanceOf(TransientError);
    expect(error.context.code).toBe(code);
    expect(context.connected.sink).toBe(kind === '429');
    // The next attempt goes through.
    await s.apply({ changes: [item(1)], deadLetters: [] });
    expect(context.connected.sink).toBe(true);
  });

  it('classifies an unreachable server as transient, with the network error code, and marks the sink disconnected', async () => {
    const other = await startPostgrest({ databaseUrl: db.url });
    const context = testContext('s1');
    const s = await open({ url: other.url, key: other.key }, TABLES, context);
    await other.close();
    const error = await failure(s.apply({ changes: [item(1)], deadLetters: [] }));
    expect(error).toBeInstanceOf(TransientError);
    expect(error.context.code).toBe('ECONNREFUSED');
    expect(context.connected.sink).toBe(false);
    const openError = await failure(open({ url: other.url, key: other.key }));
    expect(openError).toBeInstanceOf(TransientError);
  });

  it('refuses to open, naming the key path, for an unknown table, a refused key, newer-wins or column ownership', async () => {
    const unknown = await failure(open({}, [{ source: 'a', target: 'public.nope' }]));
    expect(unknown).toBeInstanceOf(ConfigError);
    expect(unknown.message).toContain('tables[0].target: table public.nope is not exposed');
    // A table granted to no API role, as Supabase makes new tables: PostgREST leaves it out of the OpenAPI root.
    await db.query('CREATE TABLE IF NOT EXISTS ungranted (id int PRIMARY KEY)');
    await api.reloadSchema();
    const ungranted = await failure(open({}, [{ source: 'a', target: 'public.ungranted' }]));
    expect(ungranted).toBeInstanceOf(ConfigError);
    expect(ungranted.message).toContain('GRANT SELECT, INSERT, UPDATE, DELETE ON public.ungranted TO service_role');
    const badKey = await failure(open({ key: 'wrong' }));
    expect(badKey).toBeInstanceOf(ConfigError);
    expect(badKey.message).toContain('sink.key');
    // The anon (publishable) key: Supabase answers the OpenAPI root only to a secret key.
    const anonKey = await failure(open({ key: api.anonKey }));
    expect(anonKey).toBeInstanceOf(ConfigError);
    expect(anonKey.message).toMatch(/sink\.key: the Supabase REST API refused the key \(403 Access to schema is forbidden\).*service-role/);
    const newer = await failure(open({}, [{ source: 'a', target: 'public.items', conflict: 'newer-wins', updatedAt: 'at' }]));
    expect(newer.message).toContain('tables[0].conflict');
    const owned = await failure(open({}, [{ source: 'a', target: 'public.items', owns: ['Name'] } as TableConfig]));
    expect(owned.message).toContain('tables[0].owns');
  });
});
