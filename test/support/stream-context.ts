import { Registry } from 'prom-client';
import { pino } from 'pino';
import { createMetrics, type Metrics } from '../../src/metrics/metrics.js';
import type { StreamContext } from '../../src/streams/context.js';

/** A StreamContext for driving a source or sink directly, with a fresh registry. */
export function testContext(stream = 'test'): StreamContext & {
  metrics: Metrics;
  controller: AbortController;
  connected: Record<string, boolean>;
  problems: string[];
  retries: { part: string; error: string; attempt: number }[];
} {
  const controller = new AbortController();
  const connected: Record<string, boolean> = {};
  const metrics = createMetrics(new Registry());
  return {
    stream,
    direction: 'forward',
    log: pino({ level: 'silent' }),
    metrics,
    stopping: controller.signal,
    controller,
    connected,
    problems: [] as string[],
    retries: [],
    retrying(part, error, attempt) {
      this.retries.push({ part, error: error.message, attempt });
      metrics.retries.inc({ stream, direction: 'forward' });
    },
    reportProblem(message) {
      this.problems.push(message);
    },
    setConnected(part, up) {
      connected[part] = up;
    },
  };
}
