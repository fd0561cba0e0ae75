import { afterAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from './support/test-database.js';

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
