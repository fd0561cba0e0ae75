import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPool } from '../../../src/db/postgres/connection.js';
import { createTestDatabase, type TestDatabase } from '../../support/test-database.js';

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase('connection');
});

afterAll(async () => {
  await db.drop();
});

describe('PostgreSQL connections', () => {
  // A session whose client vanished mid-COPY runs neither timeout; only the server's TCP probe ends it.
  it('ask the server to probe for a vanished client within about twice the deadline, besides the statement and idle timeouts', async () => {
    const pool = createPool(db.url, { timeoutMs: 6000 });
    try {
      const { rows } = await pool.query<{ name: string; setting: string }>(
        `SELECT name, setting FROM pg_settings WHERE name IN ('tcp_keepalives_idle', 'tcp_keepalives_interval', 'tcp_keepalives_count', 'tcp_user_timeout', 'statement_timeout', 'idle_in_transaction_session_timeout') ORDER BY name`,
      );
      expect(Object.fromEntries(rows.map((r) => [r.name, r.setting]))).toEqual({
        idle_in_transaction_session_timeout: '6000',
        statement_timeout: '6000',
        tcp_keepalives_count: '3',
        tcp_keepalives_idle: '6',
        tcp_keepalives_interval: '2',
        tcp_user_timeout: '6000',
      });
    } finally {
      await pool.end();
    }
  });

  it('run without JIT, whose compile took longer than the short statements of a read or a batch (6-25 ms against 0.3 ms)', async () => {
    const pool = createPool(db.url);
    try {
      const { rows } = await pool.query<{ jit: string }>('SHOW jit');
      expect(rows).toEqual([{ jit: 'off' }]);
    } finally {
      await pool.end();
    }
  });
});
