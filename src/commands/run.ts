import { Registry } from 'prom-client';
import { loadConfigFile } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { ConfigError, errorMessage } from '../core/errors.js';
import { createLogger, type Logger } from '../log.js';
import { createMetrics, type Metrics } from '../metrics/metrics.js';
import { createHttpServer } from '../server/http.js';
import { webhookRow } from '../server/webhook.js';
import { buildStreams } from '../streams/build.js';
import { configWarnings } from '../config/warnings.js';
import { BatchLog } from '../control/batch-log.js';
import { controller } from '../control/controller.js';
import { CronSchedule, runOnSchedule } from './schedule.js';
import { guardProcess } from './process-guard.js';
import { endEarlySignalHandler } from './early-signal.js';

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_CONFIG = 2;

/**
 * Runs every configured stream and the HTTP server until SIGINT/SIGTERM.
 * The first signal stops reading and lets each stream finish and checkpoint
 * its batch in flight (up to `shutdown.timeoutMs`); a second signal exits at once.
 */
export async function runCommand(options: { config: string; once?: boolean }): Promise<number> {
  const config = loadConfigFile(options.config);
  if (!options.once && config.schedule) {
    // schedule / SYNC_MODE=cron: a `--once` run at every tick. Each run reads the file again, so edits apply from the next tick.
    const schedule = new CronSchedule(config.schedule.cron);
    return runOnSchedule(schedule, () => runConfig(loadConfigFile(options.config), { once: true }), createLogger(config.log.level));
  }
  return runConfig(config, { once: options.once ?? false });
}

/** What `runConfig` hands to a caller that runs beside the streams (the demo's writer and progress line). */
export interface RunningProcess {
  metrics: Metrics;
  port: number | null;
  stop(reason: string): void;
}

export interface RunOptions {
  once?: boolean;
  log?: Logger;
  /** Called once the streams run and the HTTP server listens. */
  started?: (running: RunningProcess) => void;
  /** Called when stopping begins (first signal or a failed stream). */
  stopping?: () => void;
  /** Runs before the streams are told to stop, within shutdown.timeoutMs (the demo lets the last changes arrive). */
  beforeStop?: () => Promise<void>;
}

export async function runConfig(config: Config, options: RunOptions = {}): Promise<number> {
  const log = options.log ?? createLogger(config.log.level);
  const metrics = createMetrics(new Registry(), { defaultMetrics: true });
  const batchLog = new BatchLog(200);
  // --once (cron, Task Scheduler): each stream stops when its source has nothing more to read.
  const once = options.once ?? false;
  const streams = buildStreams(config, metrics, log, { batchLog, once });
  for (const warning of configWarnings(config)) log.warn({ path: warning.path }, warning.message);
  const control = controller(config, streams);
  const server = createHttpServer({
    registry: metrics.registry,
    streams: () => streams.map((s) => s.status()),
    wake: () => streams.forEach((s) => s.wake()),
    token: config.http.token,
    log,
    control: { trigger: control.trigger, retryFailed: control.retryFailed, snapshot: control.snapshot, logs: (limit) => batchLog.recent(limit) },
    webhook: {
      secret: config.http.webhookSecret,
      header: config.http.webhookHeader,
      bodyLimit: config.http.webhookBodyLimit,
      receive: (payload) => {
        const change = {
          schema: payload.schema,
          table: payload.table,
          op: ({ INSERT: 'insert', UPDATE: 'update', DELETE: 'delete' } as const)[payload.type],
          record: webhookRow(payload.record),
          oldRecord: webhookRow(payload.old_record),
        };
        return streams.map((s) => s.receive(change)).some(Boolean);
      },
    },
  });
  let stopping = false;
  let deadline: NodeJS.Timeout | undefined;
  const stopAll = (reason: string) => {
    if (stopping) return;
    stopping = true;
    deadline = setTimeout(() => {
      log.error({ timeoutMs: config.shutdown.timeoutMs }, 'streams did not stop in time; exiting');
      process.exit(EXIT_FAILURE);
    }, config.shutdown.timeoutMs).unref();
    void (async () => {
      await options.beforeStop?.().catch((error: unknown) => log.warn({ err: errorMessage(error) }, 'before-stop step failed'));
      options.stopping?.();
      log.info({ reason }, 'stopping: finishing batches in flight');
      for (const stream of streams) stream.stop();
    })();
  };
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(EXIT_FAILURE);
    }
    stopAll(signal);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  endEarlySignalHandler();
  const unguard = guardProcess(log, (error) => {
    if (!stopping) for (const stream of streams) stream.reopen(error);
  });
  const cleanUp = () => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    unguard();
  };

  // The streams start first: their connections are under way while the HTTP server gets ready.
  let exitCode = EXIT_OK;
  const running = Promise.all(
    streams.map((stream) =>
      stream
        .run()
        .catch((error: unknown) => {
          exitCode = error instanceof ConfigError ? EXIT_CONFIG : EXIT_FAILURE;
          // At start, the configuration is wrong and nothing runs. Later (a password changed, a database
          // dropped), this stream stops, shown as failed in /readyz and status, and the others go on.
          if (!stream.started) {
            log.fatal({ stream: stream.name, err: errorMessage(error) }, 'stream cannot run');
            stopAll('stream failed');
          } else {
            log.fatal({ stream: stream.name, err: errorMessage(error) }, 'stream stopped: fix the configuration or the database and restart cdc-sync');
          }
        }),
    ),
  );
  // A one-shot drain serves no HTTP: the port may belong to a long-running process.
  try {
    if (!once) await server.listen({ port: config.http.port, host: config.http.host });
  } catch (error) {
    // The port is taken, say: nothing may run without its metrics and health checks.
    stopAll('HTTP server failed');
    await running;
    clearTimeout(deadline);
    cleanUp();
    throw error;
  }
  const address = once ? null : server.server.address();
  log.info({ port: typeof address === 'object' ? address?.port : address, streams: streams.map((s) => s.name), once }, 'cdc-sync running');
  options.started?.({ metrics, port: typeof address === 'object' && address ? address.port : null, stop: stopAll });
  await running;
  // Stopped in time: a caller that goes on in this process (the demo, tests) must not be exited later.
  clearTimeout(deadline);
  await server.close();
  cleanUp();
  log.info({ exitCode }, 'stopped');
  return exitCode;
}
