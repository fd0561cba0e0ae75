import type { Logger } from '../log.js';
import type { CronSchedule } from '../core/cron.js';
import { endEarlySignalHandler } from './early-signal.js';

export { CronSchedule } from '../core/cron.js';

/**
 * `SYNC_MODE=cron`: at every tick of the schedule, drain every stream once
 * (`run --once`: read until the sources have nothing more, commit, stop), then
 * wait for the next tick. A run that is still going when a tick passes simply
 * delays the next run. SIGINT/SIGTERM end the wait at once, or end the loop
 * after the run in progress (which stops gracefully on the same signal).
 */
export async function runOnSchedule(
  schedule: Pick<CronSchedule, 'expression' | 'next'>,
  runOnce: () => Promise<number>,
  log: Logger,
  /** Ends the loop like a signal does (tests, embedding). */
  cancel?: AbortSignal,
): Promise<number> {
  let stop: () => void = () => {};
  let stopped = false;
  const onSignal = () => {
    stopped = true;
    stop();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  endEarlySignalHandler();
  cancel?.addEventListener('abort', onSignal);
  if (cancel?.aborted) stopped = true;
  try {
    while (!stopped) {
      const next = schedule.next(new Date());
      log.info({ cron: schedule.expression, next: next.toISOString() }, 'cdc-sync scheduled: waiting for the next run');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.max(0, next.getTime() - Date.now()));
        stop = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      if (stopped) break;
      const code = await runOnce();
      // A configuration that does not fit the databases will not fit at the next tick either.
      if (code === 2) return code;
      if (code !== 0) log.error({ exitCode: code }, 'scheduled run failed; trying again at the next tick');
    }
    return 0;
  } finally {
    cancel?.removeEventListener('abort', onSignal);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
