// Per-test-file databases on the shared cluster started by global-setup.ts.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';
import { startPostgresCluster, type PostgresCluster } from './postgres-cluster.js';
import { admin, createTemplate, TEMPLATE_DATABASE, type PgServer } from './template-database.js';

export type { PgServer };

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

/**
 * A private cluster with the template, for tests that restart or crash their
 * server; `stop()` when done. Commits are durable as on a user's server
 * (synchronous_commit on): a crash loses no committed transaction.
 */
export async function startPrivateServer(settings: Record<string, string> = {}): Promise<{ server: PgServer; cluster: PostgresCluster }> {
  const cluster = await startPostgresCluster({ extraSettings: { synchronous_commit: 'on', ...settings } });
  const server: PgServer = { host: cluster.host, port: cluster.port, user: cluster.user, url: cluster.url };
  try {
    await createTemplate(server);
  } catch (error) {
    await cluster.stop();
    throw error;
  }
  return { server, cluster };
}

/** A database cloned from the template on the shared cluster, or on `server` (a private cluster that has the template too). */
export async function createTestDatabase(prefix = 't', server: PgServer = pgServer()): Promise<TestDatabase> {
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
      if (!pool) {
        pool = new pg.Pool({ connectionString: url, max: 4 });
        // An idle connection ended by a server restart (fault tests) is replaced on the next query.
        pool.on('error', () => {});
      }
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
          // A test that crashed its server may end while the server still recovers (57P03).
          const retriable = /replication slot/i.test((err as Error).message) || (err as { code?: string }).code === '57P03';
          if (attempt >= 100 || !retriable) throw err;
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      }
    },
  };
}
