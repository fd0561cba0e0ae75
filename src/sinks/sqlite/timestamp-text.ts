import { instantMicros } from '../../core/timestamps.js';

const TIMESTAMP = /^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}(?::?\d{2})?)?$/;

/**
 * A timestamp as SQLite writes it itself: `YYYY-MM-DD HH:MM:SS`, or
 * `YYYY-MM-DD HH:MM:SS.SSS` when there is a fraction ("Time Values" formats 2
 * and 3 of https://www.sqlite.org/lang_datefunc.html; datetime() returns
 * `YYYY-MM-DD HH:MM:SS`). SQLite has no timestamp type, so applications
 * compare these columns as text (`WHERE t >= datetime('now', '-1 day')`), and
 * ISO text with a 'T' sorts after every value of its day written with a space.
 *
 * Text with a zone (`…+02:00`, `…Z`) is an instant: written in UTC, without a
 * suffix. Text without one keeps its wall-clock digits (a PostgreSQL
 * `timestamp`, or already UTC by convention). Anything else (a date alone,
 * `infinity`, BC dates) is returned unchanged.
 */
export function sqliteTimestamp(text: string): string {
  const m = TIMESTAMP.exec(text.trim());
  if (!m) return text;
  const [, date, time, digits = '', zone] = m;
  const seconds = zone ? utcSeconds(`${date}T${time}${zone}`) : `${date} ${time}`;
  return seconds === null ? text : `${seconds}${fraction(digits)}`;
}

/** `2024-01-02T03:04:05+02:00` → `2024-01-02 01:04:05`. Zones are whole minutes, so the fraction never changes. */
function utcSeconds(text: string): string | null {
  const micros = instantMicros(text);
  if (micros === null) return null;
  return new Date(Number(micros / 1000n)).toISOString().slice(0, 19).replace('T', ' ');
}

/**
 * `5` → `.500`, `123400` → `.1234`, `000` → nothing: one text per instant
 * (so an equal value is never written again), at least SQLite's milliseconds
 * (so text comparisons with strftime('%f') values hold), the microseconds
 * PostgreSQL has only when they are there.
 */
function fraction(digits: string): string {
  const significant = digits.replace(/0+$/, '');
  return significant === '' ? '' : `.${significant.padEnd(3, '0')}`;
}
