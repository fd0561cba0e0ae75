/** What the PostgreSQL adapters need of a connection pool (connection.ts makes one: `pg` for servers, PGlite embedded). */

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
  copyFrom?(sql: string, data: Buffer[], sent?: () => void): Promise<number>;
  /** `broken`: the connection is in an unknown state and must not be reused. */
  release(broken?: boolean): void;
}
