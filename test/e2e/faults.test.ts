import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startPostgresCluster, type PostgresCluster } from '../support/postgres-cluster.js';
import { CliProcesses, metricValue, runCli, runCliToEnd, waitFor, writeConfig, type CliProcess } from '../support/cli.js';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy.js';
import { SteadyWriter, itemRows } from '../support/steady-writer.js';

/**
 * Faults of the network and the databases under a steady writer, for each
 * source type that runs here, through the real CLI: restarts of the target
 * and the source (pg_ctl fast and immediate), connections cut, refused and
 * black-holed by a TCP proxy between cdc-sync and each database. The process
 * must survive every fault, show it (cdc_sync_connected, /readyz, a log line,
 * a growing lag) within the configured liveness time, resume by itself, and
 * end with the target equal to the source.
 */
const TIMEOUT_MS = 3000;
let sourceCluster: PostgresCluster;
let targetCluster: PostgresCluster;
const processes = new CliProcesses();
const proxies: TcpProxy[] = [];
let counter = 0;

const ITEMS = `CREATE TABLE items (id bigint PRIMARY KEY, v int NOT NULL, note text NOT NULL)`;

async function admin(cluster: PostgresCluster, sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: cluster.url('postgres') });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

async function database(cluster: PostgresCluster, name: string, sql: string): Promise<string> {
  await admin(cluster, `CREATE DATABASE ${name}`);
  const url = cluster.url(name);
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
  return url;
}

async function proxy(cluster: PostgresCluster): Promise<TcpProxy> {
  const p = await startTcpProxy({ host: cluster.host, port: cluster.port });
  proxies.push(p);
  return p;
}

type SourceType = 'postgres-changelog' | 'postgres-wal' | 'sqlite-changelog';

interface Setup {
  cli: CliProcess;
  writer: SteadyWriter;
  /** The proxy in front of the source database (none for SQLite). */
  sourceProxy: TcpProxy | null;
  targetProxy: TcpProxy;
  sourceRows: () => Promise<string>;
  targetUrl: string;
  stream: string;
}

async function setUp(type: SourceType): Promise<Setup> {
  counter += 1;
  const stream = `faults-${counter}`;
  const targetUrl = await database(targetCluster, `target_${counter}`, ITEMS);
  const targetProxy = await proxy(targetCluster);
  let sourceUrl: string;
  let sourceProxy: TcpProxy | null = null;
  let writer: SteadyWriter;
  let sourceRows: () => Promise<string>;
  if (type === 'sqlite-changelog') {
    const path = join(mkdtempSync(join(tmpdir(), 'cdc-sync-faults-')), 'source.db');
    const db = new Database(path);
    db.pragma('journal_mode = WAL');
    db.exec(ITEMS.replace('bigint', 'INTEGER'));
    sourceUrl = `sqlite:${path}`;
    writer = new SteadyWriter({ run: async (sql) => db.exec(sql), close: async () => void db.close() });
    sourceRows = async () => {
      const reader = new Database(path, { readonly: true });
      try {
        return JSON.stringify(reader.prepare(`SELECT CAST(id AS TEXT) AS id, v, note FROM items ORDER BY id`).all());
      } finally {
        reader.close();
      }
    };
  } else {
    const direct = await database(sourceCluster, `source_${counter}`, ITEMS);
    sourceProxy = await proxy(sourceCluster);
    sourceUrl = sourceProxy.url(direct);
    writer = SteadyWriter.postgres(direct);
    sourceRows = () => itemRows(direct);
  }
  const config = writeConfig(`
streams:
  - name: ${stream}
    source: { type: ${type}, url: "${sourceUrl}", idleIntervalMs: 200, statusIntervalMs: 500 }
    sink: { type: postgres, url: "${targetProxy.url(targetUrl)}" }
    tables:
      - { source: items, target: public.items }
    retry: { attempts: 3, minDelayMs: 100, maxDelayMs: 1000 }
    liveness: { timeoutMs: ${TIMEOUT_MS} }
http: { port: 0, host: 127.0.0.1 }
log: { level: info }
`);
  if (type !== 'postgres-wal') {
    const init = await runCliToEnd(['init-sql', '--config', config]);
    expect(init.code, init.stderr).toBe(0);
    const forSource = init.stdout.split(/^-- .*sink.*$/im)[0]!;
    if (type === 'sqlite-changelog') {
      const db = new Database(sourceUrl.slice('sqlite:'.length));
      db.exec(forSource);
      db.close();
    } else {
      const client = new pg.Client({ connectionString: sourceUrl });
      await client.connect();
      await client.query(forSource);
      await client.end();
    }
  }
  const cli = processes.add(runCli(['run', '--config', config]));
  await cli.port();
  writer.start();
  return { cli, writer, sourceProxy, targetProxy, sourceRows, targetUrl, stream };
}

/** Stops the writer, waits until the target equals the source, and stops cdc-sync cleanly. */
async function expectConverged(setup: Setup): Promise<void> {
  await setup.writer.stop();
  let last = '';
  await waitFor(
    async () => {
      const [s, t] = [await setup.sourceRows(), await itemRows(setup.targetUrl).catch(() => '')];
      last = `source ${s.length} chars, target ${t.length} chars`;
      return s === t;
    },
    60_000,
    () => `${last}\n${setup.cli.stderr().slice(-4000)}`,
  );
  expect(setup.writer.writes).toBeGreaterThan(100);
  expect(setup.cli.child.exitCode, setup.cli.stderr().slice(-4000)).toBeNull();
  expect(await processes.stop(setup.cli, 'SIGTERM')).toBe(0);
  // Not one raw stack: every line cdc-sync wrote is a JSON log line.
  const raw = setup.cli.stderr().split('\n').filter((l) => l.trim() !== '' && !l.startsWith('{'));
  expect(raw).toEqual([]);
}

beforeAll(async () => {
  // Durable, as production servers are: the shared test cluster's fsync=off and synchronous_commit=off lose
  // committed transactions in an immediate shutdown, and a source that forgets what it reported is no test.
  const durable = { extraSettings: { fsync: 'on', synchronous_commit: 'on', full_page_writes: 'on' } };
  [sourceCluster, targetCluster] = await Promise.all([startPostgresCluster(durable), startPostgresCluster(durable)]);
}, 120_000);

afterEach(async () => {
  await processes.killAll();
});

afterAll(async () => {
  for (const p of proxies) await p.close();
  await Promise.all([sourceCluster?.stop(), targetCluster?.stop()]);
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.each<SourceType>(['postgres-changelog', 'postgres-wal', 'sqlite-changelog'])('%s → postgres under database faults', (type) => {
  it('survives restarts of the target and of the source (fast and immediate) and ends equal', async () => {
    const setup = await setUp(type);
    await sleep(1000);
    for (const mode of ['fast', 'immediate', 'immediate', 'fast'] as const) {
      await targetCluster.restart(mode);
      await sleep(1500);
      expect(setup.cli.child.exitCode, setup.cli.stderr().slice(-4000)).toBeNull();
    }
    if (type !== 'sqlite-changelog') {
      for (const mode of ['immediate', 'fast'] as const) {
        await sourceCluster.restart(mode);
        await sleep(1500);
        expect(setup.cli.child.exitCode, setup.cli.stderr().slice(-4000)).toBeNull();
      }
    }
    await expectConverged(setup);
  }, 180_000);
});
