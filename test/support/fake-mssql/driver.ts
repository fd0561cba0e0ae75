import type { MssqlClient, MssqlConnect, Params, Query } from '../../../src/cdc/mssql/client.js';
import { classifyMssqlError } from '../../../src/cdc/mssql/errors.js';
import { decode, encode } from './codec.js';

/**
 * The module `CDC_SYNC_MSSQL_DRIVER` points at in end-to-end tests: the CLI
 * process sends each statement to the test's FakeSqlServer over HTTP and gets
 * the driver-shaped rows back.
 */
export const connect: MssqlConnect = async (url) => {
  const address = new URL(url.replace(/^fake-mssql:/, 'http:'));
  const endpoint = `http://${address.host}/query`;
  const run = async <T>(query: Query, params: Params = {}, login?: string): Promise<T[]> => {
    let reply: { rows?: unknown[]; error?: { message: string; number?: number; code?: string } };
    try {
      const response = await fetch(endpoint, { method: 'POST', body: JSON.stringify(encode({ query, params, login })) });
      reply = decode(await response.json()) as typeof reply;
    } catch (error) {
      throw classifyMssqlError(Object.assign(new Error((error as Error).message), { code: 'ESOCKET' }));
    }
    if (reply.error) throw classifyMssqlError(Object.assign(new Error(reply.error.message), reply.error));
    return reply.rows as T[];
  };
  // The pool's first connection logs in, as mssql's pool.connect() does.
  await run({ name: 'login', sql: '' }, {}, url);
  const client: MssqlClient = { query: (query, params) => run(query, params), transaction: async (work) => work({ query: (query, params) => run(query, params) }), close: async () => undefined };
  return client;
};
