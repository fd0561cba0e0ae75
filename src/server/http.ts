import Fastify, { type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { errorMessage } from '../core/errors.js';
import type { StreamStatus } from '../streams/stream-status.js';
import { bearerMatches } from './auth.js';
import { registerControlApi, type ControlOptions } from './control.js';
import { registerWebhook, type WebhookOptions } from './webhook.js';

export interface HttpOptions {
  registry: Registry;
  streams: () => StreamStatus[];
  /** Read now: every stream's source polls at once. */
  wake: () => void;
  /** Bearer token of /api/sync/*; when unset only the harmless queue-notify answers. */
  token?: string | undefined;
  webhook?: WebhookOptions;
  /** status, trigger, retry-failed, logs (off without `token`). */
  control?: Omit<ControlOptions, 'token' | 'registry' | 'streams'>;
  /** Where a request that failed inside cdc-sync is logged (the answer says only 500 and the message). */
  log?: Pick<Logger, 'error'>;
}

/**
 * One server for everything an operator or Prometheus asks: `/metrics`,
 * `/healthz` (the process answers) and `/readyz` (every stream connected and
 * moving; 503 with the reasons otherwise, so a load balancer or Kubernetes
 * can act on it).
 */
export function createHttpServer(options: HttpOptions): FastifyInstance {
  const app = Fastify({ logger: false, bodyLimit: 1024 * 1024 });

  // Fastify's own refusals (malformed JSON, a body too large) keep their 4xx; anything else is a fault of ours,
  // logged (fastify's logger is off) and answered with its message, which the CLI prints.
  app.setErrorHandler((error, request, reply) => {
    const code = (error as { statusCode?: unknown }).statusCode;
    const status = typeof code === 'number' && code >= 400 && code < 500 ? code : 500;
    if (status === 500) options.log?.error({ err: errorMessage(error), method: request.method, route: request.routeOptions.url }, 'HTTP request failed');
    return reply.code(status).send({ error: errorMessage(error) });
  });

  app.get('/metrics', async (_request, reply) => {
    reply.header('content-type', options.registry.contentType);
    return options.registry.metrics();
  });

  app.get('/healthz', async () => ({ status: 'ok' }));

  app.get('/readyz', async (_request, reply) => {
    const streams = options.streams();
    const problems = streams
      .filter((s) => !s.connected || s.state !== 'running' || s.problems.length > 0)
      .map((s) => ({ stream: s.name, state: s.state, connected: s.connected, lastError: s.lastError, problems: s.problems }));
    reply.code(problems.length === 0 ? 200 : 503);
    return { ready: problems.length === 0, streams: problems.length === 0 ? streams.map((s) => s.name) : problems };
  });

  // The older scripts' SQL Server trigger calls this after writing SyncQueue
  // rows. It only makes the readers poll now, so it needs no token unless one
  // is configured.
  app.post('/api/sync/queue-notify', async (request, reply) => {
    if (options.token && !bearerMatches(request.headers.authorization, options.token)) {
      reply.code(request.headers.authorization ? 403 : 401);
      return { error: 'a valid bearer token is required' };
    }
    options.wake();
    return { success: true, message: 'queue read triggered' };
  });

  if (options.control) registerControlApi(app, { ...options.control, token: options.token, registry: options.registry, streams: options.streams });
  if (options.webhook) registerWebhook(app, options.webhook);

  return app;
}

