import { ConfigError, CdcSyncError, PermanentError, TransientError, type ErrorContext, type FailureReason } from '../../core/errors.js';
import { classifyPgError } from '../postgres/errors.js';

/**
 * What supabase-js hands back for a failed request: PostgREST's error JSON
 * (`code`, `message`, `details`, `hint`) with the HTTP status, or, when the
 * request never got an answer, `code: ''`, status 0 and the fetch error in
 * `message`/`details` (supabase/supabase-js: packages/core/postgrest-js/src/PostgrestBuilder.ts,
 * the catch after executeWithRetry).
 */
export interface PostgrestFailure {
  status: number;
  code?: string | null | undefined;
  message?: string | null | undefined;
  details?: string | null | undefined;
  hint?: string | null | undefined;
}

/**
 * PostgREST's own codes (PostgREST/postgrest: src/PostgREST/Error.hs).
 * PGRST0xx: the database connection (000 connection, 001 client error,
 * 002 no schema cache, 003 pool acquisition timeout) — PostgREST answers
 * 503/504 and recovers by itself. PGRST2xx: the schema cache does not know a
 * table or column. PGRST1xx: the request itself.
 */
const PGRST_TRANSIENT = new Set(['PGRST000', 'PGRST001', 'PGRST002', 'PGRST003']);
const PGRST_PERMANENT: Record<string, FailureReason> = {
  PGRST102: 'invalid-data', // invalid body (bad JSON, keys that do not match)
  PGRST204: 'schema', // column not in the schema cache
  PGRST205: 'schema', // table not in the schema cache
  PGRST106: 'schema', // schema not exposed
};

/** Statuses without a SQLSTATE that a later attempt can get past. */
const TRANSIENT_STATUSES = new Set([408, 425, 429, 500, 502, 503, 504, 520, 521, 522, 523, 524]);

/** Error codes of Node's fetch (undici) that mean the connection, not the request, failed. */
const NETWORK_CAUSE = /\b(ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|EHOSTUNREACH|ENETUNREACH|EAI_AGAIN|ENOTFOUND|UND_ERR_[A-Z_]+)\b/;

/**
 * Errors as data, like the PostgreSQL sink: the decision is a table lookup.
 * 1. No HTTP answer (status 0: refused, reset, DNS, timeout/abort) → transient.
 * 2. PGRST000-003 → transient; other PGRST codes by the table above.
 * 3. A SQLSTATE → the PostgreSQL sink's table (08, 40001, 40P01, 53, 57P01… transient;
 *    23 constraint, 22 invalid-data, 42 schema permanent).
 * 4. Otherwise by status: 408/429/5xx transient. 401/403 without a SQLSTATE
 *    (gateway "Invalid API key", PGRST301-303 JWT errors) are transient too:
 *    they hold for every change, so dead-lettering would empty the stream
 *    into the dead letter; the stream waits (state "stalled") instead.
 *    Every other 4xx is permanent.
 */
export function classifyPostgrestError(failure: PostgrestFailure, context: ErrorContext = {}): CdcSyncError {
  const code = failure.code ?? '';
  const message = describe(failure);
  if (!failure.status) {
    const cause = NETWORK_CAUSE.exec(`${failure.message ?? ''} ${failure.details ?? ''}`)?.[1];
    return new TransientError(message, { context: { ...context, ...(cause ? { code: cause } : {}) } });
  }
  const ctx = { ...context, ...(code ? { code } : {}) };
  if (PGRST_TRANSIENT.has(code)) return new TransientError(message, { context: ctx });
  if (code.startsWith('PGRST')) {
    if (/^PGRST3\d\d$/.test(code)) return new TransientError(message, { context: ctx });
    return new PermanentError(message, { context: ctx, reason: PGRST_PERMANENT[code] ?? 'other' });
  }
  // "permission denied for table …": the same for every change, and only a GRANT fixes it.
  if (code === '42501') {
    return new ConfigError(`${message}; the service_role needs GRANT SELECT, INSERT, UPDATE, DELETE on the table (\`cdc-sync init-sql --target supabase\` prints the grants)`, { context: ctx });
  }
  if (/^[0-9A-Z]{5}$/.test(code)) {
    const classified = classifyPgError(Object.assign(new Error(message), { code }), context);
    // PostgREST answers 503 for some codes the PostgreSQL table keeps permanent; trust the status.
    if (!classified.transient && failure.status === 503) return new TransientError(message, { context: ctx });
    return classified;
  }
  if (TRANSIENT_STATUSES.has(failure.status) || failure.status >= 500 || failure.status === 401 || failure.status === 403) {
    return new TransientError(message, { context: { ...ctx, code: code || `HTTP ${failure.status}` } });
  }
  return new PermanentError(message, { context: { ...ctx, code: code || `HTTP ${failure.status}` } });
}

/** One line an operator can act on: message, details and hint as PostgREST gave them. */
function describe(failure: PostgrestFailure): string {
  const parts = [failure.message || `HTTP ${failure.status}`];
  // Network failures carry a stack trace in details; keep its "Caused by" line.
  if (failure.details) {
    const lines = failure.details.split('\n').filter((l) => l && l !== failure.message);
    parts.push(failure.status ? failure.details : lines.slice(0, 1).join(' '));
  }
  if (failure.hint) parts.push(`hint: ${failure.hint}`);
  return parts.join(' — ');
}
