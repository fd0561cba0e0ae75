/**
 * Errors as data: every error cdc-sync raises says whether trying again can
 * help (`transient`) and carries the context an operator needs to find the
 * change (stream, table, key, position) — never row values.
 */
export interface ErrorContext {
  stream?: string;
  table?: string;
  key?: string;
  position?: string;
  /** Driver or server code (SQLSTATE, PostgREST code, errno...). */
  code?: string;
}

/** Why a change failed, as the `reason` label of `cdc_sync_events_failed_total`. */
export const FAILURE_REASONS = ['constraint', 'invalid-data', 'schema', 'malformed', 'missing-parent', 'other'] as const;
export type FailureReason = (typeof FAILURE_REASONS)[number];

export class CdcSyncError extends Error {
  readonly transient: boolean;
  readonly context: ErrorContext;
  readonly reason: FailureReason;

  constructor(message: string, options: { transient: boolean; context?: ErrorContext; reason?: FailureReason; cause?: unknown }) {
    super(message, { cause: options.cause });
    this.name = new.target.name;
    this.transient = options.transient;
    this.context = options.context ?? {};
    this.reason = options.reason ?? 'other';
  }

  /** The message with its context, for logs and dead letters. */
  describe(): string {
    const ctx = Object.entries(this.context)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `${k}=${v}`)
      .join(' ');
    return ctx ? `${this.message} (${ctx})` : this.message;
  }
}

/** Network, timeouts, deadlocks, overload: retried with backoff, never dead-lettered. */
export class TransientError extends CdcSyncError {
  constructor(message: string, options: { context?: ErrorContext; cause?: unknown } = {}) {
    super(message, { ...options, transient: true });
  }
}

/** The change itself cannot be applied (constraint, type, bad JSON): dead-lettered. */
export class PermanentError extends CdcSyncError {
  constructor(message: string, options: { context?: ErrorContext; reason?: FailureReason; cause?: unknown } = {}) {
    super(message, { ...options, transient: false });
  }
}

/**
 * The configuration does not match the databases (missing table or column,
 * bad identifier). Nothing can run until the operator fixes it: exit code 2.
 */
export class ConfigError extends CdcSyncError {
  constructor(message: string, options: { context?: ErrorContext; cause?: unknown } = {}) {
    super(message, { ...options, transient: false, reason: 'schema' });
  }
}

/** A bug: something that cannot happen did. */
export class AssertionError extends CdcSyncError {
  constructor(message: string) {
    super(message, { transient: false });
  }
}

export function isTransient(error: unknown): boolean {
  return error instanceof CdcSyncError ? error.transient : false;
}

export function errorMessage(error: unknown): string {
  if (error instanceof CdcSyncError) return error.describe();
  if (error instanceof Error) return error.message;
  return String(error);
}

export function failureReason(error: unknown): FailureReason {
  return error instanceof CdcSyncError ? error.reason : 'other';
}

/** Adds context an error does not have yet (an inner layer knows the code, an outer one the table). */
export function withContext<E extends CdcSyncError>(error: E, context: ErrorContext): E {
  for (const [key, value] of Object.entries(context) as [keyof ErrorContext, string | undefined][]) {
    if (value !== undefined && error.context[key] === undefined) error.context[key] = value;
  }
  return error;
}
