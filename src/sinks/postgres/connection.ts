import pg from 'pg';
import type { Logger } from '../../log.js';

// int8 and numeric as exact strings; timestamps as Date (pg's defaults for those are fine).
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => v);
pg.types.setTypeParser(pg.types.builtins.NUMERIC, (v) => v);

export interface PoolOptions {
  /** Written by cdc-sync: change-log triggers see this setting and do not capture the row again. */
  origin?: string;
  max?: number;
  log?: Logger;
}

/**
 * A pool whose sessions say who they are: `application_name` for the
 * operator, `cdc_sync.origin` for the triggers (echo suppression), UTC so a
 * timestamp without zone means the same on every server.
 */
export function createPool(url: string, options: PoolOptions = {}): pg.Pool {
  const settings = ['-c TimeZone=UTC'];
  if (options.origin) settings.push(`-c cdc_sync.origin=${options.origin}`);
  const pool = new pg.Pool({
    connectionString: url,
    max: options.max ?? 2,
    application_name: 'cdc-sync',
    options: settings.join(' '),
    connectionTimeoutMillis: 10_000,
    idleTimeoutMillis: 30_000,
  });
  // An idle client losing its server must not crash the process; the next query reports it.
  pool.on('error', (error) => options.log?.warn({ err: error.message }, 'idle PostgreSQL connection lost'));
  return pool;
}

export type { Pool, PoolClient } from 'pg';
