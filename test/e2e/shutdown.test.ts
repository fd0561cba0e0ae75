import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../support/test-database.js';
import { CliProcesses, runCli, runCliToEnd, waitFor, writeConfig } from '../support/cli.js';

/**
 * Stopping: the first SIGTERM finishes the batch in flight (here held up
 * by a lock on the target table) within shutdown.timeoutMs; a second signal
 * exits at once; past the deadline the process exits 1 on its own.
 */
let a: TestDatabase;
let b: TestDatabase;
const processes = new CliProcesses();

function config(timeoutMs: number): string {
  return writeConfig(`
streams:
  - name: a-to-b
    source: { type: postgres-changelog, url: "${a.url}", idleIntervalMs: 50 }
    sink: { type: postgres, url: "${b.url}" }
    tables: [{ source: public.items, target: public.items }]
http: { port: 0, host: 127.0.0.1 }
shutdown: { timeoutMs: ${timeoutMs} }
`);
}

beforeAll(async () => {
  a = await createTestDatabase('stop_a');
  b = await createTestDatabase('stop_b');
  await a.query(`CREATE TABLE items (id int PRIMARY KEY, name text)`);
  await b.query(`CREATE TABLE items (id int PRIMARY KEY, name text)`);
  const init = await runCliToEnd(['init-sql', '--config', config(1000)]);
  await a.query(init.stdout);
});

afterEach(async () => {
  await processes.killAll();
  // A process that exited mid-transaction leaves its server session behind for a moment: end it.
  for (const db of [a, b]) {
    await db.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'cdc-sync' AND datname = current_database()`);
  }
});

afterAll(async () => {
  await a.drop();
  await b.drop();
});

/** Starts the CLI, lets it apply one row, then holds the target table locked so the next batch blocks. */
async function startWithBatchInFlight(timeoutMs: number) {
  const cli = processes.add(runCli(['run', '--config', config(timeoutMs)]));
  // Values differ on every call: an update that changes nothing would not be captured.
  await a.query(`INSERT INTO items VALUES (1, 'first ' || clock_timestamp()) ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name`);
  await waitFor(async () => (await b.query('SELECT 1 FROM items WHERE id = 1')).length === 1, 30_000, () => cli.stderr());
  const locker = new pg.Client({ connectionString: b.url });
  await locker.connect();
  await locker.query('BEGIN');
  await locker.query('LOCK TABLE items IN ACCESS EXCLUSIVE MODE');
  await a.query(`INSERT INTO items VALUES (2, 'blocked ' || clock_timestamp()) ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name`);
  await waitFor(async () => (await b.query(`SELECT 1 FROM pg_stat_activity WHERE application_name = 'cdc-sync' AND wait_event_type = 'Lock'`)).length > 0, 30_000, () => cli.stderr());
  return { cli, locker };
}

describe('stopping', () => {
  it('finishes the batch in flight on SIGTERM and exits 0 once it committed', async () => {
    const { cli, locker } = await startWithBatchInFlight(30_000);
    cli.child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 300));
    expect(cli.child.exitCode).toBeNull(); // still finishing
    await locker.query('COMMIT');
    await locker.end();
    expect(await processes.stop(cli, 'SIGCONT')).toBe(0);
    expect(await b.query('SELECT name FROM items WHERE id = 2')).toEqual(await a.query('SELECT name FROM items WHERE id = 2'));
  });

  it('exits at once, with 1, on a second signal', async () => {
    await b.query('TRUNCATE items');
    const { cli, locker } = await startWithBatchInFlight(30_000);
    cli.child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 300));
    const started = Date.now();
    expect(await processes.stop(cli, 'SIGTERM')).toBe(1);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(cli.stderr()).toContain('second signal');
    await locker.query('ROLLBACK');
    await locker.end();
  });

  it('gives up after shutdown.timeoutMs and exits 1', async () => {
    await b.query('TRUNCATE items');
    const { cli, locker } = await startWithBatchInFlight(1000);
    cli.child.kill('SIGTERM');
    const code = await cli.exited;
    processes.forget(cli);
    expect(code).toBe(1);
    expect(cli.stderr()).toContain('did not stop in time');
    await locker.query('ROLLBACK');
    await locker.end();
  });

  it('stops with 0 and a log line on SIGTERM at any moment of its start-up, before its streams run', async () => {
    // A sink that refuses connections keeps the stream opening (retrying) for as long as the test needs.
    const refused = writeConfig(`
streams:
  - name: a-to-b
    source: { type: postgres-changelog, url: "${a.url}" }
    sink: { type: postgres, url: "postgres://nobody@127.0.0.1:1/none" }
    tables: [{ source: public.items, target: public.items }]
http: { port: 0, host: 127.0.0.1 }
`);
    // The moments: the bundle compiled but not run yet (the launcher's code-cache report), the HTTP server
    // up while the stream opens, the stream retrying its sink; and a stream that opens at once.
    const moments = [
      { file: refused, when: /code cache:/, afterMs: 0 },
      { file: refused, when: /cdc-sync running/, afterMs: 0 },
      { file: refused, when: /cdc-sync running/, afterMs: 800 },
      { file: config(5000), when: /cdc-sync running/, afterMs: 0 },
    ];
    for (const { file, when, afterMs } of moments) {
      const cli = processes.add(runCli(['run', '--config', file], { CDC_SYNC_CODE_CACHE: 'report' }));
      await waitFor(() => when.test(cli.stderr()), 20_000, () => cli.stderr());
      await new Promise((r) => setTimeout(r, afterMs));
      const said = () => `SIGTERM ${afterMs} ms after ${when}:\n${cli.stderr()}`;
      expect(await processes.stop(cli, 'SIGTERM'), said()).toBe(0);
      expect(cli.logs.some((l) => /^stop/.test(String(l.msg))), said()).toBe(true);
    }
  });

  it('exits 1 saying why when its HTTP port is taken, after stopping the streams that began opening meanwhile', async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    try {
      const port = (taken.address() as AddressInfo).port;
      const file = writeConfig(`
streams:
  - name: a-to-b
    source: { type: postgres-changelog, url: "${a.url}", idleIntervalMs: 50 }
    sink: { type: postgres, url: "${b.url}" }
    tables: [{ source: public.items, target: public.items }]
http: { port: ${port}, host: 127.0.0.1 }
`);
      const ended = await runCliToEnd(['run', '--config', file]);
      expect(ended.code, ended.stderr).toBe(1);
      expect(ended.stderr).toMatch(/EADDRINUSE/);
      expect(ended.stderr).toMatch(/stopping: finishing batches in flight/);
      expect(ended.stderr).not.toMatch(/cdc-sync running/);
    } finally {
      taken.close();
    }
  });
});
