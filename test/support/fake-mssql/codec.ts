/**
 * Values cross the HTTP bridge between a test and the CLI it runs exactly
 * as the mssql driver hands them out: Buffers, Dates and bigints keep their
 * JavaScript type on the other side.
 */
export function encode(value: unknown): unknown {
  if (Buffer.isBuffer(value) || value instanceof Uint8Array) return { $b: Buffer.from(value).toString('base64') };
  if (value instanceof Date) return { $d: value.toISOString() };
  if (typeof value === 'bigint') return { $n: value.toString() };
  if (Array.isArray(value)) return value.map(encode);
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, encode(v)]));
  return value;
}

export function decode(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(decode);
  if (value && typeof value === 'object') {
    const o = value as Record<string, unknown>;
    if (typeof o.$b === 'string') return Buffer.from(o.$b, 'base64');
    if (typeof o.$d === 'string') return new Date(o.$d);
    if (typeof o.$n === 'string') return BigInt(o.$n);
    return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, decode(v)]));
  }
  return value;
}
