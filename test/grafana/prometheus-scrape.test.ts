import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { execForm, instructions, parseDockerfile, stageEnv } from '../container/support.js';
import { metricValue, runCli, runCliToEnd, waitFor, writeConfig, type CliProcess } from '../support/cli.js';
import { createTestDatabase, type TestDatabase } from '../support/test-database.js';
import { dashboardExpressions, loadDashboard, loadRules, promtool, RULES_FILE } from './support.js';

/**
 * A real Prometheus (Debian's `prometheus` package) scrapes a real cdc-sync
 * (the built CLI, postgres-changelog → postgres on private test databases)
 * every second with the alert rules loaded: the scrape works, the rules
 * evaluate, the users' main alert fires on a real dead-lettered change, every
 * dashboard query is valid PromQL, and `promtool check metrics` accepts /metrics.
 */

let source: TestDatabase;
let target: TestDatabase;
let cli: CliProcess;
let prometheus: ChildProcess;
let prometheusLog = '';
let prometheusUrl = '';
let dir = '';

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  await new Promise((r) => server.close(r));
  return port;
}

interface Sample {
  metric: Record<string, string>;
  value: [number, string];
}
async function api<T>(path: string): Promise<{ status: string; data: T; error?: string }> {
  const response = await fetch(`${prometheusUrl}${path}`);
  return (await response.json()) as { status: string; data: T; error?: string };
}
async function query(promql: string): Promise<Sample[]> {
  const body = await api<{ result: Sample[] }>(`/api/v1/query?query=${encodeURIComponent(promql)}`);
  if (body.status !== 'success') throw new Error(`${promql}: ${body.error}`);
  return body.data.result;
}
interface Alert {
  labels: Record<string, string>;
  state: string;
}
/** The value of the first series of an instant query, undefined while there is none (or Prometheus does not answer yet). */
async function value(promql: string): Promise<string | undefined> {
  return (await query(promql).catch(() => []))[0]?.value[1];
}
const alerts = async () => (await api<{ alerts: Alert[] }>('/api/v1/alerts')).data.alerts;

beforeAll(async () => {
  source = await createTestDatabase('scrape_src');
  target = await createTestDatabase('scrape_dst');
  await source.query('CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL)');
  await target.query(`CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL CHECK (name <> 'poison'))`);
  const config = writeConfig(`
streams:
  - name: scrape
    # The counters below are the change log's 50 inserts, without the copy of the rows they made.
    source: { type: postgres-changelog, url: "\${SOURCE_URL}", idleIntervalMs: 100, snapshot: never }
    sink: { type: postgres, url: "\${SINK_URL}" }
    tables:
      - { source: public.items, target: public.items }
    batch: { maxSize: 100, maxWaitMs: 20 }
    retry: { attempts: 3, minDelayMs: 50, maxDelayMs: 500 }
http: { port: 0, host: 127.0.0.1 }
`);
  const env = { SOURCE_URL: source.url, SINK_URL: target.url };
  const init = await runCliToEnd(['init-sql', '--config', config], env);
  expect(init.code).toBe(0);
  await source.query(init.stdout);
  cli = runCli(['run', '--config', config], env);
  const cdcSyncPort = await cli.port();
  await source.query(`INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 50) g`);
  await waitFor(async () => (await target.query('SELECT 1 FROM items')).length === 50, 30_000, () => cli.stderr());

  // The compose stack's Prometheus configuration, pointed at this cdc-sync, scraping every second.
  dir = mkdtempSync(join(tmpdir(), 'cdc-sync-prometheus-'));
  const prometheusConfig = parse(readFileSync('grafana/prometheus/prometheus.yml', 'utf8')) as {
    global: Record<string, string>;
    rule_files: string[];
    scrape_configs: { job_name: string; static_configs: { targets: string[] }[] }[];
  };
  prometheusConfig.global = { scrape_interval: '1s', evaluation_interval: '1s' };
  prometheusConfig.rule_files = [resolve(RULES_FILE)];
  prometheusConfig.scrape_configs[0]!.static_configs = [{ targets: [`127.0.0.1:${cdcSyncPort}`] }];
  writeFileSync(join(dir, 'prometheus.yml'), stringify(prometheusConfig));
  const port = await freePort();
  prometheusUrl = `http://127.0.0.1:${port}`;
  prometheus = spawn(
    'prometheus',
    [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  prometheus.stdout!.on('data', (d: Buffer) => (prometheusLog += d.toString()));
  prometheus.stderr!.on('data', (d: Buffer) => (prometheusLog += d.toString()));
  prometheus.on('error', (error) => (prometheusLog += `cannot start prometheus (apt-get install -y prometheus): ${error.message}\n`));
  await waitFor(async () => (await value('up{job="cdc-sync"}')) === '1', 60_000, () => prometheusLog);
});

afterAll(async () => {
  if (prometheus && prometheus.exitCode === null) {
    const exited = new Promise((r) => prometheus.on('exit', r));
    prometheus.kill('SIGTERM');
    await exited;
  }
  if (cli && cli.child.exitCode === null) {
    cli.child.kill('SIGKILL');
    await cli.exited;
  }
  await source?.drop();
  await target?.drop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('a real Prometheus scraping a real cdc-sync', () => {
  it('scrapes it (up == 1, cdc_sync_connected == 1) and evaluates every alert rule without error', async () => {
    await waitFor(async () => (await value('cdc_sync_connected{stream="scrape", direction="forward"}')) === '1', 30_000, () => prometheusLog);
    expect(await value('cdc_sync_events_applied_total{stream="scrape", table="public.items", op="insert"}')).toBe('50');

    const expected = loadRules().length;
    type Rules = { groups: { rules: { name: string; health: string; lastError?: string }[] }[] };
    let rules: Rules['groups'][number]['rules'] = [];
    await waitFor(async () => {
      rules = (await api<Rules>('/api/v1/rules')).data.groups.flatMap((g) => g.rules);
      return rules.length === expected && rules.every((r) => r.health !== 'unknown');
    }, 30_000, () => JSON.stringify(rules));
    expect(rules.filter((r) => r.health !== 'ok')).toEqual([]);
    // A healthy stream raises nothing.
    expect((await alerts()).filter((a) => a.state === 'firing')).toEqual([]);
  });

  it('every dashboard query is valid PromQL on the scraped data', async () => {
    const variables: Record<string, string> = { __rate_interval: '1m', __range: '5m', __interval: '15s', stream: '.*', direction: '.*' };
    const problems: string[] = [];
    for (const { panel, expr } of dashboardExpressions(loadDashboard())) {
      const promql = expr.replace(/\$\{?(\w+)\}?/g, (m, name: string) => variables[name] ?? m);
      await query(promql).catch((error: Error) => problems.push(`${panel}: ${error.message}`));
    }
    expect(problems).toEqual([]);
    // And the main panels show the stream, once rate() has samples to work with.
    await waitFor(async () => Number(await value('count_over_time(cdc_sync_events_applied_total{stream="scrape", op="insert"}[1m])')) >= 3);
    const applied = await query(`sum by (stream, table, op) (rate(cdc_sync_events_applied_total{stream=~".*", direction=~".*"}[1m]))`);
    expect(applied.map((s) => s.metric)).toContainEqual({ stream: 'scrape', table: 'public.items', op: 'insert' });
  });

  it('fires CdcSyncChangesFailed when a real change is dead-lettered', async () => {
    const failed = 'cdc_sync_events_failed_total{stream="scrape", table="public.items", reason="constraint"}';
    // Prometheus has seen the counter at 0 before the failure.
    expect((await query(failed))[0]?.value[1]).toBe('0');
    await source.query(`INSERT INTO items VALUES (1000, 'poison')`);
    await waitFor(async () => metricValue(await cli.metrics(), 'cdc_sync_events_failed_total', { table: 'public.items', reason: 'constraint' }) === 1);
    let fired: Alert | undefined;
    await waitFor(async () => {
      fired = (await alerts()).find((a) => a.labels.alertname === 'CdcSyncChangesFailed' && a.state === 'firing');
      return fired !== undefined;
    }, 30_000, () => prometheusLog);
    expect(fired!.labels).toMatchObject({ severity: 'critical', job: 'cdc-sync', stream: 'scrape', direction: 'forward', table: 'public.items', reason: 'constraint' });
  });

  it('promtool check metrics accepts /metrics without a finding', async () => {
    const text = await cli.metrics();
    expect(text).toContain('# TYPE cdc_sync_events_failed_total counter');
    const { status, output } = promtool(['check', 'metrics'], text);
    expect(output.trim()).toBe('');
    expect(status, output).toBe(0);
  });

  it('the image HEALTHCHECK command passes against the running process', () => {
    const runtime = parseDockerfile(readFileSync('Dockerfile', 'utf8')).at(-1)!;
    const [, ...args] = execForm(instructions(runtime, 'HEALTHCHECK')[0]!.replace(/^.*?CMD\s+/, ''));
    const port = (cli.logs.find((l) => l.msg === 'cdc-sync running')!.port as number).toString();
    const env = { ...stageEnv(runtime), PATH: process.env.PATH ?? '', CDC_SYNC_HEALTHCHECK_URL: `http://127.0.0.1:${port}/healthz` };
    expect(spawnSync(process.execPath, args, { env, timeout: 10_000 }).status).toBe(0);
  });

  it('stops cleanly', async () => {
    cli.child.kill('SIGTERM');
    expect(await cli.exited).toBe(0);
    const exited = new Promise<number | null>((r) => prometheus.on('exit', (code) => r(code)));
    prometheus.kill('SIGTERM');
    expect(await exited).toBe(0);
  });
});
