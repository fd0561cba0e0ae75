import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { changelogSetupSql } from '../../src/cdc/postgres/changelog-setup.js';
import { runCli, waitFor, CliProcesses, type CliProcess } from '../support/cli.js';
import { TWO_WAY_ITEMS_SQL, twoWayItemsConfig } from '../support/two-way-items.js';
import { createTestDatabase, type TestDatabase } from '../support/test-database.js';

/**
 * Both ways between two PostgreSQL change logs under newer-wins by the rows'
 * updated-at column. The column decides between two updates; a delete has
 * no updated-at, so a change that meets one is judged by change time
 * (judgedByChangeTime). By the column alone a delete racing an update of the
 * same row left it deleted on one side only: A kept row 3 (brought back by
 * B's older update), B kept row 4 (A's newer update) while A took B's older
 * delete.
 */
let a: TestDatabase;
let b: TestDatabase;
const processes = new CliProcesses();

const config = () => twoWayItemsConfig('type: postgres-changelog, snapshot: never, idleIntervalMs: 20', ', conflict: newer-wins, updatedAt: updated_at');

const start = (path: string): CliProcess => processes.add(runCli(['run', '--config', path], { A_URL: a.url, B_URL: b.url }));
const rows = async (db: TestDatabase) => JSON.stringify(await db.query(`SELECT id, name, updated_at FROM items ORDER BY id`));
const pause = () => new Promise((r) => setTimeout(r, 20));

beforeAll(async () => {
  a = await createTestDatabase('updated_at_two_way_a');
  b = await createTestDatabase('updated_at_two_way_b');
  for (const db of [a, b]) {
    await db.query(TWO_WAY_ITEMS_SQL);
    await db.query(changelogSetupSql(['public.items']));
  }
});

beforeEach(async () => {
  for (const db of [a, b]) await db.query(`TRUNCATE items; TRUNCATE cdc_sync.changes`);
});

afterEach(async () => {
  await processes.killAll();
});

afterAll(async () => {
  await a.drop();
  await b.drop();
});

describe('postgres-changelog ⇄ postgres-changelog, newer-wins by updated_at', () => {
  it('ends equal when a delete races an update of the same row, the newer of the two winning on both sides', async () => {
    const path = config();
    let cli = start(path);
    await a.query(`INSERT INTO items (id, name) VALUES (1, 'first'), (2, 'first'), (3, 'first'), (4, 'first')`);
    await waitFor(async () => (await b.query(`SELECT 1 FROM items`)).length === 4, 20_000, () => cli.stderr());
    await processes.stop(cli);

    // While cdc-sync is down, each pair of edits 20 ms apart: the second is the newer.
    const update = async (db: TestDatabase, id: number, name: string) => {
      await db.query(`UPDATE items SET name = $2, updated_at = now() WHERE id = $1`, [id, name]);
      await pause();
    };
    const remove = async (db: TestDatabase, id: number) => {
      await db.query(`DELETE FROM items WHERE id = $1`, [id]);
      await pause();
    };
    await update(b, 1, 'b older');
    await update(a, 1, 'a newer');
    await update(b, 2, 'b older');
    await remove(a, 2);
    await remove(b, 3);
    await update(a, 3, 'a newer');
    await remove(a, 4);
    await update(b, 4, 'b newer');

    cli = start(path);
    let seen = '';
    await waitFor(
      async () => {
        seen = `A ${await rows(a)}\nB ${await rows(b)}`;
        const names = async (db: TestDatabase) => (await db.query<{ id: string; name: string }>(`SELECT id::text, name FROM items ORDER BY id`)).map((r) => `${r.id}:${r.name}`).join(' ');
        return (await names(a)) === '1:a newer 3:a newer 4:b newer' && (await names(b)) === '1:a newer 3:a newer 4:b newer';
      },
      30_000,
      () => `${seen}\n${cli.stderr()}`,
    );
    // Settled, and equal to the updated-at.
    await new Promise((r) => setTimeout(r, 1500));
    expect(await rows(a)).toBe(await rows(b));
  });
});
