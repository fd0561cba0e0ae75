import type { Metrics } from '../metrics/metrics.js';

interface Sample {
  labels: Record<string, string | number>;
  value: number;
}

async function sum(metric: { get(): Promise<{ values: Sample[] }> }, stream: string): Promise<number> {
  const { values } = await metric.get();
  return values.filter((v) => v.labels.stream === stream).reduce((total, v) => total + v.value, 0);
}

/** One line of what the demo does: changes each way, lag, failures. */
export async function progressLine(metrics: Metrics): Promise<string> {
  const out = await sum(metrics.applied, 'clinic-to-cloud');
  const back = await sum(metrics.applied, 'cloud-to-clinic');
  const failed = (await sum(metrics.failed, 'clinic-to-cloud')) + (await sum(metrics.failed, 'cloud-to-clinic'));
  const lag = Math.max(await sum(metrics.lag, 'clinic-to-cloud'), await sum(metrics.lag, 'cloud-to-clinic'));
  return `clinic → portal ${out} changes | portal → clinic ${back} changes | lag ${lag.toFixed(1)} s | failed ${failed}`;
}

/** Redraws the line in a terminal; elsewhere (logs, CI) prints one every few seconds. */
export function showProgress(metrics: Metrics, out: NodeJS.WriteStream = process.stdout): () => Promise<void> {
  const tty = Boolean(out.isTTY);
  let last = 0;
  const timer = setInterval(() => {
    void progressLine(metrics).then((line) => {
      if (tty) out.write(`\r${line}\u001b[K`);
      else if (Date.now() - last >= 5000) {
        last = Date.now();
        out.write(`${line}\n`);
      }
    });
  }, 1000);
  timer.unref();
  return async () => {
    clearInterval(timer);
    out.write(`${tty ? '\r' : ''}${await progressLine(metrics)}\u001b[K\n`);
  };
}
