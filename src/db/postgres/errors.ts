import { CdcSyncError, PermanentError, TransientError, withContext, type ErrorContext, type FailureReason } from '../../core/errors.js';

/**
 * SQLSTATE codes and classes that a later attempt can get past. Everything
 * else with a SQLSTATE is a property of the change or the schema.
 * https://www.postgresql.org/docs/current/errcodes-appendix.html
 */
const TRANSIENT_CLASSES = new Set([
  '08', // connection exception
  '53', // insufficient resources: too many connections, disk full, out of memory
  '58', // system error: I/O
]);
const TRANSIENT_CODES = new Set([
  '40001', // serialization_failure
  '40P01', // deadlock_detected
  '55P03', // lock_not_available
  '55006', // object_in_use
  '57014', // query_canceled (statement_timeout)
  '57P01', // admin_shutdown (server restart, failover)
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now (starting up, recovery)
  '57P05', // idle_session_timeout
]);
const PERMANENT_REASONS: Record<string, FailureReason> = {
  '23': 'constraint', // integrity constraint violation
  '22': 'invalid-data', // data exception: bad input syntax, out of range
  '42': 'schema', // undefined table/column, privileges
};

/**
 * 23503 on an insert or update: the row points at a parent that is not there
 * (yet), which the stream retries with later batches. On a delete it is a
 * parent still referenced: a plain constraint. The text is ri_triggers.c's
 * (ri_ReportViolation: "insert or update on table … violates foreign key
 * constraint", with the detail "Key (…)=(…) is not present in table …").
 */
function permanentReason(code: string, message: string): FailureReason {
  if (code === '23503' && /^insert or update on table|is not present in table/.test(message)) return 'missing-parent';
  return PERMANENT_REASONS[code.slice(0, 2)] ?? 'other';
}

/** Node and pg errors that mean the connection, not the statement, failed. */
const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'ENOTFOUND']);
const NETWORK_MESSAGES = [/connection terminated/i, /timeout exceeded when trying to connect/i, /connection error/i, /not queryable/i, /ECONNREFUSED/];

export function classifyPgError(error: unknown, context: ErrorContext = {}): CdcSyncError {
  if (error instanceof CdcSyncError) return withContext(error, context);
  const err = error instanceof Error ? error : new Error(String(error));
  const code = (err as { code?: unknown }).code;
  const message = err.message || String(code ?? 'unknown error');
  if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) {
    const ctx = { ...context, code };
    if (TRANSIENT_CODES.has(code) || TRANSIENT_CLASSES.has(code.slice(0, 2))) {
      return new TransientError(message, { context: ctx, cause: err });
    }
    return new PermanentError(message, { context: ctx, cause: err, reason: permanentReason(code, message) });
  }
  if ((typeof code === 'string' && NETWORK_CODES.has(code)) || NETWORK_MESSAGES.some((re) => re.test(message))) {
    return new TransientError(message, { context: { ...context, ...(typeof code === 'string' ? { code } : {}) }, cause: err });
  }
  return new PermanentError(message, { context, cause: err });
}

export function isConnectionError(error: CdcSyncError): boolean {
  const code = error.context.code ?? '';
  return error.transient && (code.startsWith('08') || code.startsWith('57P') || NETWORK_CODES.has(code) || code === '');
}
