import type { FastifyInstance } from 'fastify';
import * as z from 'zod';
import type { Row } from '../core/change-event.js';
import { secretMatches } from './auth.js';

/**
 * A Supabase Database Webhook payload.
 * https://supabase.com/docs/guides/database/webhooks#payload
 */
export const webhookPayload = z.strictObject({
  type: z.enum(['INSERT', 'UPDATE', 'DELETE']),
  table: z.string().min(1).max(128),
  schema: z.string().min(1).max(128),
  record: z.record(z.string(), z.unknown()).nullable(),
  old_record: z.record(z.string(), z.unknown()).nullable(),
});
export type WebhookPayload = z.infer<typeof webhookPayload>;

export interface WebhookOptions {
  secret: string | undefined;
  header: string;
  bodyLimit: number;
  /** Hands the change to the reverse stream(s) of that table; false when none takes it. */
  receive(payload: WebhookPayload): boolean;
}

/**
 * POST /api/sync/webhook: changes pushed by Supabase join the same reverse
 * stream as Realtime events (same buffer, de-duplication and checkpoint).
 * Off unless a shared secret is configured; compared in constant time.
 */
export function registerWebhook(app: FastifyInstance, options: WebhookOptions): void {
  app.post('/api/sync/webhook', { bodyLimit: options.bodyLimit }, async (request, reply) => {
    if (!options.secret) {
      reply.code(404);
      return { error: 'the webhook receiver is off: set http.webhookSecret' };
    }
    const presented = request.headers[options.header.toLowerCase()];
    if (typeof presented !== 'string' || !secretMatches(presented, options.secret)) {
      reply.code(presented === undefined ? 401 : 403);
      return { error: `a valid ${options.header} header is required` };
    }
    const parsed = webhookPayload.safeParse(request.body);
    if (!parsed.success) {
      reply.code(400);
      return { error: 'not a Supabase Database Webhook payload', issues: parsed.error.issues.map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`) };
    }
    const payload = parsed.data;
    if ((payload.type === 'DELETE' ? payload.old_record : payload.record) === null) {
      reply.code(400);
      return { error: `${payload.type} needs ${payload.type === 'DELETE' ? 'old_record' : 'record'}` };
    }
    if (!options.receive(payload)) {
      reply.code(422);
      return { error: `table ${payload.schema}.${payload.table} is not a table of any supabase-realtime stream` };
    }
    reply.code(202);
    return { accepted: true };
  });
}

export function webhookRow(value: Record<string, unknown> | null): Row | null {
  return value as Row | null;
}
