import { ConfigError, errorMessage, type CdcSyncError } from '../../core/errors.js';
import type { PostgrestFailure } from './errors.js';
import type { OpenApiDocument } from './introspect.js';

/** The project's REST API root (PostgREST behind Supabase's gateway). */
export function restUrlOf(projectUrl: string): string {
  return new URL('rest/v1/', projectUrl.endsWith('/') ? projectUrl : `${projectUrl}/`).href;
}

/**
 * The OpenAPI root of one schema (`GET /rest/v1/` with `Accept-Profile`).
 * supabase-js has no call for it, so this is a plain fetch with the headers
 * supabase-js would send (supabase/supabase-js: packages/core/supabase-js/src/lib/fetch.ts).
 */
export async function readDefinitions(
  restUrl: string,
  key: string,
  timeoutMs: number,
  schema: string,
  path: string,
  fail: (failure: PostgrestFailure) => CdcSyncError,
  keyPath = 'sink.key',
): Promise<OpenApiDocument> {
  let response: Response;
  try {
    response = await fetch(restUrl, {
      headers: {
        apikey: key,
        Authorization: `Bearer ${key}`,
        'Accept-Profile': schema,
        Accept: 'application/openapi+json, application/json',
      },
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (error) {
    const cause = (error as { cause?: { code?: string; message?: string } }).cause;
    throw fail({ status: 0, message: errorMessage(error), details: cause ? `${cause.message ?? ''} (${cause.code ?? ''})` : null });
  }
  const text = await response.text();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = { message: text };
  }
  if (response.ok) return body as OpenApiDocument;
  const failure = { ...(body as Omit<PostgrestFailure, 'status'>), status: response.status };
  if (response.status === 401 || response.status === 403) {
    throw new ConfigError(`${keyPath}: the Supabase REST API refused the key (${response.status} ${failure.message ?? ''}); cdc-sync needs the project's service-role (secret) key`);
  }
  if (failure.code === 'PGRST106' || failure.code === 'PGRST126') {
    throw new ConfigError(`${path}: the Supabase REST API cannot describe schema "${schema}" (${failure.code}: ${failure.message ?? ''} ${failure.hint ?? ''})`);
  }
  throw fail(failure);
}
