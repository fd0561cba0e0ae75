import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';

const pgQuery = pg.Client.prototype.query;
import type { ChangeEvent } from '../../../src/core/change-event.js';
import { ConfigError, PermanentError } from '../../../src/core/errors.js';
import { TableMapping, type TableConfig } from '../../../src/core/mapping.js';
import { PostgresSink } from '../../../src/sinks/postgres/postgres-sink.js';
import { createTestDatabase, type TestDatabase } from '../../support/test-database.js';
import { testContext } from '../../support/stream-context.js';

const TABLES: TableConfig[] = [
  { source: 'dbo.Parents', target: 'public.parents', key: ['ParentID'] },
  { source: 'dbo.Items', target: 'public.items', key: ['ItemID'] },
];

let db: TestDatabase;
let sink: PostgresSink;

function change(table: string, op: ChangeEvent['op'], key: Record<string, unknown>, row: Record<string, unknown> | null): ChangeEvent {
  return { table, op, key: key as ChangeEvent['key'], row: row as ChangeEvent['row'], position: '1', commitTime: new Date() };
}

async function open(): Promise<PostgresSink> {
  const s = new PostgresSink(db.url);
  const targets = await s.open(testContext('s1'), TABLES);
  s.bind(TABLES.map((t, i) => new TableMapping(t, targets[i]!, `tables[${i}]`, () => {})));
  return s;
}

beforeAll(async () => {
  db = await createTestDatabase('sink');
  await db.query(`
    CREATE TABLE parents (parent_id int PRIMARY KEY, name text NOT NULL);
    CREATE TABLE items (
      item_id bigint PRIMARY KEY,
      parent_id int REFERENCES parents(parent_id),
      name text NOT NULL,
      price numeric(30,10),
      guid uuid,
      data bytea,
      at timestamptz,
      doc jsonb,
      active boolean,
      total numeric GENERATED ALWAYS AS (price * 2) STORED
    )`);
  sink = await open();
});

afterAll(async () => {
  await sink.close();
  await db.drop();
});

beforeEach(async () => {
  await db.query('TRUNCATE items, parents, cdc_sync.dead_letters, cdc_sync.checkpoints');
});

describe('PostgresSink', () => {
  it('writes a batch of upserts and deletes with exact values, in one transaction with the checkpoint', async () => {
    await sink.apply({
      changes: [
        { ...change('dbo.Parents', 'insert', { parent_id: 1 }, { parent_id: 1, name: 'p' }) },
        {
          ...change('dbo.Items', 'insert', { item_id: '9007199254740993' }, {
            item_id: '9007199254740993',
            parent_id: 1,
            name: 'a',
            price: '12345678901234567890.0123456789',
            guid: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
            data: Buffer.from([0, 1, 2, 255]),
            at: '2024-02-29T23:59:59.123456Z',
            doc: { nested: [1, 'two'] },
            active: true,
          }),
        },
      ],
      deadLetters: [],
      checkpoint: { stream: 's1', position: 'p1' },
    });
    const [row] = await db.query<Record<string, unknown>>(
      `SELECT item_id::text, price::text, guid::text, encode(data, 'hex') AS data, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') AS at, doc, active, total::text FROM items`,
    );
    expect(row).toEqual({
      item_id: '9007199254740993',
      price: '12345678901234567890.0123456789',
      guid: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
      data: '000102ff',
      at: '2024-02-29 23:59:59.123456',
      doc: { nested: [1, 'two'] },
      active: true,
      total: '24691357802469135780.0246913578',
    });
    expect(await sink.readCheckpoint('s1')).toBe('p1');
  });

  it('writes quotes, backslashes, escapes and non-ASCII text exactly (rows travel inlined in one round trip)', async () => {
    const names = [`O'Brien`, 'C:\\temp\\new', 'line\nbreak\ttab "quoted"', `\\'; DROP TABLE parents; --`, 'Zoë ✓ 𝄞', "E'\\x41'"];
    await sink.apply({
      changes: names.map((name, i) => change('dbo.Parents', 'insert', { parent_id: i + 1 }, { parent_id: i + 1, name })),
      deadLetters: [],
      checkpoint: { stream: `it's`, position: `p\\1'` },
    });
    const rows = await db.query<{ name: string }>('SELECT name FROM parents ORDER BY parent_id');
    expect(rows.map((r) => r.name)).toEqual(names);
    expect(await sink.readCheckpoint(`it's`)).toBe(`p\\1'`);
  });

  it('applies a TRUNCATE as a delete of every row, in the batch transaction, before the changes that followed it', async () => {
    await db.query(`INSERT INTO parents VALUES (1, 'p'), (2, 'q'); INSERT INTO items (item_id, parent_id, name) VALUES (1, 1, 'a'), (2, 2, 'b')`);
    const result = await sink.apply({
      changes: [change('dbo.Items', 'truncate', {}, null), change('dbo.Items', 'insert', { item_id: 3 }, { item_id: 3, parent_id: 1, name: 'c' })],
      deadLetters: [],
      checkpoint: { stream: 's1', position: 't1' },
    });
    expect(result.written).toBe(3);
    expect(await db.query(`SELECT item_id::int AS id FROM items ORDER BY 1`)).toEqual([{ id: 3 }]);
    expect(await db.query(`SELECT count(*)::int AS n FROM parents`)).toEqual([{ n: 2 }]);
    expect(await sink.readCheckpoint('s1')).toBe('t1');
  });

  it('sends row values only as bind parameters, never in SQL text (which PostgreSQL may log)', async () => {
    const texts: string[] = [];
    const query = vi.spyOn(pg.Client.prototype, 'query').mockImplementation(function (this: pg.Client, ...args: unknown[]) {
      const [first] = args;
      texts.push(typeof first === 'string' ? first : String((first as { text?: string }).text));
      return Reflect.apply(pgQuery, this, args) as never;
    });
    try {
      await sink.apply({
        changes: [change('dbo.Parents', 'insert', { parent_id: 77 }, { parent_id: 77, name: 'SECRET-VALUE-123' })],
        deadLetters: [{ stream: 's1', table: 'dbo.Items', key: { item_id: 1 }, payload: '{"name":"SECRET-LETTER-456"}', error: 'e', reason: 'other', position: 'p' }],
        checkpoint: { stream: 's1', position: 'p9' },
      });
    } finally {
      query.mockRestore();
    }
    expect(await db.query(`SELECT name FROM parents WHERE parent_id = 77`)).toEqual([{ name: 'SECRET-VALUE-123' }]);
    expect(texts.length).toBeGreaterThan(2);
    expect(texts.filter((t) => t.includes('SECRET-'))).toEqual([]);
  });

  it('applying the same batch twice leaves the same state and writes nothing the second time', async () => {
    const batch = {
      changes: [
        change('dbo.Parents', 'insert', { parent_id: 1 }, { parent_id: 1, name: 'p' }),
        change('dbo.Parents', 'insert', { parent_id: 2 }, { parent_id: 2, name: 'q' }),
        change('dbo.Parents', 'delete', { parent_id: 3 }, null),
      ],
      deadLetters: [],
      checkpoint: { stream: 's1', position: 'p2' },
    };
    const first = await sink.apply(batch);
    const before = await db.query('SELECT parent_id, name, xmin::text FROM parents ORDER BY parent_id');
    const second = await sink.apply(batch);
    const after = await db.query('SELECT parent_id, name, xmin::text FROM parents ORDER BY parent_id');
    expect(first.written).toBe(2);
    expect(second.written).toBe(0);
    // Same xmin: no new row version, so no trigger and no change on the other side.
    expect(after).toEqual(before);
  });

  it('an update that changes nothing writes no new row version', async () => {
    await sink.apply({ changes: [change('dbo.Parents', 'insert', { parent_id: 5 }, { parent_id: 5, name: 'same' })], deadLetters: [] });
    const [before] = await db.query<{ xmin: string }>('SELECT xmin::text FROM parents WHERE parent_id = 5');
    const result = await sink.apply({ changes: [change('dbo.Parents', 'update', { parent_id: 5 }, { parent_id: 5, name: 'same' })], deadLetters: [] });
    const [after] = await db.query<{ xmin: string }>('SELECT xmin::text FROM parents WHERE parent_id = 5');
    expect(result.written).toBe(0);
    expect(after!.xmin).toBe(before!.xmin);
  });

  it('rolls back the whole batch and its checkpoint on a constraint error, classified permanent', async () => {
    const error = await sink
      .apply({
        changes: [
          change('dbo.Parents', 'insert', { parent_id: 1 }, { parent_id: 1, name: 'p' }),
          change('dbo.Items', 'insert', { item_id: 1 }, { item_id: 1, parent_id: 99, name: 'orphan' }),
        ],
        deadLetters: [],
        checkpoint: { stream: 's1', position: 'p3' },
      })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PermanentError);
    expect((error as PermanentError).reason).toBe('missing-parent');
    expect((error as PermanentError).context).toMatchObject({ table: 'dbo.Items', code: '23503' });
    expect(await db.query('SELECT * FROM parents')).toEqual([]);
    expect(await sink.readCheckpoint('s1')).toBeNull();
  });

  it('stores dead letters in cdc_sync.dead_letters in the batch transaction', async () => {
    await sink.apply({
      changes: [],
      deadLetters: [{ stream: 's1', table: 'dbo.Items', key: { item_id: 7 }, payload: '{bad', error: 'malformed', reason: 'malformed', position: '42' }],
      checkpoint: { stream: 's1', position: '42' },
    });
    const rows = await db.query('SELECT stream, table_name, key, payload, error, reason, position FROM cdc_sync.dead_letters');
    expect(rows).toEqual([{ stream: 's1', table_name: 'dbo.Items', key: { item_id: 7 }, payload: '{bad', error: 'malformed', reason: 'malformed', position: '42' }]);
  });

  it('does not overwrite columns a row does not carry', async () => {
    await sink.apply({ changes: [change('dbo.Parents', 'insert', { parent_id: 1 }, { parent_id: 1, name: 'p' })], deadLetters: [] });
    await sink.apply({
      changes: [
        change('dbo.Items', 'insert', { item_id: 1 }, { item_id: 1, parent_id: 1, name: 'full', price: '1.5' }),
        change('dbo.Items', 'insert', { item_id: 2 }, { item_id: 2, name: 'partial' }),
      ],
      deadLetters: [],
    });
    await sink.apply({ changes: [change('dbo.Items', 'update', { item_id: 1 }, { item_id: 1, name: 'renamed' })], deadLetters: [] });
    expect(await db.query('SELECT item_id::int AS id, parent_id, name, price::text FROM items ORDER BY item_id')).toEqual([
      { id: 1, parent_id: 1, name: 'renamed', price: '1.5000000000' },
      { id: 2, parent_id: null, name: 'partial', price: null },
    ]);
  });

  it('changes only the owned columns of an existing row, and writes new rows whole', async () => {
    const owned = new PostgresSink(db.url);
    const tables: TableConfig[] = [{ source: 'dbo.Parents', target: 'public.parents', key: ['ParentID'], owns: ['Name'] }];
    const targets = await owned.open(testContext('owner'), tables);
    owned.bind(tables.map((t, i) => new TableMapping(t, targets[i]!, `tables[${i}]`, () => {})));
    await db.query(`ALTER TABLE parents ADD COLUMN IF NOT EXISTS region text`);
    await db.query(`INSERT INTO parents VALUES (1, 'old', 'north')`);
    await owned.apply({
      changes: [
        change('dbo.Parents', 'update', { parent_id: 1 }, { parent_id: 1, name: 'renamed', region: 'south' }),
        change('dbo.Parents', 'insert', { parent_id: 2 }, { parent_id: 2, name: 'new', region: 'east' }),
      ],
      deadLetters: [],
    });
    await owned.close();
    expect(await db.query('SELECT parent_id, name, region FROM parents ORDER BY 1')).toEqual([
      { parent_id: 1, name: 'renamed', region: 'north' },
      { parent_id: 2, name: 'new', region: 'east' },
    ]);
    await db.query(`ALTER TABLE parents DROP COLUMN region`);
  });

  it('refuses to open when a target table does not exist, naming the key path', async () => {
    const s = new PostgresSink(db.url);
    const error = await s.open(testContext(), [{ source: 'a', target: 'public.nope' }]).catch((e: unknown) => e);
    await s.close();
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toContain('tables[0].target');
    expect((error as Error).message).toContain('public.nope');
  });

  it('reports an unreachable database as transient and marks the sink disconnected', async () => {
    const context = testContext();
    const s = new PostgresSink('postgres://postgres@127.0.0.1:1/none');
    const error = await s.open(context, TABLES).catch((e: unknown) => e);
    await s.close();
    expect((error as { transient: boolean }).transient).toBe(true);
    expect(context.connected.sink).toBe(false);
  });
});

