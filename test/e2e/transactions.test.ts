import Database from 'better-sqlite3';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../support/test-database.js';
import { runCli, runCliToEnd, waitFor, writeConfig, CliProcesses } from '../support/cli.js';

/**
 * A source transaction larger than batch.maxSize that inserts children
 * before their parent arrives whole, parents first, though the
 * configuration lists the child table first: the order comes from the
 * target's foreign keys.
 */
const processes = new CliProcesses();
let target: TestDatabase;
let pgSource: TestDatabase;
let sqlitePath: string;

const TARGET_SCHEMA = `
  CREATE TABLE parent (id int PRIMARY KEY, name text);
  CREATE TABLE child (id int PRIMARY KEY, parent_id int NOT NULL REFERENCES parent (id), note text);`;

beforeAll(async () => {
  target = await createTestDatabase('tx_target');
  await target.query(TARGET_SCHEMA);
  pgSource = await createTestDatabase('tx_source');
  await pgSource.query(`
    CREATE TABLE parent (id int PRIMARY KEY, name text);
    CREATE TABLE child (id int PRIMARY KEY, parent_id int NOT NULL REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED, note text);`);
  sqlitePath = join(mkdtempSync(join(tmpdir(), 'cdc-sync-tx-')), 'source.db');
  const db = new Database(sqlitePath);
  db.pragma('journal_mode = WAL');
  db.exec(`CREATE TABLE parent (id INTEGER PRIMARY KEY, name TEXT);
           CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER NOT NULL REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED, note TEXT);`);
  db.close();
});

afterEach(async () => {
  await processes.killAll();
});

afterAll(async () => {
  await target.drop();
  await pgSource.drop();
});

async function run(source: string, write: () => Promise<void>, base: number): Promise<void> {
  const config = writeConfig(`
streams:
  - name: tx-${base}
    source: ${source}
    sink: { type: postgres, url: "${target.url}" }
    tables: [{ source: child, target: public.child }, { source: parent, target: public.parent }]
    batch: { maxSize: 16, maxWaitMs: 10 }
http: { port: 0, host: 127.0.0.1 }
`);
  const init = await runCliToEnd(['init-sql', '--config', config]);
  expect(init.code).toBe(0);
  if (source.includes('sqlite')) {
    const db = new Database(sqlitePath);
    db.exec(init.stdout);
    db.close();
  } else {
    await pgSource.query(init.stdout);
  }
  await write();
  const cli = processes.add(runCli(["run", "--config", config]));
  await cli.port();
  const count = async () => Number((await target.query<{ n: string }>(`SELECT count(*) AS n FROM child WHERE id >= $1 AND id < $2`, [base, base + 1000]))[0]!.n);
  // The sink makes its tables when it opens, which may come after the process said it runs.
  const letters = async () => {
    const [exists] = await target.query<{ ok: boolean }>(`SELECT to_regclass('cdc_sync.dead_letters') IS NOT NULL AS ok`);
    if (!exists!.ok) return 0;
    return Number((await target.query<{ n: string }>(`SELECT count(*) AS n FROM cdc_sync.dead_letters WHERE stream = $1`, [`tx-${base}`]))[0]!.n);
  };
  await waitFor(async () => (await count()) === 40 || (await letters()) > 0, 30_000, () => cli.stderr().slice(-3000));
  await new Promise((r) => setTimeout(r, 300));
  expect(await letters()).toBe(0);
  expect(await count()).toBe(40);
  expect(await target.query(`SELECT id, name FROM parent WHERE id = $1`, [base])).toEqual([{ id: base, name: 'parent' }]);
}

describe('a source transaction applied whole, parents first', () => {
  it('postgres-changelog: 40 children inserted before their parent in one transaction, batch.maxSize 16', async () => {
    await run(
      `{ type: postgres-changelog, url: "${pgSource.url}", idleIntervalMs: 20 }`,
      async () => {
        await pgSource.query(`BEGIN;
          INSERT INTO child SELECT g, 1000, 'born' FROM generate_series(1001, 1040) g;
          INSERT INTO parent VALUES (1000, 'parent');
          COMMIT;`);
      },
      1000,
    );
  });

  it('sqlite-changelog: 40 children inserted before their parent in one transaction, batch.maxSize 16', async () => {
    await run(
      `{ type: sqlite-changelog, url: "sqlite:${sqlitePath}", idleIntervalMs: 20 }`,
      async () => {
        const db = new Database(sqlitePath);
        db.transaction(() => {
          for (let i = 1; i <= 40; i += 1) db.prepare(`INSERT INTO child VALUES (?, 2000, 'born')`).run(2000 + i);
          db.prepare(`INSERT INTO parent VALUES (2000, 'parent')`).run();
        })();
        db.close();
      },
      2000,
    );
  });
});
