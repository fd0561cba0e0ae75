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
import { FakeSqlServer } from '../support/fake-mssql/fake-server.js';
import { readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';

/**
 * Faults of the network and the databases under a steady writer, for each
 * source type that runs here, through the real CLI: restarts of the target
 * and the source (pg_ctl fast and immediate), connections cut, refused and
 * black-holed by a TCP proxy between cdc-sync and each database. The process
 * must survive every fault, show it (cdc_sync_connected, /readyz, a log line,
 * a growing lag) within the configured liveness time, resume by itself, and
 * end with the target equal to the source.
 */
/** The liveness time the streams run with: 3 s here; FAULTS_LIVENESS_MS=30000 measures the default. */
const TIMEOUT_MS = Number(process.env.FAULTS_LIVENESS_MS ?? 3000);
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
  const targetUrl = await database(targetCluster, `target_${counter}`, ITEMS + `;
    CREATE TABLE audit (at timestamptz default clock_timestamp(), op text, id bigint, v int, xid xid8 default pg_current_xact_id());
    CREATE FUNCTION audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
      INSERT INTO audit (op, id, v) VALUES (TG_OP, coalesce(NEW.id, OLD.id), coalesce(NEW.v, OLD.v)); RETURN NULL; END $$;
    CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON items FOR EACH ROW EXECUTE FUNCTION audit();`);
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
  try {
  await waitFor(
    async () => {
      const [s, t] = [await setup.sourceRows(), await itemRows(setup.targetUrl).catch(() => '[]')];
      last = `source ${s.length} chars, target ${t.length} chars; ${difference(s, t)}`;
      return s === t;
    },
    60_000,
    () => `${last}\n${setup.cli.stderr().slice(-4000)}`,
  );
  } catch (e) { const c = new pg.Client({connectionString: setup.targetUrl}); await c.connect(); const r = await c.query('SELECT * FROM audit WHERE id IN (1,2,3,4,5,6,7,8) ORDER BY at'); await c.end(); console.log('AUDIT', JSON.stringify(r.rows)); console.log('LOG', setup.cli.stderr().slice(0, 5000)); throw e; }
  expect(setup.writer.writes).toBeGreaterThan(100);
  expect(setup.cli.child.exitCode, setup.cli.stderr().slice(-4000)).toBeNull();
  expect(await processes.stop(setup.cli, 'SIGTERM')).toBe(0);
  // Not one raw stack: every line cdc-sync wrote is a JSON log line.
  const raw = setup.cli.stderr().split('\n').filter((l) => l.trim() !== '' && !l.startsWith('{'));
  expect(raw).toEqual([]);
}

/** A few rows that differ, for the failure message. */
function difference(source: string, target: string): string {
  const [s, t] = [JSON.parse(source) as unknown[], JSON.parse(target) as unknown[]].map((rows) => new Set(rows.map((r) => JSON.stringify(r))));
  const only = (a: Set<string>, b: Set<string>) => [...a].filter((r) => !b.has(r)).slice(0, 5).join(' ');
  return `only in the source: ${only(s!, t!)}; only in the target: ${only(t!, s!)}`;
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

interface Observed {
  connected: number | undefined;
  ready: number;
  readyBody: string;
  lag: number | undefined;
}

async function observe(setup: Setup): Promise<Observed> {
  const text = await setup.cli.metrics();
  const response = await fetch(await setup.cli.url('/readyz'));
  return {
    connected: metricValue(text, 'cdc_sync_connected', { stream: setup.stream }),
    ready: response.status,
    readyBody: await response.text(),
    lag: metricValue(text, 'cdc_sync_lag_seconds', { stream: setup.stream }),
  };
}

/**
 * Waits until the fault shows everywhere an operator looks: connected 0,
 * /readyz 503 naming the stream and the database, a log line about `part`
 * since `since`. Returns the seconds it took.
 */
async function detected(setup: Setup, part: 'source' | 'sink', since: number): Promise<number> {
  let last: Observed | undefined;
  await waitFor(
    async () => {
      last = await observe(setup);
      const logged = setup.cli.logs.some((l) => Date.parse(String(l.time)) >= since && l.part === part && Number(l.level) >= 40);
      return last.connected === 0 && last.ready === 503 && last.readyBody.includes(setup.stream) && last.readyBody.includes('127.0.0.1') && logged;
    },
    TIMEOUT_MS + 5000,
    () => `${JSON.stringify(last)}\n${setup.cli.stderr().slice(-3000)}`,
  );
  return (Date.now() - since) / 1000;
}

/** Waits until the stream is connected and ready again; returns the seconds it took. */
async function resumed(setup: Setup, since: number): Promise<number> {
  let last: Observed | undefined;
  await waitFor(
    async () => {
      last = await observe(setup);
      return last.connected === 1 && last.ready === 200;
    },
    30_000,
    () => `${JSON.stringify(last)}\n${setup.cli.stderr().slice(-3000)}`,
  );
  return (Date.now() - since) / 1000;
}

/** Black-holes `proxy` until the fault is seen, checks that the lag grows when `growing`, then lets the traffic through again. */
async function blackHole(setup: Setup, proxy: TcpProxy, part: 'source' | 'sink', growing: boolean): Promise<{ detect: number; resume: number }> {
  const since = Date.now();
  proxy.mode('blackhole');
  const detect = await detected(setup, part, since);
  // Batches read before the fault may still be applied in its first moments; after that nothing moves.
  await sleep(1000);
  const first = (await observe(setup)).lag ?? 0;
  await sleep(1500);
  const second = (await observe(setup)).lag ?? 0;
  if (growing) {
    expect(second).toBeGreaterThan(first);
    expect(second).toBeGreaterThanOrEqual(TIMEOUT_MS / 1000 - 1);
  }
  const healed = Date.now();
  proxy.mode('pass');
  const resume = await resumed(setup, healed);
  return { detect, resume };
}

describe.each<SourceType>(['postgres-changelog', 'postgres-wal', 'sqlite-changelog'])('%s → postgres under network faults', (type) => {
  it('shows a black-holed database, under load and idle, within the liveness time, and resumes; survives cut and refused connections; ends equal', async () => {
    const setup = await setUp(type);
    const figures: Record<string, { detect: number; resume: number }> = {};
    await sleep(1000);
    // Under load: the target stops answering while changes keep coming.
    figures['target, under load'] = await blackHole(setup, setup.targetProxy, 'sink', true);
    if (setup.sourceProxy) figures['source, under load'] = await blackHole(setup, setup.sourceProxy, 'source', true);
    // Idle: nothing to apply, so only a probe (or the replication protocol's reply) can notice.
    setup.writer.paused = true;
    await setup.writer.settled();
    await waitFor(async () => (await setup.sourceRows()) === (await itemRows(setup.targetUrl)), 30_000);
    await sleep(500);
    figures['target, idle'] = await blackHole(setup, setup.targetProxy, 'sink', false);
    if (setup.sourceProxy) figures['source, idle'] = await blackHole(setup, setup.sourceProxy, 'source', true);
    setup.writer.paused = false;
    // Connections reset, then refused for a while.
    for (const proxy of [setup.targetProxy, setup.sourceProxy]) {
      if (!proxy) continue;
      proxy.mode('cut');
      await sleep(1000);
      proxy.mode('refuse');
      await sleep(2000);
      proxy.mode('pass');
      await sleep(1000);
    }
    console.log(`${type}: seconds to detect / resume (liveness ${TIMEOUT_MS / 1000} s): ${JSON.stringify(figures)}`);
    await expectConverged(setup);
  }, 240_000 + 12 * TIMEOUT_MS);
});

describe('credentials and databases that are wrong', () => {
  const DRIVER = resolve('dist/test/support/fake-mssql/driver.js');

  /** A login that must give its password (scram), on the target cluster whose other users are trusted. */
  async function passwordLogin(): Promise<void> {
    const hba = join(targetCluster.dataDir, 'pg_hba.conf');
    if (!readFileSync(hba, 'utf8').startsWith('host all sync')) {
      writeFileSync(hba, `host all sync 127.0.0.1/32 scram-sha-256\n${readFileSync(hba, 'utf8')}`);
      await admin(targetCluster, `DO $$ BEGIN CREATE ROLE sync LOGIN SUPERUSER PASSWORD 'right-password'; EXCEPTION WHEN duplicate_object THEN NULL; END $$`);
      await admin(targetCluster, `SELECT pg_reload_conf()`);
    }
  }

  function config(source: string, sink: string): string {
    return writeConfig(`
streams:
  - name: credentials
    source: ${source}
    sink: ${sink}
    tables:
      - { source: items, target: public.items }
    retry: { attempts: 3, minDelayMs: 50, maxDelayMs: 200 }
http: { port: 0, host: 127.0.0.1 }
`);
  }

  const sqliteSource = () => {
    const path = join(mkdtempSync(join(tmpdir(), 'cdc-sync-credentials-')), 'source.db');
    const db = new Database(path);
    db.exec(ITEMS.replace('bigint', 'INTEGER'));
    db.close();
    return path;
  };

  it('exits 2 at start naming the key path and the server message, never the password: wrong password, missing database, refused SQL Server login', async () => {
    await passwordLogin();
    counter += 1;
    const targetUrl = await database(targetCluster, `credentials_${counter}`, ITEMS);
    const path = sqliteSource();
    const init = await runCliToEnd(['init-sql', '--config', config(`{ type: sqlite-changelog, url: "sqlite:${path}" }`, `{ type: postgres, url: "${targetUrl}" }`)]);
    const db = new Database(path);
    db.exec(init.stdout);
    db.close();
    const wrongPassword = targetUrl.replace('postgres@', 'sync:wrong-secret@');
    const missing = targetUrl.replace(/credentials_\d+$/, 'no_such_database');
    const mssql = new FakeSqlServer();
    mssql.login = { user: 'sync', password: 'right-password' };
    const mssqlUrl = (await mssql.listen()).replace('fake-mssql://', 'fake-mssql://sync:wrong-secret@');
    const cases: [string, string, RegExp][] = [
      [`{ type: sqlite-changelog, url: "sqlite:${path}" }`, `{ type: postgres, url: "${wrongPassword}" }`, /streams\[0\]\.sink\.url: password authentication failed for user "sync"/],
      [`{ type: postgres-changelog, url: "${missing}" }`, `{ type: postgres, url: "${targetUrl}" }`, /streams\[0\]\.source\.url: database "no_such_database" does not exist/],
      [`{ type: postgres-wal, url: "${missing}" }`, `{ type: postgres, url: "${targetUrl}" }`, /streams\[0\]\.source\.url: database "no_such_database" does not exist/],
      [`{ type: mssql-queue, url: "${mssqlUrl}" }`, `{ type: postgres, url: "${targetUrl}" }`, /streams\[0\]\.source\.url: Login failed for user 'sync'\./],
    ];
    try {
      for (const [source, sink, message] of cases) {
        const started = Date.now();
        const run = await runCliToEnd(['run', '--config', config(source, sink)], { CDC_SYNC_MSSQL_DRIVER: DRIVER });
        expect(run.code, run.stderr).toBe(2);
        const errors = run.stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => String((JSON.parse(l) as { err?: unknown }).err ?? ''));
        expect(errors.join('\n')).toMatch(message);
        expect(run.stderr).not.toContain('wrong-secret');
        expect(Date.now() - started).toBeLessThan(15_000); // not retried until some timeout
      }
    } finally {
      await mssql.close();
    }
  });

  it('stops a running stream whose password was changed, with a clear log line and exit code 2 when no stream is left', async () => {
    await passwordLogin();
    counter += 1;
    const targetUrl = await database(targetCluster, `credentials_${counter}`, ITEMS);
    const path = sqliteSource();
    const sinkUrl = targetUrl.replace('postgres@', 'sync:right-password@');
    const file = config(`{ type: sqlite-changelog, url: "sqlite:${path}", idleIntervalMs: 100 }`, `{ type: postgres, url: "${sinkUrl}" }`);
    const init = await runCliToEnd(['init-sql', '--config', file]);
    const db = new Database(path);
    db.exec(init.stdout);
    const cli = processes.add(runCli(['run', '--config', file]));
    await cli.port();
    db.exec(`INSERT INTO items VALUES (1, 0, 'one')`);
    await waitFor(async () => (await itemRows(targetUrl)).includes('one'), 20_000, () => cli.stderr());
    await admin(targetCluster, `ALTER ROLE sync PASSWORD 'rotated'`);
    await admin(targetCluster, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'sync'`);
    db.exec(`INSERT INTO items VALUES (2, 0, 'two')`);
    db.close();
    const code = await cli.exited;
    processes.forget(cli);
    await admin(targetCluster, `ALTER ROLE sync PASSWORD 'right-password'`);
    expect(code, cli.stderr()).toBe(2);
    const stopped = cli.logs.find((l) => l.msg === 'stream stopped: fix the configuration or the database and restart cdc-sync');
    expect(String(stopped?.err)).toMatch(/streams\[0\]\.sink\.url: password authentication failed for user "sync"/);
    expect(cli.stderr()).not.toContain('right-password');
  });
});
