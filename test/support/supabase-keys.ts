/**
 * The API keys of the stand-in Supabase project and the database role each
 * stands for. On Supabase the legacy keys are JWTs whose `role` claim names
 * the role (anon, service_role); a signed-in portal user's access token says
 * `authenticated`; the new keys (sb_publishable_…, sb_secret_…) are turned
 * into such a JWT by the API gateway
 * (https://supabase.com/docs/guides/api/api-keys). The stand-ins do not sign
 * or verify tokens: they look the role up here, the way PostgREST and
 * Realtime read the verified claim.
 */
export const SERVICE_ROLE_KEY = 'test-service-role-key';
export const ANON_KEY = 'test-anon-key';
/** A portal user's access token (Authorization: Bearer …, with the anon key as apikey). */
export const USER_TOKEN = 'test-user-token';

export type ApiRole = 'anon' | 'authenticated' | 'service_role';

const ROLES: Record<string, ApiRole> = { [SERVICE_ROLE_KEY]: 'service_role', [ANON_KEY]: 'anon', [USER_TOKEN]: 'authenticated' };

/** The role a token stands for, or undefined for a token the project did not issue. */
export function roleOfToken(token: string, serviceRoleKey = SERVICE_ROLE_KEY): ApiRole | undefined {
  if (token === serviceRoleKey) return 'service_role';
  return ROLES[token];
}

/** Keys that may be sent as `apikey` (a user token never is). */
export function isProjectKey(key: string, serviceRoleKey = SERVICE_ROLE_KEY): boolean {
  return key === serviceRoleKey || key === ANON_KEY;
}
