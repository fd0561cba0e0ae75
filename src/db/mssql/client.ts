import type sql from 'mssql';
import type * as Mssql from 'mssql';
import { CdcSyncError, ConfigError } from '../../core/errors.js';
import { classifyMssqlError } from './errors.js';
import { importModule } from '../../core/import-module.js';

/**
 * The one place cdc-sync touches the `mssql` driver. Statements are named so
 * that tests can stand in for SQL Server at this boundary (answering each
 * named statement with rows shaped exactly as the driver returns them)
 * without parsing T-SQL.
 */
export interface Query {
  /** Stable name, e.g. `cdc.read-changes`. */
  name: string;
  sql: string;
  /** Facts a stand-in needs that live in the SQL text (capture instance, table). */
  meta?: Record<string, string>;
}

export type ParamType = 'binary10' | 'int' | 'bigint' | 'nvarchar' | 'varchar' | 'nvarchar-max' | 'datetime2' | 'bit';

export interface Param {
  type: ParamType;
  value: unknown;
}

export type Params = Record<string, Param>;

export interface MssqlExecutor {
  query<T>(query: Query, params?: Params): Promise<T[]>;
}

export interface MssqlClient extends MssqlExecutor {
  /** Runs `work` in one transaction; commits when it resolves, rolls back when it throws. */
  transaction<T>(work: (tx: MssqlExecutor) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

export type MssqlConnect = (url: string, options: { applicationName: string }) => Promise<MssqlClient>;

type Driver = typeof sql;

const TYPES: Record<ParamType, (d: Driver) => sql.ISqlTypeFactoryWithNoParams | sql.ISqlType> = {
  binary10: (d) => d.VarBinary(10),
  int: (d) => d.Int,
  bigint: (d) => d.BigInt,
  nvarchar: (d) => d.NVarChar(4000),
  varchar: (d) => d.VarChar(8000),
  'nvarchar-max': (d) => d.NVarChar(d.MAX),
  datetime2: (d) => d.DateTime2(7),
  bit: (d) => d.Bit,
};

/**
 * `mssql://user:password@host:1433/database?encrypt=false&trustServerCertificate=true`
 * or an ADO.NET connection string (`Server=…;Database=…;User Id=…;Password=…`).
 */
export function connectionConfig(url: string, applicationName: string): sql.config | string {
  if (!/^(mssql|sqlserver):\/\//i.test(url)) return url;
  const u = new URL(url.replace(/^sqlserver:/i, 'mssql:'));
  const flag = (name: string, fallback: boolean) => {
    const v = u.searchParams.get(name);
    return v === null ? fallback : /^(1|true|yes)$/i.test(v);
  };
  return {
    server: u.hostname,
    port: u.port ? Number(u.port) : 1433,
    database: decodeURIComponent(u.pathname.replace(/^\//, '')) || undefined,
    user: decodeURIComponent(u.username),
    password: decodeURIComponent(u.password),
    pool: { max: 4, min: 0, idleTimeoutMillis: 30_000 },
    connectionTimeout: 15_000,
    requestTimeout: 60_000,
    options: {
      encrypt: flag('encrypt', true),
      trustServerCertificate: flag('trustServerCertificate', false),
      appName: applicationName,
      // datetime2 values are wall-clock times without zone: read them as UTC so nothing shifts.
      useUTC: true,
    },
  };
}

export const connectMssql: MssqlConnect = async (url, options) => {
  // Loaded on first use: the driver costs ~30 MB that PostgreSQL-only streams should not pay.
  const { default: sql } = await importModule<{ default: typeof Mssql }>('mssql');
  const pool = new sql.ConnectionPool(connectionConfig(url, options.applicationName) as sql.config);
  // Errors of idle connections surface on the next query; keep the process alive.
  pool.on('error', () => undefined);
  try {
    await pool.connect();
  } catch (error) {
    throw classifyMssqlError(error);
  }
  const run = async <T>(request: sql.Request, query: Query, params: Params = {}): Promise<T[]> => {
    for (const [name, param] of Object.entries(params)) request.input(name, TYPES[param.type](sql), param.value);
    try {
      const result = await request.query(query.sql);
      return (result.recordset ?? []) as T[];
    } catch (error) {
      throw classifyMssqlError(error);
    }
  };
  return {
    query: (query, params) => run(pool.request(), query, params),
    async transaction(work) {
      const tx = new sql.Transaction(pool);
      try {
        await tx.begin();
      } catch (error) {
        throw classifyMssqlError(error);
      }
      try {
        const result = await work({ query: (query, params) => run(new sql.Request(tx), query, params) });
        await tx.commit();
        return result;
      } catch (error) {
        await tx.rollback().catch(() => undefined);
        throw classifyMssqlError(error);
      }
    },
    close: () => pool.close(),
  };
};

/**
 * The driver in use. Tests (and only tests) may point `CDC_SYNC_MSSQL_DRIVER`
 * at a module exporting `connect: MssqlConnect`, to run the real CLI against
 * a stand-in for SQL Server, which cannot run on every machine.
 */
export async function loadMssqlDriver(): Promise<MssqlConnect> {
  const override = process.env.CDC_SYNC_MSSQL_DRIVER;
  if (!override) return connectMssql;
  const module = await importModule<{ connect?: MssqlConnect }>(override);
  if (typeof module.connect !== 'function') throw new Error(`${override} does not export connect()`);
  return module.connect;
}

/**
 * Codes of a refused login: tedious's ELOGIN (its message is the server's:
 * "Login failed for user …", "Cannot open database … requested by the
 * login"), 18456 login failed, 4060 database cannot be opened.
 */
const ACCESS_DENIED = new Set(['ELOGIN', '18456', '4060']);

/**
 * The first connection of a source or sink. A refused login there is the
 * configuration's fault (a wrong password, a database that does not exist):
 * a ConfigError naming `urlKey`, exit code 2 at start, instead of a retry for
 * ever. Later, on a running pool, the same codes come from an availability
 * group failing over and stay transient (errors.ts).
 */
export async function openClient(connect: MssqlConnect, url: string, urlKey: string): Promise<MssqlClient> {
  try {
    return await connect(url, { applicationName: 'cdc-sync' });
  } catch (error) {
    const classified = error instanceof CdcSyncError ? error : classifyMssqlError(error);
    // A driver loaded apart from this bundle (CDC_SYNC_MSSQL_DRIVER) has its own error classes: read the code by shape.
    const code = classified.context.code ?? (error as { context?: { code?: string } }).context?.code ?? '';
    if (ACCESS_DENIED.has(code)) {
      // The server's message names the login or the database, never the password.
      throw new ConfigError(`${urlKey}: ${classified.message}`, { context: { code }, cause: error });
    }
    throw classified;
  }
}
