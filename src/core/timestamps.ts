/**
 * The instant of a PostgreSQL timestamp text in microseconds since 1970, so
 * the forms Realtime (`2024-01-02 03:04:05.123456+00`) and PostgREST
 * (`2024-01-02T03:04:05.123456+00:00`) write compare equal. Null when the
 * text is not a timestamp.
 */
export function instantMicros(text: unknown): bigint | null {
  if (typeof text !== 'string') return null;
  const m = /^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(?:\.(\d{1,6}))?(Z|[+-]\d{2}(?::?\d{2})?)?$/.exec(text.trim());
  if (!m) return null;
  const seconds = Date.parse(`${m[1]}T${m[2]}Z`);
  if (Number.isNaN(seconds)) return null;
  const micros = BigInt((m[3] ?? '').padEnd(6, '0'));
  let offset = 0n;
  if (m[4] && m[4] !== 'Z') {
    const sign = m[4].startsWith('-') ? -1n : 1n;
    const digits = m[4].slice(1).replace(':', '');
    offset = sign * (BigInt(digits.slice(0, 2)) * 3600n + BigInt(digits.slice(2, 4) || '0') * 60n) * 1_000_000n;
  }
  return BigInt(seconds) * 1000n + micros - offset;
}

/**
 * `2024-01-02T03:04:05.123456+02:00` → `2024-01-02T01:04:05.123456`: the UTC
 * wall-clock of a timestamp with zone, all fraction digits kept, for columns
 * that store no zone (SQL Server datetime2). Text without a zone is returned
 * as it is.
 */
export function utcWallClock(text: string): string {
  if (!/([+-]\d{2}(:?\d{2})?|Z)$/.test(text.trim())) return text;
  const micros = instantMicros(text);
  if (micros === null) return text;
  const ms = Number(micros / 1000n);
  const fraction = (micros % 1_000_000n + 1_000_000n) % 1_000_000n;
  return `${new Date(ms).toISOString().slice(0, 19)}.${fraction.toString().padStart(6, '0')}`;
}
