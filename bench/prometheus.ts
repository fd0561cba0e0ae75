/**
 * Just enough of the Prometheus text format for the benchmark: sample lines
 * with their labels, counter sums and histogram quantiles.
 */

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

export function parseMetrics(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = LINE.exec(line);
    if (!match) continue;
    const labels: Record<string, string> = {};
    for (const [, key, value] of (match[2] ?? '').matchAll(LABEL)) labels[key!] = value!;
    const raw = match[3]!;
    const value = raw === '+Inf' ? Number.POSITIVE_INFINITY : raw === '-Inf' ? Number.NEGATIVE_INFINITY : Number(raw);
    samples.push({ name: match[1]!, labels, value });
  }
  return samples;
}

/** Sum of every series of one metric (all tables, ops, reasons). */
export function sum(samples: Sample[], name: string): number {
  return samples.filter((s) => s.name === name).reduce((total, s) => total + s.value, 0);
}

export interface Histogram {
  /** Upper bounds, ascending, the last one +Inf; cumulative counts. */
  buckets: Array<{ le: number; count: number }>;
  count: number;
  sum: number;
}

/** One histogram, all its series added up. */
export function histogram(samples: Sample[], name: string): Histogram {
  const byLe = new Map<number, number>();
  for (const s of samples) {
    if (s.name !== `${name}_bucket`) continue;
    const le = s.labels.le === '+Inf' ? Number.POSITIVE_INFINITY : Number(s.labels.le);
    byLe.set(le, (byLe.get(le) ?? 0) + s.value);
  }
  const buckets = [...byLe.entries()].sort((a, b) => a[0] - b[0]).map(([le, count]) => ({ le, count }));
  return { buckets, count: sum(samples, `${name}_count`), sum: sum(samples, `${name}_sum`) };
}

export interface Quantile {
  /** Linear interpolation inside the bucket, as PromQL's histogram_quantile does. */
  estimate: number;
  /** The bucket the quantile falls into: (lower, upper]. */
  lower: number;
  upper: number;
}

export function quantile(h: Histogram, q: number): Quantile | null {
  if (h.count === 0 || h.buckets.length === 0) return null;
  const rank = q * h.count;
  let previousLe = 0;
  let previousCount = 0;
  for (const bucket of h.buckets) {
    if (bucket.count >= rank) {
      if (!Number.isFinite(bucket.le)) {
        // Above the highest finite bound: PromQL answers that bound.
        return { estimate: previousLe, lower: previousLe, upper: bucket.le };
      }
      const inBucket = bucket.count - previousCount;
      const fraction = inBucket === 0 ? 1 : (rank - previousCount) / inBucket;
      return { estimate: previousLe + (bucket.le - previousLe) * fraction, lower: previousLe, upper: bucket.le };
    }
    previousLe = bucket.le;
    previousCount = bucket.count;
  }
  return null;
}
