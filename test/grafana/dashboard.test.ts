import { describe, expect, it } from 'vitest';
import { dashboardExpressions, knownMetricNames, loadDashboard, metricNames, NOT_YET_EXPORTED, unknownNames } from './support.js';

/**
 * grafana/dashboards/cdc-sync.json reads only metrics cdc-sync exports
 * (src/metrics/metrics.ts), covers every one of them, and is a dashboard
 * Grafana can provision. test/grafana/prometheus-scrape.test.ts runs its
 * expressions against a real Prometheus.
 */
describe('grafana/dashboards/cdc-sync.json', () => {
  const dashboard = loadDashboard();
  const panels = dashboard.panels.filter((p) => p.type !== 'row');

  it('reads only metrics cdc-sync exports (or up), and uses every cdc-sync metric', async () => {
    const { all, own } = await knownMetricNames();
    const unknown = dashboardExpressions(dashboard).flatMap(({ panel, expr }) => unknownNames(expr, all).map((name) => `${panel}: ${name}`));
    expect(unknown).toEqual([]);

    const used = new Set(dashboardExpressions(dashboard).flatMap(({ expr }) => metricNames(expr)));
    const histogramSeries = (name: string) => ['', '_bucket', '_sum', '_count'].some((s) => used.has(name + s));
    expect(own.filter((name) => !histogramSeries(name)), 'metrics of src/metrics/metrics.ts without a panel').toEqual([]);
    // The not-yet-exported metrics have their panels ready.
    for (const name of NOT_YET_EXPORTED) expect(used.has(name), name).toBe(true);
  });

  it('has stream and direction selectors from cdc_sync_connected, applied to every cdc-sync query', async () => {
    const { all } = await knownMetricNames();
    const variables = Object.fromEntries(dashboard.templating.list.map((v) => [v.name, v]));
    expect(variables.datasource).toMatchObject({ type: 'datasource', query: 'prometheus' });
    expect(variables.stream).toMatchObject({ type: 'query', query: 'label_values(cdc_sync_connected, stream)', multi: true, includeAll: true, allValue: '.*' });
    expect(variables.direction).toMatchObject({ type: 'query', multi: true, includeAll: true, allValue: '.*' });
    expect(variables.direction!.query).toMatch(/^label_values\(cdc_sync_connected\{stream=~"\$stream"\}, direction\)$/);
    for (const v of dashboard.templating.list.filter((x) => x.type === 'query')) {
      const selector = /^label_values\(([^,]+),/.exec(v.query)?.[1] ?? '';
      expect(unknownNames(selector, all), v.name).toEqual([]);
    }
    // Series with stream labels are filtered by both selectors (process metrics and up have none).
    for (const { panel, expr } of dashboardExpressions(dashboard)) {
      const streamMetrics = metricNames(expr).filter((n) => n.startsWith('cdc_sync_') && !/^cdc_sync_(process|nodejs)_/.test(n));
      for (const name of streamMetrics) {
        const uses = expr.split(name).slice(1);
        for (const after of uses) expect(after, `${panel}: ${name}`).toMatch(/^(_bucket|_sum|_count)?\{stream=~"\$stream", direction=~"\$direction"\}/);
      }
    }
  });

  it('has the panels the operators need', () => {
    const titles = panels.map((p) => p.title);
    for (const title of [
      'Changes captured per second',
      'Changes applied per second',
      'Lag',
      'Pending backlog',
      'Failed changes per second',
      'Failed changes (time range)',
      'Dead letters (since start)',
      'Retries per second',
      'Batch duration',
      'Buffer fill',
      'Connected',
      'Suppressed changes per second',
      'Conflicts per second',
      'Source gap',
      'CDC retention headroom',
      'WAL retained',
      'Catch-up runs',
      'Catch-up rows per second',
    ]) {
      expect(titles).toContain(title);
    }
    const expressions = dashboardExpressions(dashboard).map((e) => e.expr);
    for (const q of [0.5, 0.95, 0.99]) {
      expect(expressions.some((e) => e.startsWith(`histogram_quantile(${q}, `) && e.includes('cdc_sync_batch_duration_seconds_bucket'))).toBe(true);
    }
    expect(expressions.some((e) => /sum by \(stream, table, op\) \(rate\(cdc_sync_events_applied_total/.test(e))).toBe(true);
    expect(expressions.some((e) => /cdc_sync_buffer_events.*\/.*cdc_sync_buffer_capacity/.test(e))).toBe(true);
  });

  it('is well-formed for provisioning: unique ids, the datasource variable everywhere, no overlapping panels', () => {
    expect(dashboard.uid).toBe('cdc-sync');
    const ids = dashboard.panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const p of panels) {
      expect(p.datasource, p.title).toEqual({ type: 'prometheus', uid: '${datasource}' });
      expect(p.targets?.length, p.title).toBeGreaterThan(0);
      for (const t of p.targets!) expect(t.datasource?.uid, p.title).toBe('${datasource}');
    }
    const cells = new Map<string, string>();
    for (const p of dashboard.panels) {
      const { x, y, w, h } = p.gridPos;
      expect(x + w, p.title).toBeLessThanOrEqual(24);
      for (let i = x; i < x + w; i++) {
        for (let j = y; j < y + h; j++) {
          const cell = `${i},${j}`;
          expect(cells.get(cell), `${p.title} overlaps`).toBeUndefined();
          cells.set(cell, p.title);
        }
      }
    }
  });
});
