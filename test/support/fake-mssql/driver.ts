import type { MssqlClient, MssqlConnect, Params, Query } from '../../../src/cdc/mssql/client.js';
import { classifyMssqlError } from '../../../src/cdc/mssql/errors.js';
import { decode, encode } from './codec.js';

/**
 * The module `CDC_SYNC_MSSQL_DRIVER` points at in end-to-end tests: the CLI
 * process sends each statement to the test's FakeSqlServer over HTTP and gets
 * the driver-shaped rows back.
 */
export const connect: MssqlConnect = async (url) => {
  const endpoint = url.replace(/^fake-mssql:/, 'http:') + '/query';
  const run = async <T>(query: Query, params: Params = {}): Promise<T[]> => {
    let reply: { rows?: unknown[]; error?: { message: string; number?: number; code?: string } };
    try {
      const response = await fetch(endpoint, { method: 'POST', body: JSON.stringify(encode({ query, params })) });
      reply = decode(await response.json()) as typeof reply;
    } catch (error) {
      throw classifyMssqlError(Object.assign(new Error((error as Error).message), { code: 'ESOCKET' }));
    }
    if (reply.error) throw classifyMssqlError(Object.assign(new Error(reply.error.message), reply.error));
    return reply.rows as T[];
  };
  const client: MssqlClient = { query: run, transaction: async (work) => work({ query: run }), close: async () => undefined };
  return client;
};
