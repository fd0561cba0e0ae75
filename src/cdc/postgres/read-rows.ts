import { ConfigError } from '../../core/errors.js';
import type { Pool } from '../../db/postgres/connection.js';
import { classifyPgError, isConnectionError } from '../../db/postgres/errors.js';
import type { StreamContext } from '../../streams/context.js';
import type { RetryPolicy } from '../../streams/retry.js';
import { readWithRetry } from '../read-with-retry.js';

/** A PostgreSQL source's query, retried as every source read is; `source` names it when used before open(). */
export function readRows<T>(pool: Pool | undefined, source: string, context: StreamContext, retry: RetryPolicy, sql: string, params: unknown[]): Promise<T[]> {
  if (!pool) throw new ConfigError(`${source} source used before open()`);
  return readWithRetry(
    context,
    retry,
    { error: (error) => classifyPgError(error, { stream: context.stream }), lostConnection: isConnectionError },
    async () => (await pool.query(sql, params)).rows as T[],
  );
}
