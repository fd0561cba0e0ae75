// The template database every test database is cloned from, and the admin statements
// around it. No vitest import here: global-setup.ts uses it outside any test file.
import pg from 'pg';

export const TEMPLATE_DATABASE = 'cdc_template';

export interface PgServer {
  host: string;
  port: number;
  user: string;
  url(database: string): string;
}

/** Runs one statement on the maintenance database `postgres`. */
export async function admin(server: PgServer, sql: string, params: unknown[] = []): Promise<void> {
  const client = new pg.Client({ connectionString: server.url('postgres') });
  await client.connect();
  try {
    await client.query(sql, params);
  } finally {
    await client.end();
  }
}

/** The template every test database is cloned from (CREATE DATABASE … TEMPLATE is cheap). Nobody may stay connected to it. */
export async function createTemplate(server: PgServer): Promise<void> {
  await admin(server, `CREATE DATABASE ${TEMPLATE_DATABASE} IS_TEMPLATE true`);
}

