import type { Config } from '../config/schema.js';

/**
 * How the commands reach a running cdc-sync: its control API, at --url or
 * at the configured http.port.
 */

/** A command failed at run time (exit 1), with a message for the operator. */
export class CommandError extends Error {
  override name = 'CommandError';
}

export interface ProcessOptions {
  config: string;
  url?: string;
  token?: string;
}

function processUrl(config: Config, options: ProcessOptions): string | null {
  if (options.url) return options.url.replace(/\/+$/, '');
  if (config.http.port === 0) return null;
  const host = ['0.0.0.0', '::', ''].includes(config.http.host) ? '127.0.0.1' : config.http.host;
  return `http://${host.includes(':') ? `[${host}]` : host}:${config.http.port}`;
}

/** The base URL of a running cdc-sync when its /healthz answers, else null. */
export async function runningProcess(config: Config, options: ProcessOptions): Promise<string | null> {
  const url = processUrl(config, options);
  if (!url) return null;
  try {
    const response = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1500) });
    return response.ok ? url : null;
  } catch {
    return null;
  }
}

export async function ask<T>(url: string, path: string, token: string | undefined, body?: unknown): Promise<T> {
  const response = await fetch(`${url}${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    signal: AbortSignal.timeout(120_000),
  });
  const answer = (await response.json().catch(() => ({}))) as T & { error?: string };
  if (!response.ok) throw new CommandError(`the running process at ${url} answered ${response.status}: ${answer.error ?? response.statusText}`);
  return answer;
}

