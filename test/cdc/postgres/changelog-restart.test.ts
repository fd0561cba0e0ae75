import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { changelogSetupSql } from '../../../src/cdc/postgres/changelog-setup.js';
import { ChangeLogSource } from '../../../src/cdc/postgres/changelog-source.js';
import type { PostgresCluster } from '../../support/postgres-cluster.js';
import { testContext } from '../../support/stream-context.js';
import { createTestDatabase, startPrivateServer, type TestDatabase } from '../../support/test-database.js';
import { waitFor } from '../../support/cli.js';
import { follow } from '../../support/pull.js';

/**
 * After a crash PostgreSQL hands out again the transaction ids that never
 * reached the WAL on disk (transactions that rolled back just before). A
 * change-log reader whose snapshot already counted those ids as finished
 * must still read the new transactions that get them.
 */
let cluster: PostgresCluster;
let db: TestDatabase;

beforeAll(async () => {
  // The WAL writer flushes every wal_writer_delay (200 ms by default); slower, so the crash surely finds the rolled-back transactions unflushed.
  const started = await startPrivateServer({ wal_writer_delay: '10s' });
  cluster = started.cluster;
  db = await createTestDatabase('restart', started.server);
  await db.query(`CREATE TABLE items (id int PRIMARY KEY, name text)`);
  await db.query(changelogSetupSql(['public.items']));
}, 60_000);

afterAll(async () => {
  await db?.drop();
  await cluster?.stop();
});

async function connect(): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: db.url });
  client.on('error', () => {});
  await client.connect();
  return client;
}

it('reads a transaction that got an id again after a crash, though its snapshot had counted that id as finished', async () => {
  const context = testContext('restart');
  const source = new ChangeLogSource({
    url: db.url,
    tables: [{ source: 'items', target: 'items' }],
    readLimit: 100,
    pollIntervalMs: 10,
    idleIntervalMs: 20,
    // Only the log is under test: a first copy of the table (the default) would race the insert below and hand
    // row 1 over twice, or in a chunk of its own (both seen in CI).
    snapshot: 'never',
    // Slow to reconnect, so the new transaction commits before the reader's first snapshot of the new server run.
    retry: { attempts: 20, minDelayMs: 1500, maxDelayMs: 3000 },
  });
  await source.open(context);
  const following = follow(source, null);
  const chunks = following.chunks;
  try {
    const app = await connect();
    await app.query(`INSERT INTO items VALUES (1, 'before the crash')`);
    await waitFor(() => chunks.some((c) => c.events.some((e) => e.key.id === 1)), 30_000);
    // Transactions that roll back: their ids are in no WAL record on disk.
    for (let i = 0; i < 5; i++) {
      await app.query('BEGIN');
      await app.query(`INSERT INTO items VALUES (100, 'rolled back')`);
      await app.query('ROLLBACK');
    }
    const [{ xmax }] = (await app.query<{ xmax: string }>(`SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS xmax`)).rows as [{ xmax: string }];
    // The reader polls meanwhile and takes snapshots that count those ids as finished.
    await new Promise((r) => setTimeout(r, 100));
    await app.end();

    await cluster.restart('immediate');

    const again = await connect();
    await again.query('BEGIN');
    const [{ xid }] = (await again.query<{ xid: string }>(`SELECT pg_current_xact_id()::text AS xid`)).rows as [{ xid: string }];
    await again.query(`INSERT INTO items VALUES (2, 'after the crash')`);
    await again.query('COMMIT');
    await again.end();
    // The case under test: the new transaction got an id the reader's snapshot had seen finish.
    expect(BigInt(xid)).toBeLessThan(BigInt(xmax));

    await waitFor(() => chunks.some((c) => c.events.some((e) => e.key.id === 2)), 15_000, () => JSON.stringify(chunks.map((c) => c.position)));
    const rows = chunks.flatMap((c) => c.events.map((e) => [e.op, e.key.id]));
    // Nothing lost, nothing read twice, in order.
    expect(rows).toEqual([
      ['insert', 1],
      ['insert', 2],
    ]);
  } finally {
    following.stop();
    context.controller.abort();
    await source.close();
  }
}, 60_000);
