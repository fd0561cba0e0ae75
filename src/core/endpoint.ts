/**
 * Where a URL points, without credentials, for messages and /readyz:
 * `host:port/database` for a server, the path for a file database.
 */
export function describeUrl(url: string): string {
  try {
    const u = new URL(url);
    if (!u.hostname) return `${u.protocol}${u.pathname}`;
    return `${u.hostname}${u.port ? `:${u.port}` : ''}${u.pathname}`;
  } catch {
    return 'the configured database';
  }
}
