import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../support/test-database.js';
import { metricValue, runCli, runCliToEnd, waitFor, writeConfig, CliProcesses } from '../support/cli.js';

/**
 * A user points cdc-sync at a SQLite database that already holds 100,000
 * rows. `run` with the default configuration copies them while the
 * application goes on writing, survives kill -9 in the middle of the copy,
 * resumes from its last chunk, and ends with the target equal to the source.
 */
const ROWS = 100_000;
let pg: TestDatabase;
let sqlitePath: string;
let sqlite: Database.Database;
let configPath: string;
const processes = new CliProcesses();

beforeAll(async () => {
  pg = await createTestDatabase('snapshot');
  await pg.query(`CREATE TABLE items (id bigint PRIMARY KEY, name text, qty int)`);
  sqlitePath = join(mkdtempSync(join(tmpdir(), 'cdc-sync-snapshot-')), 'shop.db');
  sqlite = new Database(sqlitePath);
  sqlite.pragma('journal_mode = WAL');
  sqlite.exec(`CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, qty INTEGER)`);
  const insert = sqlite.prepare(`INSERT INTO items (id, name, qty) VALUES (?, ?, ?)`);
  sqlite.transaction(() => {
    for (let i = 1; i <= ROWS; i += 1) insert.run(i, `item ${i}`, i % 97);
  })();
  configPath = writeConfig(`
streams:
  - name: shop
    source: { type: sqlite-changelog, url: "sqlite:${sqlitePath}", idleIntervalMs: 50 }
    sink: { type: postgres, url: "${pg.url}" }
    tables:
      - { source: items, target: public.items }
http: { port: 0, host: 127.0.0.1 }
`);
  const init = await runCliToEnd(['init-sql', '--config', configPath]);
  expect(init.code, init.stderr).toBe(0);
  // The capture triggers come after the rows: none of them is in the change log.
  sqlite.exec(init.stdout.split(/^-- stream .*\(postgres/m)[0]!);
  expect((sqlite.prepare(`SELECT count(*) AS n FROM cdc_sync_changes`).get() as { n: number }).n).toBe(0);
}, 60_000);

afterEach(async () => {
  await processes.killAll();
});

afterAll(async () => {
  sqlite?.close();
  await pg?.drop();
});

describe('snapshot of existing rows (sqlite-changelog → postgres, default configuration)', () => {
  it('copies 100,000 existing rows while the application writes, resumes after kill -9 without copying finished chunks again, and ends equal', async () => {
    let edits = 0;
    const writer = setInterval(() => {
      // A few random edits every few milliseconds, over rows copied, being copied and not yet copied.
      for (let i = 0; i < 5; i += 1) {
        const id = 1 + Math.floor(Math.random() * (ROWS + 500));
        const r = Math.random();
        if (r < 0.6) sqlite.prepare(`INSERT INTO items (id, name, qty) VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET name = excluded.name, qty = excluded.qty`).run(id, `edit ${edits}`, edits);
        else if (r < 0.9) sqlite.prepare(`DELETE FROM items WHERE id = ?`).run(id);
        else sqlite.prepare(`UPDATE items SET id = ? WHERE id = ? AND NOT EXISTS (SELECT 1 FROM items WHERE id = ?)`).run(ROWS + 1000 + edits, id, ROWS + 1000 + edits);
        edits += 1;
      }
    }, 5);
    try {
      const first = processes.add(runCli(['run', '--config', configPath]));
      const killAt = 20_000 + Math.floor(Math.random() * 50_000);
      await waitFor(async () => (metricValue(await first.metrics(), 'cdc_sync_snapshot_rows_total', { stream: 'shop' }) ?? 0) >= killAt, 60_000, first.stderr);
      first.child.kill('SIGKILL');
      await first.exited;
      processes.forget(first);
      const [stored] = await pg.query<{ position: string }>(`SELECT position FROM cdc_sync.checkpoints WHERE stream = 'shop'`);
      const copy = JSON.parse(stored!.position).copy as { tables: string[]; key: string };
      expect(copy.tables).toEqual(['items']);
      const resumeAfter = (JSON.parse(copy.key) as { id: number }).id;
      expect(resumeAfter).toBeGreaterThan(0);
      // An unfinished copy never says it finished.
      expect(first.logs.some((l) => l.msg === 'copy of existing rows finished')).toBe(false);

      const second = processes.add(runCli(['run', '--config', configPath]));
      await waitFor(async () => metricValue(await second.metrics(), 'cdc_sync_snapshot_progress_ratio', { table: 'items' }) === 1, 120_000, second.stderr);
      const copiedAgain = metricValue(await second.metrics(), 'cdc_sync_snapshot_rows_total', { stream: 'shop' })!;
      // Only rows after the last checkpointed chunk, and the few the writer inserted or re-keyed above them.
      expect(copiedAgain).toBeLessThan(ROWS - resumeAfter + 2_000);
      clearInterval(writer);
      const source = () => sqlite.prepare(`SELECT id, name, qty FROM items ORDER BY id`).all() as { id: number; name: string; qty: number }[];
      const target = async () => (await pg.query<{ id: string; name: string; qty: number }>(`SELECT id::text, name, qty FROM items ORDER BY id`)).map((r) => ({ ...r, id: Number(r.id) }));
      let differ = '';
      await waitFor(
        async () => {
          const [want, have] = [source(), await target()];
          const got = new Map(have.map((r) => [r.id, JSON.stringify(r)]));
          const wrong = want.filter((r) => got.get(r.id) !== JSON.stringify(r));
          const ids = new Set(want.map((r) => r.id));
          const extra = have.filter((r) => !ids.has(r.id));
          differ = `${wrong.length} rows differ or are missing, e.g. ${JSON.stringify(wrong.slice(0, 3).map((r) => [r, got.get(r.id) ?? null]))}; ${extra.length} extra, e.g. ${JSON.stringify(extra.slice(0, 3))}`;
          return wrong.length === 0 && extra.length === 0;
        },
        60_000,
        () => `after ${edits} edits: ${differ}`,
      );
      expect(edits).toBeGreaterThan(100);
      await waitFor(() => second.logs.some((l) => l.msg === 'copy of existing rows finished' && l.table === 'items'), 10_000, second.stderr);
      expect(await processes.stop(second)).toBe(0);
    } finally {
      clearInterval(writer);
    }
  }, 240_000);
});
