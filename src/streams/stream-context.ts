import type { Logger } from '../log.js';
import type { StreamContext } from './context.js';
import { StreamHealth } from './stream-health.js';
import type { StreamParts } from './stream-parts.js';
import type { StatusCounters } from './stream-status.js';

/** The stream's watch over its source and sink; `inFlight`: batches being applied now. */
export function streamHealth(
  parts: StreamParts,
  labels: { stream: string; direction: string },
  log: Logger,
  stopping: AbortSignal,
  counters: StatusCounters,
  inFlight: () => number,
): StreamHealth {
  const { config, metrics } = parts;
  return new StreamHealth({
    labels,
    metrics,
    log,
    retry: config.retry,
    timeoutMs: config.liveness.timeoutMs,
    sinkUrl: config.sink.url,
    sink: parts.sink,
    inFlight,
    stopping,
    problem: (message) => (counters.lastError = message),
  });
}

/** What the stream hands its source and sink: their connections and retries go to `health`, their problems to the status. */
export function streamContext(parts: StreamParts, log: Logger, stopping: AbortSignal, health: StreamHealth, counters: StatusCounters, idle: () => void): StreamContext {
  const { config, metrics } = parts;
  return {
    stream: config.name,
    direction: config.direction,
    log,
    metrics,
    stopping,
    retrying: (part, error, attempt) => health.retrying(part, error, attempt),
    reportProblem: (message) => {
      counters.lastError = message;
      if (!counters.problems.includes(message)) counters.problems.push(message);
      log.error({ err: message }, 'stream problem');
    },
    idle,
    setConnected: (part, up) => health.setConnected(part, up),
  };
}
