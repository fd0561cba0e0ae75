import type { Duplex } from 'node:stream';
import pg from 'pg';
import { from as copyFromStdin } from 'pg-copy-streams';
import { describeUrl } from '../../core/endpoint.js';
import { ConfigError } from '../../core/errors.js';
import type { Logger } from '../../log.js';
import { isPgliteUrl, openPglite } from './pglite-pool.js';

// int8 and numeric as exact strings; timestamps as Date (pg's defaults for those are fine).
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => v);
pg.types.setTypeParser(pg.types.builtins.NUMERIC, (v) => v);

export type { Pool, PoolClient, QueryResult } from './pool.js';
import type { Pool, QueryResult } from './pool.js';

export interface PoolOptions {
  max?: number;
  log?: Logger;
  /**
   * A statement or a connection attempt without an answer for this long
   * (a black-holed network: no RST, no FIN) ends its connection, so the
   * caller sees a transient error instead of waiting for ever. Default 30 s.
   */
  timeoutMs?: number;
  /** The configuration key of the URL (`source.url`), named in a configuration error (bad password, no such database). */
  urlKey?: string;
}

export const DEFAULT_TIMEOUT_MS = 30_000;

/**
 * SQLSTATEs that no retry gets past: the URL or the credentials are wrong
 * (28: invalid authorization, 28P01 a wrong password; 3D000 no such
 * database). https://www.postgresql.org/docs/current/errcodes-appendix.html
 */
function isAccessDenied(code: unknown): boolean {
  return typeof code === 'string' && (code.startsWith('28') || code === '3D000');
}

/** The error of a connection attempt, as a configuration error naming `urlKey` when the server refused the login. */
export function connectError(error: unknown, urlKey: string | undefined): unknown {
  const code = (error as { code?: unknown } | null)?.code;
  if (!isAccessDenied(code)) return error;
  // The server's message names the user or database, never the password.
  const message = (error as Error).message;
  return new ConfigError(`${urlKey ?? 'url'}: ${message}`, { context: { code: code as string }, cause: error });
}

/** The socket (or TLS socket) of a pg client's connection: pg does not expose it. */
export function pgSocket(client: pg.Client | pg.PoolClient | undefined): Duplex | undefined {
  return (client as unknown as { connection?: { stream?: Duplex } } | undefined)?.connection?.stream;
}


/**
 * Ends a connection that stayed silent for `timeoutMs`: destroying its
 * socket fails the query in progress (and everything queued on the client)
 * with a connection error, ETIMEDOUT naming the database, and keeps the dead
 * client from going back into a pool.
 */
export function endSilent(client: pg.ClientBase, url: string, timeoutMs: number, what = ''): void {
  const message = `no answer from PostgreSQL at ${describeUrl(url)} within ${timeoutMs} ms${what}`;
  pgSocket(client as pg.Client)?.destroy(Object.assign(new Error(message), { code: 'ETIMEDOUT' }));
}

/** Runs `query` on `client`, ending the connection (endSilent) when no answer comes within `timeoutMs`. */
async function withDeadline<T>(client: pg.ClientBase, timeoutMs: number, url: string, query: () => Promise<T>): Promise<T> {
  const timer = setTimeout(() => endSilent(client, url, timeoutMs), timeoutMs);
  try {
    return await query();
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The server's own probe of this session's client, within about twice the
 * deadline: neither the statement nor the idle timeout runs while the
 * server waits for the rest of a message or for COPY data. Any role may set
 * these; they apply to TCP connections only.
 * https://www.postgresql.org/docs/current/runtime-config-connection.html#GUC-TCP-KEEPALIVES-IDLE
 */
function serverKeepalives(timeoutMs: number): string {
  const seconds = Math.max(1, Math.ceil(timeoutMs / 1000));
  const interval = Math.max(1, Math.ceil(seconds / 3));
  return `-c tcp_keepalives_idle=${seconds} -c tcp_keepalives_interval=${interval} -c tcp_keepalives_count=3 -c tcp_user_timeout=${seconds * 1000}`;
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
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const where = describeUrl(url);
  const pool = new pg.Pool({
    connectionString: url,
    max: options.max ?? 2,
    application_name: 'cdc-sync',
    // The server's side of the same deadline: a session whose client vanished (a black hole, a NAT entry
    // dropped) would otherwise hold its transaction's row locks until the server's TCP keepalive notices,
    // hours later, and every new connection's write of the same rows would wait behind it.
    // No JIT: every statement here is short, but on a change log without statistics or for a batch of thousands
    // of rows its estimated cost passes jit_above_cost, and compiling took 6-25 ms for a 0.3 ms statement.
    options: `-c TimeZone=UTC -c statement_timeout=${timeoutMs} -c idle_in_transaction_session_timeout=${timeoutMs} -c jit=off ${serverKeepalives(timeoutMs)}`,
    connectionTimeoutMillis: Math.min(timeoutMs, 10_000),
    idleTimeoutMillis: 30_000,
    // The kernel's own probe of idle connections; the deadlines below catch the rest sooner.
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
  });
  // pg-pool listens for errors only while a client is idle (it removes its listener at checkout), and a pg
  // Client emits 'error' whenever its connection dies: without a listener of its own, a checked-out client
  // losing its server (a restart) would crash the process. The query in progress fails with the error too,
  // and the caller's retry takes it from there.
  pool.on('connect', (client) => {
    client.on('error', (error) => options.log?.debug({ err: error.message, database: where }, 'PostgreSQL connection lost'));
  });
  pool.on('error', (error) => options.log?.debug({ err: error.message, database: where }, 'idle PostgreSQL connection lost'));
  const checkout = async () => {
    try {
      return await pool.connect();
    } catch (error) {
      throw connectError(error, options.urlKey);
    }
  };
  const query = <R>(client: pg.PoolClient, sql: string, params?: unknown[]) =>
    withDeadline(client, timeoutMs, url, async () => (await client.query(sql, params)) as unknown as QueryResult<R>);
  return {
    async query<R>(sql: string, params?: unknown[]) {
      const client = await checkout();
      try {
        const result = await query<R>(client, sql, params);
        client.release();
        return result;
      } catch (error) {
        client.release(error as Error);
        throw error;
      }
    },
    connect: async () => {
      const client = await checkout();
      return {
        query: <R>(sql: string, params?: unknown[]) => query<R>(client, sql, params),
        script: async (sql: string) => {
          // pg answers a simple query with one result per statement (a bare result when there is one).
          const results = (await withDeadline(client, timeoutMs, url, () => client.query(sql))) as unknown as pg.QueryResult | pg.QueryResult[];
          return (Array.isArray(results) ? results : [results]).map((r) => r.rowCount ?? 0);
        },
        copyFrom: (sql: string, data: Buffer[], sent?: () => void) =>
          withDeadline(
            client,
            timeoutMs,
            url,
            () =>
              new Promise<number>((resolve, reject) => {
                const copy = client.query(copyFromStdin(sql));
                copy.on('error', reject);
                // 'finish' comes once the server has answered CommandComplete and ReadyForQuery (pg-copy-streams 4+).
                copy.on('finish', () => resolve(copy.rowCount));
                // The last write's callback runs once the data is on the socket (after the server's CopyInResponse).
                data.forEach((piece, i) => copy.write(piece, i === data.length - 1 ? () => sent?.() : undefined));
                if (data.length === 0) sent?.();
                copy.end();
              }),
          ),
        release: (broken?: boolean) => client.release(broken),
      };
    },
    end: () => pool.end(),
  };
}
