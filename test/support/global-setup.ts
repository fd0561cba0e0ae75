// vitest globalSetup: one PostgreSQL cluster for the whole run, shared by all test files.
// Test files reach it through inject('pg') (see test-database.ts).
import type { TestProject } from 'vitest/node';
import { startPostgresCluster } from './postgres-cluster.js';
import { createTemplate } from './template-database.js';
import { tsqlParserBundle } from './tsql/tsql-grammar.js';

declare module 'vitest' {
  export interface ProvidedContext {
    pg: { host: string; port: number; user: string };
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  // Built once here (about 10 s on a fresh checkout) rather than by the first test that reaches the SQL Server stand-in.
  tsqlParserBundle();
  const cluster = await startPostgresCluster();
  try {
    await createTemplate({ host: cluster.host, port: cluster.port, user: cluster.user, url: cluster.url });
  } catch (err) {
    await cluster.stop();
    throw err;
  }

  project.provide('pg', { host: cluster.host, port: cluster.port, user: cluster.user });
  return () => cluster.stop();
}
