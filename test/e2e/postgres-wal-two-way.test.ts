import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { changelogSetupSql } from '../../src/cdc/postgres/changelog-setup.js';
import { MARKER_TABLE_SQL } from '../../src/cdc/postgres/wal-setup.js';
import { metricValue, runCli, runCliToEnd, waitFor, CliProcesses, type CliProcess } from '../support/cli.js';
import { TWO_WAY_ITEMS_SQL, twoWayItemsConfig } from '../support/two-way-items.js';
import { createTestDatabase, type TestDatabase } from '../support/test-database.js';

/**
 * Both ways between two PostgreSQL databases, A read through its WAL
 * (postgres-wal) and B through its change log: A keeps no change log, so the
 * stream writing into A has no change of A's to compare an incoming change
 * with. By change time (the default rule) an older edit of B overwrote a
 * newer edit of A while A's went to B, and the two ended swapped; the
 * configuration is refused. By the rows' updated-at column both sides
 * compare the same two values.
 */
let a: TestDatabase;
let b: TestDatabase;
const processes = new CliProcesses();
let run = 0;

function config(tableOptions: string): string {
  run += 1;
  return twoWayItemsConfig(`type: postgres-wal, slot: two_way_${run}, publication: two_way_${run}, snapshot: never`, tableOptions);
}

const env = () => ({ A_URL: a.url, B_URL: b.url });
const start = (path: string): CliProcess => processes.add(runCli(['run', '--config', path], env()));
const nameOf = async (db: TestDatabase, id: number) => (await db.query<{ name: string }>(`SELECT name FROM items WHERE id = $1`, [id]))[0]?.name;
const rows = async (db: TestDatabase) => JSON.stringify(await db.query(`SELECT id, name, updated_at FROM items ORDER BY id`));

async function applied(cli: CliProcess): Promise<number> {
  const text = await cli.metrics();
  let total = 0;
  for (const stream of ['a-to-b', 'b-to-a']) for (const op of ['insert', 'update', 'delete']) total += metricValue(text, 'cdc_sync_events_applied_total', { stream, table: 'public.items', op }) ?? 0;
  return total;
}

beforeAll(async () => {
  a = await createTestDatabase('wal_two_way_a');
  b = await createTestDatabase('wal_two_way_b');
  await a.query(TWO_WAY_ITEMS_SQL);
  await b.query(TWO_WAY_ITEMS_SQL);
  await a.query(MARKER_TABLE_SQL);
  await b.query(changelogSetupSql(['public.items']));
});

beforeEach(async () => {
  await a.query(`TRUNCATE items`);
  await b.query(`TRUNCATE items; TRUNCATE cdc_sync.changes`);
});

afterEach(async () => {
  await processes.killAll();
  await a.query(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = current_database() AND NOT active`);
});

afterAll(async () => {
  await a.drop();
  await b.drop();
});

describe('postgres-wal ⇄ postgres-changelog', () => {
  it('refuses to run both ways by change time, naming the setting that makes it safe', async () => {
    const path = config('');
    for (const args of [['validate', '--offline', '--config', path], ['run', '--config', path]]) {
      const result = await runCliToEnd(args, env());
      expect(result.code).toBe(2);
      expect(result.stderr).toContain('streams[0].tables[0].updatedAt');
      expect(result.stderr).toContain('reads with postgres-wal the database streams[1] ("b-to-a") writes into');
      expect(result.stderr).toContain('Set conflict: newer-wins with updatedAt');
    }
  });

  it('keeps the newer of two concurrent edits on both sides by updated_at, whichever side made it, without echoes', async () => {
    const path = config(', conflict: newer-wins, updatedAt: updated_at');
    let cli = start(path);
    await waitFor(() => cli.logs.some((l) => l.msg === 'logical replication started'), 30_000, () => cli.stderr());
    await a.query(`INSERT INTO items (id, name) VALUES (1, 'first'), (2, 'first')`);
    await waitFor(async () => (await nameOf(b, 1)) === 'first' && (await nameOf(b, 2)) === 'first', 20_000, () => cli.stderr());
    await processes.stop(cli);

    // While cdc-sync is down: row 1 changes on B, then later on A; row 2 on A, then later on B.
    const edit = async (db: TestDatabase, id: number, name: string) => {
      await db.query(`UPDATE items SET name = $2, updated_at = now() WHERE id = $1`, [id, name]);
      await new Promise((r) => setTimeout(r, 20));
    };
    await edit(b, 1, 'b older');
    await edit(a, 1, 'a newer');
    await edit(a, 2, 'a older');
    await edit(b, 2, 'b newer');

    cli = start(path);
    let seen = '';
    const converged = async () => {
      seen = `A ${await rows(a)}\nB ${await rows(b)}`;
      return (await nameOf(a, 1)) === 'a newer' && (await nameOf(b, 1)) === 'a newer' && (await nameOf(a, 2)) === 'b newer' && (await nameOf(b, 2)) === 'b newer';
    };
    await waitFor(converged, 30_000, () => `${seen}\n${cli.stderr()}`);
    expect(await rows(a)).toBe(await rows(b));
    // Settled: B sends the row-2 conflict it won back once (a lost conflict is pinged back); then nothing moves.
    await waitFor(async () => metricValue(await cli.metrics(), 'cdc_sync_events_applied_total', { stream: 'b-to-a', op: 'update' }) === 3, 20_000, () => cli.stderr());
    const settled = await applied(cli);
    expect(settled).toBe(5);
    await new Promise((r) => setTimeout(r, 1500));
    expect(await applied(cli)).toBe(settled);
    expect(await rows(a)).toBe(await rows(b));
  });
});
