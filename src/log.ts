import { destination, pino, stdTimeFunctions, type Logger } from 'pino';

export type { Logger };

/** JSON logs on stderr; stdout stays free for command output (init-sql, status). */
export function createLogger(level = 'info'): Logger {
  return pino({ level, base: { app: 'cdc-sync' }, timestamp: stdTimeFunctions.isoTime }, destination(2));
}
