// Per-test-file databases on the shared cluster started by global-setup.ts.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';

const TEMPLATE_DATABASE = 'cdc_template'; // keep in sync with global-setup.ts

export interface PgServer {
  host: string;
  port: number;
  user: string;
  url(database: string): string;
}

export interface TestDatabase {
  name: string;
  url: string;
  query<T>(sql: string, params?: unknown[]): Promise<T[]>;
  drop(): Promise<void>;
}

/** Connection details of the shared cluster, for tests that need several databases. */
export function pgServer(): PgServer {
  const { host, port, user } = inject('pg');
  return {
    host,
    port,
    user,
    url: (database) => `postgres://${encodeURIComponent(user)}@${host}:${port}/${encodeURIComponent(database)}`,
  };
}

/** Runs one statement on the maintenance database `postgres`. */
async function admin(server: PgServer, sql: string, params: unknown[] = []): Promise<void> {
  const client = new pg.Client({ connectionString: server.url('postgres') });
  await client.connect();
  try {
    await client.query(sql, params);
  } finally {
    await client.end();
  }
}

export async function createTestDatabase(prefix = 't'): Promise<TestDatabase> {
  const server = pgServer();
  // Lowercase + [a-z0-9_] only, so the name never needs quoting; max identifier length is 63.
  const safePrefix = prefix.toLowerCase().replace(/[^a-z0-9_]/g, '_').slice(0, 40);
  const name = `${safePrefix}_${randomBytes(6).toString('hex')}`;
  await admin(server, `CREATE DATABASE ${name} TEMPLATE ${TEMPLATE_DATABASE}`);

  const url = server.url(name);
  let pool: pg.Pool | undefined;
  let dropped = false;
  return {
    name,
    url,
    async query<T>(sql: string, params?: unknown[]): Promise<T[]> {
      if (dropped) throw new Error(`database ${name} was dropped`);
      pool ??= new pg.Pool({ connectionString: url, max: 4 });
      const result = await pool.query(sql, params);
      return result.rows as T[];
    },
    async drop() {
      if (dropped) return;
      dropped = true;
      await pool?.end();
      // FORCE terminates sessions still connected (e.g. the code under test) and DROP DATABASE
      // drops the database's replication slots, but it refuses *before* terminating anything
      // while a slot is active. So end the walsenders holding slots first, and retry briefly
      // because a terminated walsender releases its slot asynchronously.
      for (let attempt = 1; ; attempt++) {
        try {
          await admin(
            server,
            'SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = $1 AND active_pid IS NOT NULL',
            [name],
          );
          await admin(server, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
          return;
        } catch (err) {
          if (attempt >= 20 || !/replication slot/i.test((err as Error).message)) throw err;
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      }
    },
  };
}
