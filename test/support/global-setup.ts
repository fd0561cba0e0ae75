// vitest globalSetup: one PostgreSQL cluster for the whole run, shared by all test files.
// Test files reach it through inject('pg') (see test-database.ts).
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { startPostgresCluster } from './postgres-cluster.js';

declare module 'vitest' {
  export interface ProvidedContext {
    pg: { host: string; port: number; user: string };
  }
}

/** Per-file databases are cloned from this one (CREATE DATABASE … TEMPLATE), which is cheap. */
export const TEMPLATE_DATABASE = 'cdc_template';

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const cluster = await startPostgresCluster();
  try {
    const client = new pg.Client({ connectionString: cluster.url('postgres') });
    await client.connect();
    try {
      // Empty for now; shared schema/extensions for every test database can go here later.
      // Nobody may stay connected to it, or CREATE DATABASE … TEMPLATE fails.
      await client.query(`CREATE DATABASE ${TEMPLATE_DATABASE} IS_TEMPLATE true`);
    } finally {
      await client.end();
    }
  } catch (err) {
    await cluster.stop();
    throw err;
  }

  project.provide('pg', { host: cluster.host, port: cluster.port, user: cluster.user });
  return () => cluster.stop();
}
