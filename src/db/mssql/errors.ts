import { CdcSyncError, ConfigError, PermanentError, TransientError, withContext, type ErrorContext, type FailureReason } from '../../core/errors.js';

/**
 * SQL Server error numbers a later attempt can get past (deadlocks, timeouts,
 * failover, throttling), with the usual Azure SQL transient set.
 * https://learn.microsoft.com/sql/relational-databases/errors-events/database-engine-events-and-errors
 */
const TRANSIENT_NUMBERS = new Set([
  -2, // client timeout
  20, 64, 121, 233, 10053, 10054, 10060, // connection broken / reset / timed out
  1205, // deadlock victim
  1222, // lock request time-out
  4060, // cannot open database (failover, restore in progress)
  18456, // login failed: common while an availability group fails over
  40143, 40197, 40501, 40613, 49918, 49919, 49920, // Azure SQL: service busy / reconfiguring
  3960, // snapshot isolation update conflict
  8645, // timeout waiting for memory
]);

/** Errors that belong to one change: dead-lettered after isolating the row. */
const PERMANENT_REASONS = new Map<number, FailureReason>([
  [2627, 'constraint'], // unique constraint
  [2601, 'constraint'], // unique index
  [547, 'constraint'], // foreign key / check
  [515, 'constraint'], // NULL into NOT NULL
  [8152, 'invalid-data'], // string or binary data would be truncated
  [2628, 'invalid-data'], // same, SQL Server 2019+ text
  [245, 'invalid-data'], // conversion failed
  [241, 'invalid-data'], // conversion failed when converting date and/or time from character string
  [242, 'invalid-data'], // datetime value out of range
  [8114, 'invalid-data'], // error converting data type
  [8115, 'invalid-data'], // arithmetic overflow
  [13609, 'invalid-data'], // JSON text is not properly formatted
  [207, 'schema'], // invalid column name
  [208, 'schema'], // invalid object name
]);

/**
 * Errors only the operator can fix: 229 "The SELECT/INSERT/… permission was
 * denied on the object", and the sink's identity guard (THROW 50001, see
 * src/sinks/mssql/queries.ts). Retrying or dead-lettering would hide them.
 */
const CONFIGURATION_NUMBERS = new Set([229, 50001]);

/** tedious/mssql error codes for the connection rather than the statement. */
const TRANSIENT_CODES = new Set(['ETIMEOUT', 'ESOCKET', 'ECONNCLOSED', 'ECONNRESET', 'ECONNREFUSED', 'ENOTOPEN', 'ENOCONN', 'EINSTLOOKUP']);

export function classifyMssqlError(error: unknown, context: ErrorContext = {}): CdcSyncError {
  if (error instanceof CdcSyncError) return withContext(error, context);
  const err = error instanceof Error ? error : new Error(String(error));
  const { number, code } = err as { number?: unknown; code?: unknown };
  const n = typeof number === 'number' ? number : undefined;
  const c = typeof code === 'string' ? code : undefined;
  const ctx = { ...context, ...(n !== undefined ? { code: String(n) } : c ? { code: c } : {}) };
  if ((n !== undefined && TRANSIENT_NUMBERS.has(n)) || (c !== undefined && TRANSIENT_CODES.has(c))) {
    return new TransientError(err.message, { context: ctx, cause: err });
  }
  if (n !== undefined && CONFIGURATION_NUMBERS.has(n)) return new ConfigError(err.message, { context: ctx, cause: err });
  // 547 on an INSERT or UPDATE "conflicted with the FOREIGN KEY constraint": the parent is missing (a DELETE conflicts with a REFERENCE constraint).
  if (n === 547 && /FOREIGN KEY constraint/i.test(err.message) && /The (INSERT|UPDATE|MERGE) statement/i.test(err.message)) {
    return new PermanentError(err.message, { context: ctx, cause: err, reason: 'missing-parent' });
  }
  return new PermanentError(err.message, { context: ctx, cause: err, reason: (n !== undefined && PERMANENT_REASONS.get(n)) || 'other' });
}

export function isMssqlConnectionError(error: CdcSyncError): boolean {
  const code = error.context.code ?? '';
  return error.transient && (TRANSIENT_CODES.has(code) || ['-2', '20', '64', '121', '233', '10053', '10054', '10060', '4060', '18456'].includes(code));
}

/** For readWithRetry: how SQL Server errors are classified and when the connection is gone. */
export const MSSQL_ERRORS = {
  error: (error: unknown) => classifyMssqlError(error),
  lostConnection: isMssqlConnectionError,
};
