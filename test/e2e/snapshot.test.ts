import { mkdtempSync, readFileSync } from 'node:fs';
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

/** A few random edits every few milliseconds, over rows copied, being copied and not yet copied. */
function startWriter(): { edits: number; stop: () => void } {
  const state = { edits: 0, stop: () => clearInterval(timer) };
  const timer = setInterval(() => {
    for (let i = 0; i < 5; i += 1) {
      const id = 1 + Math.floor(Math.random() * (ROWS + 500));
      const r = Math.random();
      const n = state.edits;
      if (r < 0.6) sqlite.prepare(`INSERT INTO items (id, name, qty) VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET name = excluded.name, qty = excluded.qty`).run(id, `edit ${n}`, n);
      else if (r < 0.9) sqlite.prepare(`DELETE FROM items WHERE id = ?`).run(id);
      else sqlite.prepare(`UPDATE items SET id = ? WHERE id = ? AND NOT EXISTS (SELECT 1 FROM items WHERE id = ?)`).run(ROWS + 1000 + n, id, ROWS + 1000 + n);
      state.edits += 1;
    }
  }, 5);
  return state;
}

/** Waits until the target holds exactly the source's rows. */
async function targetEqualsSource(context: () => string): Promise<void> {
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
    () => `${context()}: ${differ}`,
  );
}

describe('snapshot of existing rows (sqlite-changelog → postgres, default configuration)', () => {
  it('copies 100,000 existing rows while the application writes, resumes after kill -9 without copying finished chunks again, and ends equal', async () => {
    const writer = startWriter();
    const edits = () => writer.edits;
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
      writer.stop();
      await targetEqualsSource(() => `after ${edits()} edits`);
      expect(edits()).toBeGreaterThan(100);
      await waitFor(() => second.logs.some((l) => l.msg === 'copy of existing rows finished' && l.table === 'items'), 10_000, second.stderr);
      expect(await processes.stop(second)).toBe(0);
    } finally {
      writer.stop();
    }
  }, 240_000);

  it('copies a table again while the stream runs, through the control API (`cdc-sync snapshot --wait`): the target is repaired, the process never stops', async () => {
    const token = 'snapshot-token';
    const live = writeConfig(readFileSync(configPath, 'utf8').replace('http: { port: 0, host: 127.0.0.1 }', `http: { port: 0, host: 127.0.0.1, token: ${token} }`));
    const running = processes.add(runCli(['run', '--config', live]));
    await waitFor(async () => metricValue(await running.metrics(), 'cdc_sync_snapshot_progress_ratio', { table: 'items' }) === 1 || (await targetMatches()), 120_000, running.stderr);
    // Rows the target lost or got wrong behind cdc-sync's back: a copy puts them right.
    await pg.query(`DELETE FROM items WHERE id % 10 = 0`);
    await pg.query(`UPDATE items SET name = 'drift' WHERE id % 10 = 1`);
    const writer = startWriter();
    try {
      const url = (await running.url('')).replace(/\/$/, '');
      const asked = await runCliToEnd(['snapshot', '--config', live, '--stream', 'shop', '--table', 'items', '--wait', '--url', url]);
      expect(asked.code, asked.stderr).toBe(0);
      expect(asked.stdout).toMatch(/^stream shop: items copied again \(items \d+ rows\)/);
      expect(asked.stderr).toMatch(/shop: copying items: \d+ rows/);
      expect(asked.stderr).toContain('shop: copy done');
      writer.stop();
      await targetEqualsSource(() => `after ${writer.edits} edits`);
      expect(writer.edits).toBeGreaterThan(20);
      expect(running.logs.some((l) => l.msg === 'copy of existing rows requested')).toBe(true);
      expect(running.child.exitCode).toBeNull();
      const status = (await (await fetch(`${url}/api/sync/status`, { headers: { authorization: `Bearer ${token}` } })).json()) as { streams: { copying: string[]; state: string }[] };
      expect(status.streams[0]).toMatchObject({ copying: [], state: 'running' });
      expect(await processes.stop(running)).toBe(0);
    } finally {
      writer.stop();
    }
  }, 240_000);

  it('copies only the rows a --where condition holds for, in the running process; refuses a condition without exactly one table', async () => {
    const token = 'snapshot-token';
    const live = writeConfig(readFileSync(configPath, 'utf8').replace('http: { port: 0, host: 127.0.0.1 }', `http: { port: 0, host: 127.0.0.1, token: ${token} }`));
    const running = processes.add(runCli(['run', '--config', live]));
    await waitFor(() => targetMatches(), 120_000, running.stderr);
    await pg.query(`UPDATE items SET name = 'drift' WHERE id % 10 IN (0, 1)`);
    const url = (await running.url('')).replace(/\/$/, '');
    const refused = await runCliToEnd(['snapshot', '--config', live, '--stream', 'shop', '--where', 'id % 10 = 0', '--url', url]);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('--where limits the copy of one table');
    const stacked = await runCliToEnd(['snapshot', '--config', live, '--stream', 'shop', '--table', 'items', '--where', 'id = 1; DELETE FROM items', '--url', url]);
    expect(stacked.code).not.toBe(0);
    expect(stacked.stderr).toContain('without ";"');
    const asked = await runCliToEnd(['snapshot', '--config', live, '--stream', 'shop', '--table', 'items', '--where', 'id % 10 = 0', '--wait', '--url', url]);
    expect(asked.code, asked.stderr).toBe(0);
    expect(asked.stdout).toMatch(/^stream shop: items \(rows where id % 10 = 0\) copied again/);
    // The condition's rows are put right; the others the copy was not asked for keep their drift.
    await waitFor(async () => (await pg.query(`SELECT 1 FROM items WHERE id % 10 = 0 AND name = 'drift'`)).length === 0, 60_000, running.stderr);
    const drifted = await pg.query<{ n: string }>(`SELECT count(*)::text AS n FROM items WHERE id % 10 = 1 AND name = 'drift'`);
    expect(Number(drifted[0]!.n)).toBeGreaterThan(9000);
    expect(metricValue(await running.metrics(), 'cdc_sync_snapshot_progress_ratio', { table: 'items' })).toBe(1);
    expect(await processes.stop(running)).toBe(0);
  }, 240_000);
});

/** Whether the target already holds the source's row count (a stream with nothing left to copy). */
async function targetMatches(): Promise<boolean> {
  const [row] = await pg.query<{ n: string }>(`SELECT count(*)::text AS n FROM items`);
  return Number(row!.n) === (sqlite.prepare(`SELECT count(*) AS n FROM items`).get() as { n: number }).n;
}
