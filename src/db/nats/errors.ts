import { CdcSyncError, PermanentError, TransientError, withContext, type ErrorContext } from '../../core/errors.js';

/**
 * NATS client errors (@nats-io/nats-core errors.ts, @nats-io/jetstream jserrors.ts):
 * a payload over the server's max_payload or a bad subject is a property of
 * the change; JetStream API errors with status 400 are requests the server
 * refuses (the change or the configuration), except a stream at its limits,
 * which frees up. Everything else (timeouts, no responders while a stream
 * elects a leader, a closed or reconnecting connection, 503) passes.
 */
export function classifyNatsError(error: unknown, context: ErrorContext = {}): CdcSyncError {
  if (error instanceof CdcSyncError) return withContext(error, context);
  const err = error instanceof Error ? error : new Error(String(error));
  const name = err.name;
  if (name === 'InvalidArgumentError' || name === 'InvalidSubjectError') {
    return new PermanentError(err.message, { context: { ...context, code: name }, cause: err, reason: 'invalid-data' });
  }
  if (name === 'AuthorizationError' || name === 'PermissionViolationError' || name === 'UserAuthenticationExpiredError') {
    return new PermanentError(err.message, { context: { ...context, code: name }, cause: err, reason: 'schema' });
  }
  const api = err as { status?: unknown; code?: unknown };
  if (name === 'JetStreamApiError' || name === 'StreamNotFoundError' || name === 'ConsumerNotFoundError') {
    const code = typeof api.code === 'number' ? api.code : undefined;
    const status = typeof api.status === 'number' ? api.status : undefined;
    const ctx = { ...context, code: String(code ?? status ?? name) };
    // 10077 maximum messages exceeded, 10047 insufficient resources, 10028 maximum bytes exceeded.
    if (status === 503 || (code !== undefined && [10077, 10047, 10028].includes(code))) return new TransientError(err.message, { context: ctx, cause: err });
    if (status !== undefined && status >= 400 && status < 500) return new PermanentError(err.message, { context: ctx, cause: err, reason: 'other' });
  }
  return new TransientError(err.message, { context: { ...context, code: name }, cause: err });
}
