import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { ChangeEvent, Row } from '../../../src/core/change-event.js';
import { TableMapping, type TableConfig } from '../../../src/core/mapping.js';
import { PostgresSink } from '../../../src/sinks/postgres/postgres-sink.js';
import { keyChange } from '../../../src/cdc/key-change.js';
import { coalesce } from '../../../src/streams/operators/coalesce.js';
import { createTestDatabase, type TestDatabase } from '../../support/test-database.js';
import { testContext } from '../../support/stream-context.js';

/**
 * New rows (`insert` changes) go into PostgreSQL with COPY, the others with
 * INSERT … ON CONFLICT. A trigger records which statement wrote each row
 * (current_query() is the top-level statement: COPY or INSERT).
 */
const TABLES: TableConfig[] = [
  { source: 'a', target: 'public.kinds_a', key: ['id'] },
  { source: 'b', target: 'public.kinds_b', key: ['id'] },
];

const KINDS = `(
  id int PRIMARY KEY, t text, n numeric(30,10), i8 bigint, f8 float8, b bool, ts timestamptz, tsn timestamp,
  d date, u uuid, by bytea, j jsonb, js json, arr text[], iv interval)`;

let db: TestDatabase;
let sink: PostgresSink;

function change(table: string, op: ChangeEvent['op'], row: Row): ChangeEvent {
  return { table, op, key: { id: row.id ?? null }, row, before: null, position: '1', commitTime: new Date() };
}

async function writers(table: string): Promise<string[]> {
  return (await db.query<{ statement: string }>(`SELECT statement FROM writes WHERE tbl = $1 ORDER BY seq`, [table])).map((r) => r.statement);
}

beforeAll(async () => {
  db = await createTestDatabase('copy');
  await db.query(`
    CREATE TABLE kinds_a ${KINDS};
    CREATE TABLE kinds_b ${KINDS};
    CREATE TABLE writes (seq serial, tbl text, statement text);
    CREATE FUNCTION record_write() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      INSERT INTO writes (tbl, statement) VALUES (TG_TABLE_NAME, split_part(ltrim(current_query()), ' ', 1));
      RETURN NEW;
    END $$;
    CREATE TRIGGER record_write BEFORE INSERT OR UPDATE ON kinds_a FOR EACH ROW EXECUTE FUNCTION record_write();
    CREATE TRIGGER record_write BEFORE INSERT OR UPDATE ON kinds_b FOR EACH ROW EXECUTE FUNCTION record_write();`);
});

beforeEach(async () => {
  await sink?.close();
  // A fresh sink per test: no COPY pause carried over.
  sink = new PostgresSink(db.url);
  const targets = await sink.open(testContext('copy'), TABLES);
  sink.bind(TABLES.map((t, i) => new TableMapping(t, targets[i]!, `tables[${i}]`, () => {})));
  await db.query('TRUNCATE kinds_a, kinds_b, writes, cdc_sync.checkpoints');
});

afterAll(async () => {
  await sink.close();
  await db.drop();
});

const ROWS: Row[] = [
  {
    id: 1,
    t: 'tab\there, newline\nthere, CR\r, backslash \\ and \\N, quote \' " Zoë ✓ 𝄞',
    n: '12345678901234567890.0123456789',
    i8: '9007199254740993',
    f8: 1.5,
    b: true,
    ts: new Date('2024-02-29T23:59:59.123Z'),
    tsn: '2024-02-29 23:59:59.123456',
    d: '2024-02-29',
    u: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
    by: Buffer.from([0, 1, 92, 255]),
    j: { nested: [1, 'two', { tab: 'a\tb' }] },
    js: { k: 'v\\w' },
    arr: '{a,"b c",NULL}',
    iv: '1 day 02:03:04',
  },
  { id: 2, t: '', n: '-0.5', i8: -1n, f8: Number.NEGATIVE_INFINITY, b: false, ts: null, tsn: null, d: null, u: null, by: Buffer.alloc(0), j: 'just a string', js: 5, arr: '{}', iv: null },
  { id: 3, t: null, n: null, i8: null, f8: 'NaN', b: 't', ts: '2024-01-01T00:00:00+05:00', tsn: new Date('2024-01-01T00:00:00Z'), d: null, u: null, by: null, j: null, js: null, arr: null, iv: null },
];

const COMPARE = `SELECT id, t, n, i8, f8::text, b, ts, tsn, d, u, by, j::text, js::text, arr, iv FROM`;

describe('PostgresSink with COPY', () => {
  it('writes new rows with COPY and the others with upserts, and both write exactly the same values', async () => {
    let sent = 0;
    const result = await sink.apply({
      changes: [...ROWS.map((r) => change('a', 'insert', r)), ...ROWS.map((r) => change('b', 'update', r))],
      deadLetters: [],
      checkpoint: { stream: 'copy', position: 'c1' },
      onSent: () => (sent += 1),
    });
    expect(result.written).toBe(6);
    // Told once, when its largest statement was on its way (the stream then prepares the next batch).
    expect(sent).toBe(1);
    expect(await writers('kinds_a')).toEqual(['COPY', 'COPY', 'COPY']);
    expect(await writers('kinds_b')).toEqual(['INSERT', 'INSERT', 'INSERT']);
    const a = await db.query(`${COMPARE} kinds_a ORDER BY id`);
    expect(a).toHaveLength(3);
    expect(await db.query(`${COMPARE} kinds_b ORDER BY id`)).toEqual(a);
    expect(a[0]).toMatchObject({ t: ROWS[0]!.t, n: '12345678901234567890.0123456789', i8: '9007199254740993', by: Buffer.from([0, 1, 92, 255]) });
    // Not null: JSON has no -Infinity, so both statements carry it as PostgreSQL's text for it.
    expect(a[1]).toMatchObject({ t: '', f8: '-Infinity', j: '"just a string"', js: '5' });
    expect(a[2]).toMatchObject({ f8: 'NaN', b: true });
    expect(await sink.readCheckpoint('copy')).toBe('c1');
  });

  it('writes new rows holding an array or object for a plain column with the json statement', async () => {
    await sink.apply({ changes: [change('a', 'insert', { id: 1, arr: ['x', 'y z'] })], deadLetters: [] });
    expect(await writers('kinds_a')).toEqual(['INSERT']);
    expect(await db.query(`SELECT arr FROM kinds_a`)).toEqual([{ arr: ['x', 'y z'] }]);
  });

  it('upserts new rows the target has already: the refused COPY is rolled back and the batch applied again, checkpoint included', async () => {
    await db.query(`INSERT INTO kinds_a (id, t) VALUES (1, 'there before')`);
    await db.query('TRUNCATE writes');
    const result = await sink.apply({
      changes: [change('a', 'insert', { id: 1, t: 'one' }), change('a', 'insert', { id: 2, t: 'two' }), change('b', 'insert', { id: 1, t: 'b' })],
      deadLetters: [],
      checkpoint: { stream: 'copy', position: 'c2' },
    });
    expect(result.written).toBe(3);
    expect(await db.query(`SELECT id, t FROM kinds_a ORDER BY id`)).toEqual([
      { id: 1, t: 'one' },
      { id: 2, t: 'two' },
    ]);
    // Only what the batch applied the second time remains: the upserts of kinds_a (BEFORE INSERT for both rows, BEFORE UPDATE
    // for the one that existed); kinds_b's rows still go with COPY.
    expect(await writers('kinds_a')).toEqual(['INSERT', 'INSERT', 'INSERT']);
    expect(await writers('kinds_b')).toEqual(['COPY']);
    expect(await sink.readCheckpoint('copy')).toBe('c2');
  });

  it('a key change moves the row (delete, then COPY of the new key); applied again over a target that has the new key, it is upserted', async () => {
    await db.query(`INSERT INTO kinds_a (id, t) VALUES (1, 'one'), (2, 'two')`);
    await db.query('TRUNCATE writes');
    const update: ChangeEvent = { ...change('a', 'update', { id: 1001, t: 'one' }), before: { id: 1, t: 'one' } };
    const changes = coalesce(keyChange(update, { id: 1 }), ['a', 'b']);
    const expected = [
      { id: 2, t: 'two' },
      { id: 1001, t: 'one' },
    ];
    await sink.apply({ changes, deadLetters: [], checkpoint: { stream: 'copy', position: 'k1' } });
    expect(await db.query(`SELECT id, t FROM kinds_a ORDER BY id`)).toEqual(expected);
    expect(await writers('kinds_a')).toEqual(['COPY']);
    // The same batch again (a checkpoint put back): the new key's COPY is refused, the upsert writes nothing new.
    await sink.apply({ changes, deadLetters: [], checkpoint: { stream: 'copy', position: 'k1' } });
    expect(await db.query(`SELECT id, t FROM kinds_a ORDER BY id`)).toEqual(expected);
    expect(await writers('kinds_a')).toEqual(['COPY', 'INSERT']);
  });

  it('upserts the new rows of a table whose COPY was refused for the next 16 batches, then tries COPY again', async () => {
    await db.query(`INSERT INTO kinds_a (id, t) VALUES (1, 'there before')`);
    await sink.apply({ changes: [change('a', 'insert', { id: 1, t: 'one' })], deadLetters: [] });
    for (let i = 0; i < 15; i += 1) await sink.apply({ changes: [change('b', 'update', { id: 100 + i, t: 'x' })], deadLetters: [] });
    await db.query('TRUNCATE writes');
    await sink.apply({ changes: [change('a', 'insert', { id: 2, t: 'two' })], deadLetters: [] });
    await sink.apply({ changes: [change('a', 'insert', { id: 3, t: 'three' })], deadLetters: [] });
    expect(await writers('kinds_a')).toEqual(['INSERT', 'COPY']);
  });
});
