import { afterAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { pgSocket } from '../src/db/postgres/connection.js';
import { startTcpProxy, type TcpProxy } from './support/tcp-proxy.js';
import { createTestDatabase, pgServer, type TestDatabase } from './support/test-database.js';

describe('PostgreSQL test harness', () => {
  const databases: TestDatabase[] = [];
  afterAll(async () => {
    await Promise.all(databases.map((db) => db.drop()));
  });

  it('runs the cluster with wal_level = logical', async () => {
    const db = await createTestDatabase('harness');
    databases.push(db);
    const rows = await db.query<{ wal_level: string }>('SHOW wal_level');
    expect(rows).toEqual([{ wal_level: 'logical' }]);
  });

  it('gives each createTestDatabase call its own isolated database', async () => {
    const a = await createTestDatabase('harness');
    const b = await createTestDatabase('harness');
    databases.push(a, b);
    expect(a.name).not.toBe(b.name);

    await a.query('CREATE TABLE only_in_a (id int PRIMARY KEY)');
    await a.query('INSERT INTO only_in_a VALUES ($1)', [1]);

    const inA = await a.query<{ n: string }>("SELECT count(*) AS n FROM pg_tables WHERE tablename = 'only_in_a'");
    const inB = await b.query<{ n: string }>("SELECT count(*) AS n FROM pg_tables WHERE tablename = 'only_in_a'");
    expect(inA[0]?.n).toBe('1');
    expect(inB[0]?.n).toBe('0');
  });
});

describe('TCP proxy', () => {
  let db: TestDatabase | undefined;
  let proxy: TcpProxy | undefined;
  afterAll(async () => {
    await proxy?.close();
    await db?.drop();
  });

  // A client that gives up inside a black hole closes its socket; TCP retransmits that FIN until the hole
  // ends, so the server then learns the session is gone and rolls its transaction back, releasing its locks.
  it('delivers the close of a client that gave up inside a black hole once traffic passes again', async () => {
    db = await createTestDatabase('proxy');
    await db.query('CREATE TABLE t (id int PRIMARY KEY)');
    const server = pgServer();
    proxy = await startTcpProxy({ host: server.host, port: server.port });
    const first = new pg.Client({ connectionString: proxy.url(db.url) });
    first.on('error', () => {});
    await first.connect();
    await first.query('BEGIN');
    await first.query('INSERT INTO t VALUES (1)');
    // Mid-COPY the server waits for the client's next bytes with no statement or idle timeout running.
    const copy = first.query(copyFrom('COPY t FROM STDIN'));
    copy.on('error', () => {});
    copy.write('2\n');
    await new Promise((r) => setTimeout(r, 200));
    proxy.mode('blackhole');
    copy.write('3\n');
    pgSocket(first)?.destroy();
    await new Promise((r) => setTimeout(r, 200));
    proxy.mode('pass');

    const second = new pg.Client({ connectionString: proxy.url(db.url) });
    await second.connect();
    try {
      await second.query('SET statement_timeout = 5000');
      await second.query('INSERT INTO t VALUES (1)');
      const rows = await second.query<{ id: number }>('SELECT id FROM t ORDER BY id');
      expect(rows.rows).toEqual([{ id: 1 }]);
    } finally {
      await second.end();
    }
  });
});
