import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../support/test-database.js';
import { metricValue, runCli, runCliToEnd, waitFor, writeConfig, CliProcesses, type CliProcess } from '../support/cli.js';

/**
 * Both directions in one process, PostgreSQL ↔ PostgreSQL through change-log
 * sources and PostgreSQL sinks: edits on both sides converge, an edit is
 * written once on each side (no echo), concurrent edits resolve by
 * newer-wins, and a burst of edits on both sides ends equal with no storm.
 */
let a: TestDatabase;
let b: TestDatabase;
let configPath: string;
const processes = new CliProcesses();

const SCHEMA = `
  CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, note text, updated_at timestamptz NOT NULL);
  -- Counts every row write, whoever makes it: the measure of echoes.
  CREATE TABLE write_log (n bigint GENERATED ALWAYS AS IDENTITY, id int, op text);
  CREATE FUNCTION log_write() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN INSERT INTO write_log (id, op) VALUES (coalesce(NEW.id, OLD.id), TG_OP); RETURN NULL; END $$;
  CREATE TRIGGER log_write AFTER INSERT OR UPDATE OR DELETE ON items FOR EACH ROW EXECUTE FUNCTION log_write();`;

beforeAll(async () => {
  a = await createTestDatabase('two_way_a');
  b = await createTestDatabase('two_way_b');
  await a.query(SCHEMA);
  await b.query(SCHEMA);
  const table = `{ source: public.items, target: public.items, conflict: newer-wins, updatedAt: updated_at }`;
  configPath = writeConfig(`
streams:
  - name: a-to-b
    source: { type: postgres-changelog, url: "${a.url}", idleIntervalMs: 50 }
    sink: { type: postgres, url: "${b.url}" }
    tables: [${table}]
    batch: { maxSize: 1000, maxWaitMs: 20 }
  - name: b-to-a
    direction: reverse
    source: { type: postgres-changelog, url: "${b.url}", idleIntervalMs: 50 }
    sink: { type: postgres, url: "${a.url}" }
    tables: [${table}]
    batch: { maxSize: 1000, maxWaitMs: 20 }
http: { port: 0, host: 127.0.0.1 }
`);
  const init = await runCliToEnd(['init-sql', '--config', configPath]);
  expect(init.code).toBe(0);
  // One script per source database; apply each where it belongs.
  const [forA, forB] = init.stdout.split(/^-- stream "b-to-a".*$/m);
  await a.query(forA!);
  await b.query(forB!);
});

afterEach(async () => {
  await processes.killAll();
});

afterAll(async () => {
  await a.drop();
  await b.drop();
});

function start(): CliProcess {
  const cli = runCli(['run', '--config', configPath]);
  return processes.add(cli);
}

async function stop(cli: CliProcess): Promise<number | null> {
  return processes.stop(cli, 'SIGINT');
}

const rows = (db: TestDatabase) => db.query(`SELECT id, name, note, updated_at FROM items ORDER BY id`);
const writes = async (db: TestDatabase) => Number((await db.query<{ n: string }>(`SELECT count(*) AS n FROM write_log`))[0]!.n);
const equal = async () => JSON.stringify(await rows(a)) === JSON.stringify(await rows(b));

describe('two-way PostgreSQL ↔ PostgreSQL in one process', () => {
  it('converges edits from both sides and writes each edit once per side', async () => {
    const cli = start();
    await a.query(`INSERT INTO items SELECT g, 'a' || g, NULL, now() FROM generate_series(1, 100) g`);
    await b.query(`INSERT INTO items SELECT g, 'b' || g, NULL, now() FROM generate_series(101, 200) g`);
    await waitFor(async () => (await rows(a)).length === 200 && (await equal()), 30_000, () => cli.stderr());
    await a.query(`UPDATE items SET note = 'edited on a', updated_at = now() WHERE id BETWEEN 1 AND 10`);
    await waitFor(async () => (await b.query(`SELECT 1 FROM items WHERE note = 'edited on a'`)).length === 10, 30_000);
    await b.query(`UPDATE items SET note = 'edited on b', updated_at = now() WHERE id BETWEEN 101 AND 110`);
    await waitFor(async () => (await a.query(`SELECT 1 FROM items WHERE note = 'edited on b'`)).length === 10 && (await equal()), 30_000);
    // Give any echo time to show up before counting.
    await new Promise((r) => setTimeout(r, 500));
    // 220 user writes (200 inserts, 20 updates); each lands once on its own side and once on the other.
    expect((await writes(a)) + (await writes(b))).toBe(2 * 220);
    // Only user edits were captured: the sinks' writes did not enter either change log.
    expect(Number((await a.query<{ n: string }>(`SELECT count(*) AS n FROM cdc_sync.changes`))[0]!.n)).toBe(110);
    expect(Number((await b.query<{ n: string }>(`SELECT count(*) AS n FROM cdc_sync.changes`))[0]!.n)).toBe(110);
    expect(await stop(cli)).toBe(0);
  });

  it('resolves concurrent edits of one row by newer-wins on both sides and counts the loser', async () => {
    await a.query(`UPDATE items SET name = 'older edit on a', updated_at = '2030-01-01T00:00:00Z' WHERE id = 50`);
    await b.query(`UPDATE items SET name = 'newer edit on b', updated_at = '2030-01-01T00:00:05Z' WHERE id = 50`);
    const cli = start();
    await waitFor(async () => (await equal()) && (await a.query(`SELECT 1 FROM items WHERE id = 50 AND name = 'newer edit on b'`)).length === 1, 30_000, () => cli.stderr());
    // b can hold the winner before a's older edit reaches it and loses there: the count comes with that batch.
    await waitFor(async () => metricValue(await cli.metrics(), 'cdc_sync_conflicts_total', { stream: 'a-to-b', table: 'public.items' }) === 1, 30_000, () => cli.stderr());
    const text = await cli.metrics();
    expect(metricValue(text, 'cdc_sync_conflicts_total', { stream: 'a-to-b', table: 'public.items' })).toBe(1);
    expect(metricValue(text, 'cdc_sync_conflicts_total', { stream: 'b-to-a', table: 'public.items' })).toBe(0);
    expect(cli.logs.some((l) => l.msg?.toString().startsWith('conflict') && (l.key as { id: number }).id === 50)).toBe(true);
    expect(await stop(cli)).toBe(0);
  });

  it('ends equal after a burst of 10,000 edits on both sides, with no write storm', async () => {
    const cli = start();
    const before = (await writes(a)) + (await writes(b));
    await Promise.all([
      (async () => {
        for (let i = 0; i < 10; i += 1) await a.query(`UPDATE items SET note = 'a burst ${i}', updated_at = clock_timestamp() WHERE id BETWEEN 1 AND 100`);
        await a.query(`INSERT INTO items SELECT g, 'a' || g, 'burst', now() FROM generate_series(1001, 5000) g`);
      })(),
      (async () => {
        for (let i = 0; i < 10; i += 1) await b.query(`UPDATE items SET note = 'b burst ${i}', updated_at = clock_timestamp() WHERE id BETWEEN 101 AND 200`);
        await b.query(`INSERT INTO items SELECT g, 'b' || g, 'burst', now() FROM generate_series(5001, 9000) g`);
      })(),
    ]);
    // 2 × (10 × 100 updates + 4,000 inserts) = 10,000 edits. Row 50's edits on a are older than
    // b's 2030 edit from the previous test: they lose on b, and b's row is pinged back to a.
    let state = '';
    await waitFor(
      async () => {
        const [ra, rb] = [await rows(a), await rows(b)];
        state = `a ${ra.length} rows, b ${rb.length} rows`;
        return ra.length === 8200 && JSON.stringify(ra) === JSON.stringify(rb);
      },
      45_000,
      () => `${state}\n${cli.stderr().slice(-3000)}`,
    );
    await new Promise((r) => setTimeout(r, 1000));
    const total = (await writes(a)) + (await writes(b)) - before;
    // Each edit is written on its own side and at most once on the other (batches may fold repeated updates of a row).
    expect(total).toBeGreaterThanOrEqual(10_000 + 8_000);
    expect(total).toBeLessThanOrEqual(2 * 10_000 + 1);
    expect((await a.query(`SELECT name FROM items WHERE id = 50`))[0]).toEqual({ name: 'newer edit on b' });
    expect(await stop(cli)).toBe(0);
  });
});

describe('two-way with the default conflict rule (no updatedAt column)', () => {
  let c: TestDatabase;
  let d: TestDatabase;
  let config: string;
  const DEFAULT_SCHEMA = `CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL)`;

  beforeAll(async () => {
    c = await createTestDatabase('two_way_default_c');
    d = await createTestDatabase('two_way_default_d');
    await c.query(DEFAULT_SCHEMA);
    await d.query(DEFAULT_SCHEMA);
    // Both sides start equal, so no copy: a copy read after the other side's edit crossed would carry that edit back
    // as the incoming row of the conflict logged (coalesce gives it the logged change's time), and this test checks the log.
    config = writeConfig(`
streams:
  - name: c-to-d
    source: { type: postgres-changelog, url: "${c.url}", idleIntervalMs: 50, snapshot: never }
    sink: { type: postgres, url: "${d.url}" }
    tables: [{ source: public.notes, target: public.notes }]
  - name: d-to-c
    direction: reverse
    source: { type: postgres-changelog, url: "${d.url}", idleIntervalMs: 50, snapshot: never }
    sink: { type: postgres, url: "${c.url}" }
    tables: [{ source: public.notes, target: public.notes }]
http: { port: 0, host: 127.0.0.1 }
`);
    const init = await runCliToEnd(['init-sql', '--config', config]);
    const [forC, forD] = init.stdout.split(/^-- stream "d-to-c".*$/m);
    await c.query(forC!);
    await d.query(forD!);
  });

  afterAll(async () => {
    await c.drop();
    await d.drop();
  });

  it('converges a row edited on both sides to the later edit, counts the conflict and logs both rows', async () => {
    await c.query(`INSERT INTO notes VALUES (1, 'first')`);
    await d.query(`INSERT INTO notes VALUES (1, 'first')`);
    await c.query(`DELETE FROM cdc_sync.changes`);
    await d.query(`DELETE FROM cdc_sync.changes`);
    // Both edits are made before either crosses: d's is the later one.
    await c.query(`UPDATE notes SET body = 'edited on c' WHERE id = 1`);
    // Change times compare in milliseconds and a tie goes to c (the forward stream's source): two statements
    // a few hundred microseconds apart often share one, and c then wins both ways (seen as a flaky failure).
    await new Promise((r) => setTimeout(r, 5));
    await d.query(`UPDATE notes SET body = 'edited on d' WHERE id = 1`);
    const cli = processes.add(runCli(['run', '--config', config]));
    const body = async (db: TestDatabase) => (await db.query<{ body: string }>(`SELECT body FROM notes WHERE id = 1`))[0]?.body;
    await waitFor(async () => (await body(c)) === 'edited on d' && (await body(d)) === 'edited on d', 30_000, () => cli.stderr());
    await new Promise((r) => setTimeout(r, 500));
    expect([await body(c), await body(d)]).toEqual(['edited on d', 'edited on d']);
    const text = await cli.metrics();
    expect(metricValue(text, 'cdc_sync_conflicts_total', { stream: 'c-to-d', table: 'public.notes' })).toBe(1);
    expect(metricValue(text, 'cdc_sync_conflicts_total', { stream: 'd-to-c', table: 'public.notes' })).toBe(0);
    const logged = await d.query<{ winner: string; incoming: unknown; stored: unknown; winning: unknown; rule: string }>(
      `SELECT winner, incoming, stored, winning, rule FROM cdc_sync.conflicts`,
    );
    expect(logged).toEqual([
      { winner: 'stored', rule: 'change-time', incoming: { id: 1, body: 'edited on c' }, stored: { id: 1, body: 'edited on d' }, winning: { id: 1, body: 'edited on d' } },
    ]);
    expect(await processes.stop(cli, 'SIGINT')).toBe(0);
  });

  it('ends equal after a burst of 10,000 edits on both sides, each batch judged against thousands of recent local changes', async () => {
    const cli = processes.add(runCli(['run', '--config', config]));
    const notes = (db: TestDatabase) => db.query(`SELECT id, body FROM notes ORDER BY id`);
    await Promise.all(
      [
        [c, 1_000],
        [d, 5_000],
      ].map(async ([db, from]) => {
        const side = db as TestDatabase;
        const low = from as number;
        await side.query(`INSERT INTO notes SELECT g, 'new' FROM generate_series(${low}, ${low + 99}) g`);
        for (let i = 0; i < 10; i += 1) await side.query(`UPDATE notes SET body = 'burst ${i}' WHERE id BETWEEN ${low} AND ${low + 99}`);
        await side.query(`INSERT INTO notes SELECT g, 'burst' FROM generate_series(${low + 100}, ${low + 3_999}) g`);
      }),
    );
    // Each side's sink compares every incoming batch with its own change log since the batch's oldest change:
    // with the log's recent end estimated at a row or two, PostgreSQL once chose a plan quadratic in both,
    // and this burst took 33 s instead of under 1 s.
    let state = '';
    await waitFor(
      async () => {
        const [rc, rd] = [await notes(c), await notes(d)];
        state = `c ${rc.length} rows, d ${rd.length} rows`;
        return rc.filter((r) => (r as { id: number }).id >= 1_000).length === 8_000 && JSON.stringify(rc) === JSON.stringify(rd);
      },
      // About 1 s here; with that plan 33 s.
      20_000,
      () => `${state}\n${cli.stderr().slice(-3000)}`,
    );
    expect(await processes.stop(cli, 'SIGINT')).toBe(0);
  });
});
