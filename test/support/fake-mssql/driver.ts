import type { MssqlClient, MssqlConnect } from '../../../src/db/mssql/client.js';
import { classifyMssqlError } from '../../../src/db/mssql/errors.js';
import { decode, encode } from './codec.js';

/**
 * The module `CDC_SYNC_MSSQL_DRIVER` points at in end-to-end tests: the CLI
 * process sends each statement to the test's FakeSqlServer over HTTP and gets
 * the driver-shaped rows back.
 */
export const connect: MssqlConnect = async (url) => {
  const address = new URL(url.replace(/^fake-mssql:/, 'http:'));
  const endpoint = `http://${address.host}/query`;
  const send = async <T>(request: Record<string, unknown>): Promise<T[]> => {
    let reply: { rows?: unknown[]; error?: { message: string; number?: number; code?: string } };
    try {
      const response = await fetch(endpoint, { method: 'POST', body: JSON.stringify(encode(request)) });
      reply = decode(await response.json()) as typeof reply;
    } catch (error) {
      throw classifyMssqlError(Object.assign(new Error((error as Error).message), { code: 'ESOCKET' }));
    }
    if (reply.error) throw classifyMssqlError(Object.assign(new Error(reply.error.message), reply.error));
    return reply.rows as T[];
  };
  // The pool's first connection logs in, as mssql's pool.connect() does.
  await send({ login: url });
  // A transaction holds its connection: begin, its statements, then commit, or rollback when the work throws.
  const transaction: MssqlClient['transaction'] = async (work) => {
    const [{ tx }] = await send<{ tx: number }>({ begin: true }) as [{ tx: number }];
    let result;
    try {
      result = await work({ query: (query, params = {}) => send({ query, params, tx }) });
    } catch (error) {
      await send({ rollback: tx }).catch(() => undefined);
      throw error;
    }
    await send({ commit: tx });
    return result;
  };
  return { query: (query, params = {}) => send({ query, params }), transaction, close: async () => undefined };
};
