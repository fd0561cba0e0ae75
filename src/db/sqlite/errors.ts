import { CdcSyncError, PermanentError, TransientError, withContext, type ErrorContext, type FailureReason } from '../../core/errors.js';

/**
 * better-sqlite3 errors carry SQLite's extended result code as `code`
 * (`SQLITE_BUSY`, `SQLITE_CONSTRAINT_FOREIGNKEY`...). Busy and locked mean
 * another writer holds the database: a later attempt gets through. I/O and
 * full-disk errors may pass as well. Constraint, type and schema errors are
 * properties of the change or the configuration.
 * https://www.sqlite.org/rescode.html
 */
const TRANSIENT_PREFIXES = ['SQLITE_BUSY', 'SQLITE_LOCKED', 'SQLITE_IOERR', 'SQLITE_FULL', 'SQLITE_PROTOCOL', 'SQLITE_CANTOPEN'];

export function classifySqliteError(error: unknown, context: ErrorContext = {}): CdcSyncError {
  if (error instanceof CdcSyncError) return withContext(error, context);
  const err = error instanceof Error ? error : new Error(String(error));
  const code = (err as { code?: unknown }).code;
  const ctx = typeof code === 'string' ? { ...context, code } : context;
  if (typeof code === 'string' && TRANSIENT_PREFIXES.some((p) => code.startsWith(p))) {
    return new TransientError(err.message, { context: ctx, cause: err });
  }
  return new PermanentError(err.message, { context: ctx, cause: err, reason: reasonOf(code, err.message) });
}

function reasonOf(code: unknown, message: string): FailureReason {
  if (typeof code !== 'string') return 'other';
  if (code.startsWith('SQLITE_CONSTRAINT')) return 'constraint';
  if (code === 'SQLITE_MISMATCH' || code === 'SQLITE_TOOBIG' || code === 'SQLITE_RANGE') return 'invalid-data';
  if (/no such (table|column)|has no column/i.test(message)) return 'schema';
  return 'other';
}

/** Only busy/locked count as "connected but waiting"; a file that cannot be opened is a lost connection. */
export function isSqliteConnectionError(error: CdcSyncError): boolean {
  const code = error.context.code ?? '';
  return error.transient && (code.startsWith('SQLITE_CANTOPEN') || code.startsWith('SQLITE_IOERR'));
}
