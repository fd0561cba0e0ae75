import { execFile } from 'node:child_process';
import { chmodSync, existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../support/test-database.js';
import { waitFor, writeConfig } from '../support/cli.js';

/**
 * The image, built from the real Dockerfile by `npm run image:build`
 * (tools/image.sh, podman where no Docker engine runs), and run: its command
 * line, its user, its HEALTHCHECK, `cdc-sync demo` inside it with the metrics
 * reachable through -p, and a PostgreSQL → PostgreSQL stream from it against
 * this test run's cluster. `.ci/run` builds the image before `npm test`;
 * without a build report these tests say how to make one.
 */
const run = promisify(execFile);
const report = existsSync('.image-test.json')
  ? (JSON.parse(readFileSync('.image-test.json', 'utf8')) as { status: 'built' | 'skipped' | 'failed'; image?: string; size?: number; seconds?: number; reason?: string; log?: string })
  : null;
const env = { ...process.env, CONTAINERS_CONF: resolve('tools/containers.conf') };
const podman = async (...args: string[]) => run('podman', args, { env, maxBuffer: 16 * 1024 * 1024, timeout: 180_000 });
const containers: string[] = [];

if (!report) console.log('image tests skipped: no image built here (run `npm run image:build`; .ci/run does)');
else if (report.status === 'skipped') console.log(`image tests skipped: ${report.reason}`);

afterAll(async () => {
  for (const name of containers) await podman('rm', '-f', '-t', '0', name).catch(() => undefined);
});

async function freePort(): Promise<number> {
  return new Promise((done) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => done(port));
    });
  });
}

/** Starts a container in the background; returns its name. */
async function start(args: string[]): Promise<string> {
  const name = `cdc-sync-test-${process.pid}-${containers.length}`;
  containers.push(name);
  await podman('run', '-d', '--name', name, ...args);
  return name;
}

/** Stops it as `docker stop` does (SIGTERM, then SIGKILL after the timeout) and returns its exit code. */
async function stop(name: string): Promise<number> {
  await podman('stop', '-t', '40', name);
  return Number((await podman('inspect', '--format', '{{.State.ExitCode}}', name)).stdout.trim());
}

describe.runIf(report !== null && report.status !== 'skipped')('the container image', () => {
  const image = report?.image ?? '';

  it('was built from the Dockerfile', () => {
    expect(report!.status, report!.log).toBe('built');
    console.log(`image ${image}: ${Math.round(report!.size! / 1048576)} MiB, built in ${report!.seconds} s`);
  });

  it('answers --help, runs as uid 1000 and carries the HEALTHCHECK', async () => {
    const help = await podman('run', '--rm', image, '--help');
    expect(help.stdout).toMatch(/Usage: cdc-sync/);
    expect((await podman('run', '--rm', '--entrypoint', 'id', image, '-u')).stdout.trim()).toBe('1000');
    const health = JSON.parse((await podman('image', 'inspect', '--format', '{{json .Config.Healthcheck}}', image)).stdout) as { Test: string[] };
    expect(health.Test.join(' ')).toContain('/healthz');
  });

  it('runs the demo (SQLite ⇄ PGlite) with its metrics reachable through -p and stops with 0 once both sides agree', async () => {
    const port = await freePort();
    const name = await start(['-p', `127.0.0.1:${port}:9464`, image, 'demo', '--dir', '/app/data/demo']);
    await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/metrics`).then((r) => r.text()).catch(() => '')).includes('cdc_sync_events_applied_total'), 60_000);
    // The image's HEALTHCHECK command, run as the runtime runs it.
    await waitFor(async () => (await podman('healthcheck', 'run', name).then(() => true).catch(() => false)), 30_000);
    await new Promise((r) => setTimeout(r, 30_000));
    const applied = await fetch(`http://127.0.0.1:${port}/metrics`).then((r) => r.text());
    expect(applied).toMatch(/cdc_sync_events_applied_total\{[^}]*\} [1-9]/);
    expect(await stop(name)).toBe(0);
    const logs = await podman('logs', name);
    expect(`${logs.stdout}${logs.stderr}`).toContain('both sides agree');
  }, 180_000);

  describe('a PostgreSQL → PostgreSQL stream', () => {
    let source: TestDatabase;
    let target: TestDatabase;
    afterAll(async () => {
      await source?.drop();
      await target?.drop();
    });

    it('copies the rows that exist, streams new ones and stops with 0 on SIGTERM', async () => {
      source = await createTestDatabase('image_source');
      target = await createTestDatabase('image_target');
      await source.query(`CREATE TABLE items (id int PRIMARY KEY, name text)`);
      await target.query(`CREATE TABLE items (id int PRIMARY KEY, name text)`);
      await source.query(`INSERT INTO items SELECT g, 'before ' || g FROM generate_series(1, 100) g`);
      const port = await freePort();
      const config = writeConfig(`streams:
  - name: items
    source: { type: postgres-wal, url: "\${SOURCE_URL}" }
    sink: { type: postgres, url: "\${SINK_URL}" }
    tables: [{ source: public.items, target: public.items }]
http: { port: ${port} }
`);
      // The container's user (uid 1000) reads it.
      chmodSync(dirname(config), 0o755);
      chmodSync(config, 0o644);
      // Host networking: the container reaches this run's cluster on 127.0.0.1.
      const name = await start(['--network', 'host', '-v', `${config}:/etc/cdc-sync/cdc-sync.yaml:ro`, '-e', `SOURCE_URL=${source.url}`, '-e', `SINK_URL=${target.url}`, image]);
      const count = async () => Number((await target.query<{ n: string }>(`SELECT count(*) AS n FROM items`))[0]!.n);
      await waitFor(async () => (await count()) === 100, 60_000, () => '');
      await source.query(`INSERT INTO items SELECT g, 'after ' || g FROM generate_series(101, 150) g`);
      await source.query(`UPDATE items SET name = 'changed' WHERE id <= 10`);
      await waitFor(async () => (await count()) === 150 && (await target.query(`SELECT 1 FROM items WHERE name = 'changed'`)).length === 10, 60_000);
      expect(await stop(name)).toBe(0);
      const logs = await podman('logs', name);
      expect(`${logs.stdout}${logs.stderr}`).toContain('"msg":"stopped"');
      await source.query(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = current_database()`);
    }, 180_000);
  });
});
