import pg from 'pg';
import { from as copyFromStdin } from 'pg-copy-streams';
import type { Logger } from '../../log.js';
import { isPgliteUrl, openPglite } from './pglite-pool.js';

// int8 and numeric as exact strings; timestamps as Date (pg's defaults for those are fine).
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => v);
pg.types.setTypeParser(pg.types.builtins.NUMERIC, (v) => v);

export interface QueryResult<R> {
  rows: R[];
  rowCount: number | null;
}

/** What the PostgreSQL adapters need of a connection pool: `pg` for servers, PGlite embedded. */
export interface Pool {
  query<R = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<QueryResult<R>>;
  /** A connection of one's own, for a transaction. */
  connect(): Promise<PoolClient>;
  end(): Promise<void>;
}

export interface PoolClient {
  query<R = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<QueryResult<R>>;
  /** Several statements as one simple query (one round trip); the row count of each, in order. */
  script(sql: string): Promise<number[]>;
  /**
   * `COPY … FROM STDIN` with `data` in COPY's text format; the rows written.
   * Servers only: PGlite has no COPY sub-protocol here, and callers use
   * ordinary statements instead.
   */
  copyFrom?(sql: string, data: Buffer, sent?: () => void): Promise<number>;
  /** `broken`: the connection is in an unknown state and must not be reused. */
  release(broken?: boolean): void;
}

export interface PoolOptions {
  max?: number;
  log?: Logger;
}

/**
 * A pool whose sessions say who they are (`application_name`) and agree on
 * time (UTC, so a timestamp without zone means the same on every server).
 * `pglite:PATH` (or `pglite:memory`) opens an embedded PGlite database
 * instead: the same SQL runs on both. Who writes (`cdc_sync.origin`, for
 * echo suppression) is set per transaction by the sink.
 */
export function createPool(url: string, options: PoolOptions = {}): Pool {
  if (isPgliteUrl(url)) return openPglite(url);
  const pool = new pg.Pool({
    connectionString: url,
    max: options.max ?? 2,
    application_name: 'cdc-sync',
    options: '-c TimeZone=UTC',
    connectionTimeoutMillis: 10_000,
    idleTimeoutMillis: 30_000,
  });
  // An idle client losing its server must not crash the process; the next query reports it.
  pool.on('error', (error) => options.log?.warn({ err: error.message }, 'idle PostgreSQL connection lost'));
  return {
    query: async <R>(sql: string, params?: unknown[]) => (await pool.query(sql, params)) as unknown as QueryResult<R>,
    connect: async () => {
      const client = await pool.connect();
      return {
        query: async <R>(sql: string, params?: unknown[]) => (await client.query(sql, params)) as unknown as QueryResult<R>,
        script: async (sql: string) => {
          // pg answers a simple query with one result per statement (a bare result when there is one).
          const results = (await client.query(sql)) as unknown as pg.QueryResult | pg.QueryResult[];
          return (Array.isArray(results) ? results : [results]).map((r) => r.rowCount ?? 0);
        },
        copyFrom: (sql: string, data: Buffer, sent?: () => void) =>
          new Promise<number>((resolve, reject) => {
            const copy = client.query(copyFromStdin(sql));
            copy.on('error', reject);
            // 'finish' comes once the server has answered CommandComplete and ReadyForQuery (pg-copy-streams 4+).
            copy.on('finish', () => resolve(copy.rowCount));
            // The write's callback runs once the data is on the socket (after the server's CopyInResponse).
            copy.write(data, () => sent?.());
            copy.end();
          }),
        release: (broken?: boolean) => client.release(broken),
      };
    },
    end: () => pool.end(),
  };
}
