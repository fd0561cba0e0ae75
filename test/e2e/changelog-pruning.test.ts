import Database from 'better-sqlite3';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../support/test-database.js';
import { metricValue, runCli, runCliToEnd, waitFor, writeConfig, CliProcesses } from '../support/cli.js';

/**
 * The change logs do not grow for ever: what every reader has checkpointed
 * is deleted once older than source.retentionHours, a reader that lags
 * keeps its changes, and cdc_sync_changelog_rows shows the size.
 */
const processes = new CliProcesses();
let source: TestDatabase;
let target: TestDatabase;
let sqlitePath: string;
// About a second: the log is looked at as often as the retention when that is shorter than a minute.
const RETENTION_HOURS = 0.0003;

beforeAll(async () => {
  source = await createTestDatabase('prune_source');
  target = await createTestDatabase('prune_target');
  for (const db of [source, target]) await db.query(`CREATE TABLE items (id int PRIMARY KEY, name text)`);
  sqlitePath = join(mkdtempSync(join(tmpdir(), 'cdc-sync-prune-')), 'source.db');
  const db = new Database(sqlitePath);
  db.pragma('journal_mode = WAL');
  db.exec(`CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)`);
  db.close();
});

afterEach(async () => {
  await processes.killAll();
});

afterAll(async () => {
  await source.drop();
  await target.drop();
});

interface LogSide {
  sourceYaml: string;
  setUp(script: string): Promise<void>;
  write(from: number, to: number): Promise<void>;
  rows(): Promise<number>;
  addLaggingReader(): Promise<void>;
  dropLaggingReader(): Promise<void>;
}

const postgresLog: LogSide = {
  get sourceYaml() {
    return `{ type: postgres-changelog, url: "${source.url}", idleIntervalMs: 50, retentionHours: ${RETENTION_HOURS} }`;
  },
  setUp: async (script) => void (await source.query(script)),
  write: async (from, to) => void (await source.query(`INSERT INTO items SELECT g, 'n' || g FROM generate_series($1::int, $2::int) g`, [from, to])),
  rows: async () => Number((await source.query<{ n: string }>(`SELECT count(*) AS n FROM cdc_sync.changes`))[0]!.n),
  addLaggingReader: async () => void (await source.query(`INSERT INTO cdc_sync.readers (stream, oldest_xid) VALUES ('lagging', '1')`)),
  dropLaggingReader: async () => void (await source.query(`DELETE FROM cdc_sync.readers WHERE stream = 'lagging'`)),
};

function sqlite<T>(work: (db: Database.Database) => T): T {
  const db = new Database(sqlitePath);
  try {
    return work(db);
  } finally {
    db.close();
  }
}

const sqliteLog: LogSide = {
  get sourceYaml() {
    return `{ type: sqlite-changelog, url: "sqlite:${sqlitePath}", idleIntervalMs: 50, retentionHours: ${RETENTION_HOURS} }`;
  },
  setUp: async (script) => void sqlite((db) => db.exec(script)),
  write: async (from, to) =>
    sqlite((db) => db.transaction(() => {
      for (let i = from; i <= to; i += 1) db.prepare(`INSERT INTO items VALUES (?, ?)`).run(i, `n${i}`);
    })()),
  rows: async () => sqlite((db) => (db.prepare(`SELECT count(*) AS n FROM cdc_sync_changes`).get() as { n: number }).n),
  addLaggingReader: async () => void sqlite((db) => db.exec(`INSERT INTO cdc_sync_readers (stream, after_id) VALUES ('lagging', 0)`)),
  dropLaggingReader: async () => void sqlite((db) => db.exec(`DELETE FROM cdc_sync_readers WHERE stream = 'lagging'`)),
};

describe.each([
  ['postgres-changelog', postgresLog, 'pg', 0],
  ['sqlite-changelog', sqliteLog, 'lite', 1000],
] as const)('%s pruning', (_name, log, stream, base) => {
  it('deletes what every reader has checkpointed once older than the retention, keeps what a lagging reader needs, and reports the size', async () => {
    const config = writeConfig(`
streams:
  - name: ${stream}
    source: ${log.sourceYaml}
    sink: { type: postgres, url: "${target.url}" }
    tables: [{ source: items, target: public.items }]
http: { port: 0, host: 127.0.0.1 }
`);
    const init = await runCliToEnd(['init-sql', '--config', config]);
    expect(init.code).toBe(0);
    await log.setUp(init.stdout);
    await log.addLaggingReader();
    const cli = processes.add(runCli(['run', '--config', config]));
    await log.write(base + 1, base + 100);
    const copied = async () => Number((await target.query<{ n: string }>(`SELECT count(*) AS n FROM items WHERE id > $1 AND id <= $2`, [base, base + 100]))[0]!.n);
    await waitFor(async () => (await copied()) === 100, 30_000, () => cli.stderr());
    // Several retention periods later the lagging reader still holds every change.
    await new Promise((r) => setTimeout(r, 3000));
    expect(await log.rows()).toBeGreaterThanOrEqual(100);
    await log.dropLaggingReader();
    await log.write(base + 101, base + 101);
    let rows = -1;
    await waitFor(async () => (rows = await log.rows()) <= 1, 30_000, () => `${rows} rows left\n${cli.stderr().slice(-2000)}`);
    const reported = metricValue(await cli.metrics(), 'cdc_sync_changelog_rows', { stream });
    expect(reported).toBeLessThanOrEqual(1);
    expect(await copied()).toBe(100);
    expect(await processes.stop(cli, 'SIGINT')).toBe(0);
  });
});
