// Error responses as PostgREST writes them: a JSON body {code, message, details,
// hint} with the status PostgREST maps the error to, and a Proxy-Status header.
// PostgREST/postgrest: src/PostgREST/Error.hs (errorPayload, errorResponseFor,
// the ApiRequestError/SchemaCacheError status tables, pgErrorStatus/mapSQLtoHTTP).

export class PostgrestError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details: string | null = null,
    readonly hint: string | null = null,
  ) {
    super(message);
  }

  body(): { code: string; message: string; details: string | null; hint: string | null } {
    return { code: this.code, message: this.message, details: this.details, hint: this.hint };
  }
}

/** PostgreSQL's error as PostgREST forwards it: SQLSTATE as code, status by mapSQLtoHTTP. */
export function fromPgError(error: unknown, request: { anonymous: boolean } = { anonymous: false }): PostgrestError {
  const e = error as { code?: string; message?: string; detail?: string; hint?: string };
  if (typeof e.code !== 'string' || !/^[0-9A-Z]{5}$/.test(e.code)) {
    // Lost connection to the database: PostgREST's ConnectionUsageError / ClientError.
    return new PostgrestError(503, 'PGRST001', 'Database client error. Retrying the connection.', e.message ?? String(error));
  }
  // Error.hs: insufficient privilege is 401 for the anonymous role (it could sign in), 403 for any other.
  const status = e.code === '42501' && request.anonymous ? 401 : sqlStateStatus(e.code, e.message ?? '');
  return new PostgrestError(status, e.code, e.message ?? '', e.detail ?? null, e.hint ?? null);
}

/** mapSQLtoHTTP, in the order Error.hs checks the codes (authenticated requests). */
export function sqlStateStatus(code: string, message: string): number {
  const two = code.slice(0, 2);
  if (two === '08') return 503; // pg connection err
  if (two === '09') return 500; // triggered action exception
  if (two === '0L' || two === '0P') return 403; // invalid grantor / role specification
  if (code === '23503' || code === '23505') return 409; // foreign key / unique violation
  if (code === '25006') return 405; // read only sql transaction
  if (code === '21000') return message.endsWith('requires a WHERE clause') ? 400 : 500; // pg-safeupdate
  if (code === '22023') return message.startsWith('role') && message.endsWith('does not exist') ? 401 : 400;
  if (['25', '2D', '38', '39', '3B', '40'].includes(two)) return 500;
  if (two === '28') return 403; // invalid auth specification
  if (code === '53400') return 500; // config limit exceeded
  if (two === '53') return 503; // insufficient resources
  if (two === '54' || two === '55') return 500;
  if (code === '57P01') return 503; // admin shutdown
  if (['57', '58', 'F0', 'HV', 'XX'].includes(two)) return 500;
  if (code === 'P0001') return 400; // default code for RAISE
  if (two === 'P0') return 500;
  if (code === '42883') return message.startsWith('function xmlagg(') ? 406 : 404; // undefined function
  if (code === '42P01') return 404; // undefined table
  if (code === '42P17') return 500; // infinite recursion
  if (code === '42501') return 403; // insufficient privilege (authenticated)
  return 400;
}

/** Schema cache misses (SchemaCacheError: ColumnNotFound 400, TableNotFound 404). */
export function columnNotFound(table: string, column: string): PostgrestError {
  return new PostgrestError(400, 'PGRST204', `Could not find the '${column}' column of '${table}' in the schema cache`);
}

export function tableNotFound(schema: string, table: string): PostgrestError {
  return new PostgrestError(404, 'PGRST205', `Could not find the table '${schema}.${table}' in the schema cache`);
}

/** UnacceptableSchema: 406 PGRST106. */
export function schemaNotExposed(schema: string, exposed: string[]): PostgrestError {
  return new PostgrestError(406, 'PGRST106', `Invalid schema: ${schema}`, null, `Only the following schemas are exposed: ${exposed.join(', ')}`);
}

/** InvalidBody: 400 PGRST102. */
export function invalidBody(message: string): PostgrestError {
  return new PostgrestError(400, 'PGRST102', message);
}

/**
 * Responses that come from in front of PostgREST, for fault injection: PostgREST's
 * own 503 when it lost the database (PGRST000), and what Supabase's API gateway
 * answers for overload, timeouts and rate limits (no PostgREST code; a 503 may
 * not even be JSON).
 */
export const INJECTED = {
  'pgrst-503': {
    status: 503,
    body: JSON.stringify({ code: 'PGRST000', details: 'connection to server failed: Connection refused', hint: null, message: 'Database connection error. Retrying the connection.' }),
  },
  'gateway-503': { status: 503, body: 'upstream connect error or disconnect/reset before headers. reset reason: connection failure' },
  'gateway-504': { status: 504, body: JSON.stringify({ message: 'The upstream server is timing out' }) },
  '429': { status: 429, body: JSON.stringify({ message: 'API rate limit exceeded' }), headers: { 'Retry-After': '1' } },
} as const;
