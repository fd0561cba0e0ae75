import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../support/test-database.js';
import { metricValue, runCli, runCliToEnd, waitFor, writeConfig, CliProcesses, type CliProcess } from '../support/cli.js';

/**
 * A user points cdc-sync at a PostgreSQL database that already holds
 * 100,000 rows while the application goes on writing. `run` with the
 * default copy settings copies them beside the stream, survives kill -9 in
 * the middle of the copy (going on after the last chunk applied), copies a
 * table again on request in the running process (whole, then limited by
 * `--where`), and ends with the target equal to the source. Both PostgreSQL
 * source types; SQLite has the same test in snapshot.test.ts.
 */
const ROWS = 100_000;
const processes = new CliProcesses();
const SCHEMA = `CREATE TABLE items (id bigint PRIMARY KEY, name text NOT NULL, price numeric(20,4), note text)`;

afterEach(async () => {
  await processes.killAll();
});

for (const type of ['postgres-changelog', 'postgres-wal'] as const) {
  describe(`copy of existing rows while the application writes: ${type} → postgres`, () => {
    let a: TestDatabase;
    let b: TestDatabase;
    let path: string;
    const env = () => ({ SOURCE_URL: a.url, SINK_URL: b.url });

    beforeAll(async () => {
      a = await createTestDatabase(`copy_${type.replace('-', '_')}_a`);
      b = await createTestDatabase(`copy_${type.replace('-', '_')}_b`);
      await a.query(SCHEMA);
      await b.query(SCHEMA);
      path = writeConfig(`
streams:
  - name: shop
    source: { type: ${type}, url: "\${SOURCE_URL}" }
    sink: { type: postgres, url: "\${SINK_URL}" }
    tables:
      - { source: public.items, target: public.items }
http: { port: 0, host: 127.0.0.1, token: copy-token }
log: { level: info }
`);
      // The rows come before the capture set-up: none of them is in a change log or a slot.
      await a.query(`INSERT INTO items SELECT g, 'old ' || g, g, NULL FROM generate_series(1, ${ROWS}) g`);
      if (type === 'postgres-changelog') {
        const init = await runCliToEnd(['init-sql', '--config', path], env());
        expect(init.code, init.stderr).toBe(0);
        await a.query(init.stdout);
      }
    }, 60_000);

    afterAll(async () => {
      await a?.drop();
      await b?.drop();
    });

    /** The test's own edit of B, retried when it deadlocks with cdc-sync's writes of the same rows (40P01), as an application would. */
    async function drift(sql: string): Promise<void> {
      for (let attempt = 1; ; attempt += 1) {
        try {
          await b.query(sql);
          return;
        } catch (error) {
          if ((error as { code?: string }).code !== '40P01' || attempt >= 5) throw error;
        }
      }
    }

    async function rows(db: TestDatabase): Promise<string> {
      return JSON.stringify(await db.query(`SELECT id::text, name, price::text, note FROM items ORDER BY id`));
    }

    it('copies 100,000 rows while a writer changes random rows, killed -9 mid-copy, then again on request (whole and --where): B ends equal to A', async () => {
      let writing = true;
      let writes = 0;
      // Random updates, deletes and re-inserts of existing keys, about a thousand small transactions a second.
      const writer = (async () => {
        const client = new pg.Client({ connectionString: a.url });
        await client.connect();
        while (writing) {
          const id = 1 + Math.floor(Math.random() * ROWS);
          const kind = writes % 3;
          if (kind === 0) await client.query(`UPDATE items SET name = 'w ' || $2::text, price = price + 1 WHERE id = $1`, [id, writes]);
          else if (kind === 1) await client.query(`DELETE FROM items WHERE id = $1`, [id]);
          else await client.query(`INSERT INTO items VALUES ($1, 'back ' || $2::text, 0, NULL) ON CONFLICT (id) DO UPDATE SET name = excluded.name`, [id, writes]);
          writes += 1;
          await new Promise((r) => setTimeout(r, 1));
        }
        await client.end();
      })();
      const stopWriting = async () => {
        writing = false;
        await writer;
      };
      try {
        const started = (cli: CliProcess) => cli.logs.find((l) => /copy started|copy of existing rows/.test(String(l.msg)) || l.resumedAfter !== undefined);
        const copiedOnB = async () => ((await b.query<{ n: number }>(`SELECT count(*)::int AS n FROM items`)) as [{ n: number }])[0].n;
        // Killed twice while copying: each run goes on after the chunks the one before it applied.
        const counts: number[] = [];
        for (let run = 0; run < 2; run += 1) {
          const cli = processes.add(runCli(['run', '--config', path], env()));
          const before = await copiedOnB();
          await waitFor(async () => (await copiedOnB()) > before + 5000 + Math.random() * 15000, 60_000, () => cli.stderr());
          counts.push(await copiedOnB());
          await processes.stop(cli, 'SIGKILL');
        }
        const last = processes.add(runCli(['run', '--config', path], env()));
        await waitFor(() => last.logs.some((l) => /copy (of existing rows )?finished/.test(String(l.msg))), 120_000, () => last.stderr());
        expect(started(last)).toBeDefined();
        // The last run copied only what the killed ones had not applied: finished chunks are not read again.
        const copiedByLast = metricValue(await last.metrics(), 'cdc_sync_snapshot_rows_total', { table: 'public.items' }) ?? 0;
        expect(copiedByLast).toBeGreaterThan(0);
        expect(copiedByLast).toBeLessThan(ROWS - 10_000);

        // B drifts: a copy asked of the running process repairs it while the writer goes on.
        await drift(`UPDATE items SET name = 'drifted' WHERE id % 7 = 0`);
        const url = `http://127.0.0.1:${await last.port()}`;
        const whole = await runCliToEnd(['snapshot', '--config', path, '--stream', 'shop', '--url', url, '--wait'], env());
        expect(whole.code, whole.stderr).toBe(0);
        // Only the rows a condition holds for: rows drifted outside it stay drifted, those inside are repaired.
        await drift(`UPDATE items SET name = 'drifted' WHERE id % 10 IN (3, 4)`);
        const part = await runCliToEnd(['snapshot', '--config', path, '--stream', 'shop', '--table', 'public.items', '--where', 'id % 10 = 3', '--url', url, '--wait'], env());
        expect(part.code, part.stderr).toBe(0);
        await stopWriting();
        await waitFor(async () => (await b.query(`SELECT 1 FROM items WHERE id % 10 = 3 AND name = 'drifted'`)).length === 0, 60_000, () => last.stderr());
        expect((await b.query(`SELECT 1 FROM items WHERE id % 10 = 4 AND name = 'drifted'`)).length).toBeGreaterThan(1000);
        // Then a whole copy again, and B equals A.
        const again = await runCliToEnd(['snapshot', '--config', path, '--stream', 'shop', '--url', url, '--wait'], env());
        expect(again.code, again.stderr).toBe(0);
        let difference = '';
        await waitFor(async () => {
          const [left, right] = [await rows(a), await rows(b)];
          difference = `A ${left.length} chars, B ${right.length} chars`;
          return left === right;
        }, 60_000, () => `${difference}\n${last.stderr()}`);
        console.log(`${type}: ${writes} writer transactions during the copies; B held ${counts.join(', ')} rows at the kills`);
        expect(await processes.stop(last)).toBe(0);
      } finally {
        await stopWriting();
      }
    }, 300_000);
  });
}
