import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { FAILURE_REASONS } from '../../src/core/errors.js';
import { createMetrics, initStreamSeries, OPS, SUPPRESS_REASONS } from '../../src/metrics/metrics.js';

/** Every metric name of DESIGN.md, without the prefix. */
const DESIGN_METRICS = [
  'events_captured_total',
  'events_applied_total',
  'events_failed_total',
  'events_suppressed_total',
  'retries_total',
  'batch_duration_seconds',
  'lag_seconds',
  'pending_events',
  'buffer_events',
  'buffer_capacity',
  'last_applied_timestamp_seconds',
  'connected',
];

/** Sample lines of `name` (histograms: its _bucket/_sum/_count) whose labels include every `labels` pair. */
function samples(text: string, name: string, labels: Record<string, string>): Array<{ line: string; value: number }> {
  return text
    .split('\n')
    .filter((line) => new RegExp(`^cdc_sync_${name}(_bucket|_sum|_count)?\\{`).test(line))
    .filter((line) => Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`)))
    .map((line) => ({ line, value: Number(line.slice(line.lastIndexOf(' ') + 1)) }));
}

describe('metrics', () => {
  it('shows every DESIGN.md metric for a stream at 0 once its series are initialised', async () => {
    const metrics = createMetrics(new Registry());
    initStreamSeries(metrics, 'clinic-to-cloud', 'forward', ['dbo.tblPatients']);
    const text = await metrics.registry.metrics();
    for (const name of DESIGN_METRICS) {
      expect(text).toContain(`# TYPE cdc_sync_${name} `);
      const found = samples(text, name, { stream: 'clinic-to-cloud', direction: 'forward' });
      expect(found.length, name).toBeGreaterThan(0);
      for (const s of found) expect(s.value, s.line).toBe(0);
    }
  });

  it('initialises a series for every table and op, failure reason and suppress reason', async () => {
    const metrics = createMetrics(new Registry());
    initStreamSeries(metrics, 's1', 'reverse', ['public.a', 'public.b']);
    const text = await metrics.registry.metrics();
    for (const table of ['public.a', 'public.b']) {
      for (const op of OPS) {
        expect(samples(text, 'events_captured_total', { stream: 's1', table, op })).toHaveLength(1);
        expect(samples(text, 'events_applied_total', { stream: 's1', table, op })).toHaveLength(1);
      }
      for (const reason of FAILURE_REASONS) expect(samples(text, 'events_failed_total', { stream: 's1', table, reason })).toHaveLength(1);
      for (const reason of SUPPRESS_REASONS) expect(samples(text, 'events_suppressed_total', { stream: 's1', table, reason })).toHaveLength(1);
    }
    expect(FAILURE_REASONS).toContain('constraint');
    expect(SUPPRESS_REASONS).toEqual(['no-op', 'origin', 'duplicate', 'stale', 'unknown-table']);
  });

  it('counts into the initialised series', async () => {
    const metrics = createMetrics(new Registry());
    initStreamSeries(metrics, 's1', 'forward', ['t']);
    metrics.applied.inc({ stream: 's1', direction: 'forward', table: 't', op: 'insert' }, 3);
    metrics.connected.set({ stream: 's1', direction: 'forward' }, 1);
    metrics.batchDuration.observe({ stream: 's1', direction: 'forward' }, 0.02);
    const text = await metrics.registry.metrics();
    expect(samples(text, 'events_applied_total', { table: 't', op: 'insert' })[0]!.value).toBe(3);
    expect(samples(text, 'events_applied_total', { table: 't', op: 'update' })[0]!.value).toBe(0);
    expect(samples(text, 'connected', { stream: 's1' })[0]!.value).toBe(1);
    expect(samples(text, 'batch_duration_seconds', { stream: 's1' }).find((s) => s.line.startsWith('cdc_sync_batch_duration_seconds_count'))!.value).toBe(1);
  });

  it('labels with stream, direction, table, op and reason only', async () => {
    const metrics = createMetrics(new Registry());
    initStreamSeries(metrics, 's1', 'forward', ['t']);
    const text = await metrics.registry.metrics();
    const labelNames = new Set(
      [...text.matchAll(/\{([^}]*)\}/g)].flatMap((m) => m[1]!.split(',').map((pair) => pair.slice(0, pair.indexOf('=')))),
    );
    expect([...labelNames].sort()).toEqual(['direction', 'le', 'op', 'reason', 'stream', 'table']);
  });

  it('keeps registries apart: a fresh Registry has no series of another', async () => {
    const first = createMetrics(new Registry());
    initStreamSeries(first, 'only-in-first', 'forward', ['t']);
    const second = createMetrics(new Registry());
    const text = await second.registry.metrics();
    expect(text).not.toContain('only-in-first');
    expect(samples(text, 'connected', {})).toEqual([]);
  });

  it('adds the default process metrics with the prefix when asked', async () => {
    const metrics = createMetrics(new Registry(), { defaultMetrics: true });
    expect(await metrics.registry.metrics()).toContain('cdc_sync_process_cpu_seconds_total');
  });
});
