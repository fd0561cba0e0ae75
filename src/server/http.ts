import Fastify, { type FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';
import type { StreamStatus } from '../streams/stream.js';

export interface HttpOptions {
  registry: Registry;
  streams: () => StreamStatus[];
}

/**
 * One server for everything an operator or Prometheus asks: `/metrics`,
 * `/healthz` (the process answers) and `/readyz` (every stream connected and
 * moving; 503 with the reasons otherwise, so a load balancer or Kubernetes
 * can act on it).
 */
export function createHttpServer(options: HttpOptions): FastifyInstance {
  const app = Fastify({ logger: false, bodyLimit: 1024 * 1024 });

  app.get('/metrics', async (_request, reply) => {
    reply.header('content-type', options.registry.contentType);
    return options.registry.metrics();
  });

  app.get('/healthz', async () => ({ status: 'ok' }));

  app.get('/readyz', async (_request, reply) => {
    const streams = options.streams();
    const problems = streams.filter((s) => !s.connected || s.state !== 'running').map((s) => ({ stream: s.name, state: s.state, connected: s.connected, lastError: s.lastError }));
    reply.code(problems.length === 0 ? 200 : 503);
    return { ready: problems.length === 0, streams: problems.length === 0 ? streams.map((s) => s.name) : problems };
  });

  return app;
}
