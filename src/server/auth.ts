import { timingSafeEqual } from 'node:crypto';

/** Constant-time comparison of a presented secret with the configured one. */
export function secretMatches(presented: string, expected: string): boolean {
  const a = Buffer.from(presented);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** `Authorization: Bearer <token>` in constant time. */
export function bearerMatches(header: string | undefined, token: string): boolean {
  return secretMatches(header?.startsWith('Bearer ') ? header.slice(7) : '', token);
}
