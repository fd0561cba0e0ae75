import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Registry } from 'prom-client';
import { parse } from 'yaml';
import { createMetrics } from '../../src/metrics/metrics.js';

/**
 * Metric names a PromQL expression reads. Not a PromQL parser: it drops what
 * cannot be a metric name (strings, label matchers, ranges, grouping label
 * lists, Grafana variables, numbers, keywords, function names) and returns the
 * identifiers left. Good enough for the dashboard's and the alert rules' own
 * expressions, which the Prometheus tests also run for real.
 */
export function metricNames(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
    .replace(/\boffset\s+-?\w+/g, ' ')
    .replace(/\$\{?\w+\}?/g, ' ');
  const keywords = new Set(['and', 'or', 'unless', 'bool', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'offset', 'inf', 'nan']);
  const names = new Set<string>();
  const token = /[A-Za-z_:][A-Za-z0-9_:]*|\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g;
  for (let m = token.exec(stripped); m; m = token.exec(stripped)) {
    const word = m[0];
    if (/^\d/.test(word) || keywords.has(word.toLowerCase())) continue;
    if (/^\s*\(/.test(stripped.slice(m.index + word.length))) continue; // a function call
    names.add(word);
  }
  return [...names];
}

/** Metrics cdc-sync may not export yet; panels and alerts on them simply show no data. */
export const NOT_YET_EXPORTED = ['cdc_sync_conflicts_total', 'cdc_sync_source_retained_bytes'];

/**
 * Every series name cdc-sync's /metrics can have: src/metrics/metrics.ts with
 * the default process metrics, histogram series included; plus Prometheus's own `up`.
 */
export async function knownMetricNames(): Promise<{ all: Set<string>; own: string[] }> {
  const names = new Set<string>(['up']);
  const withDefaults = await createMetrics(new Registry(), { defaultMetrics: true }).registry.getMetricsAsJSON();
  for (const metric of withDefaults) {
    names.add(metric.name);
    if (String(metric.type) === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) names.add(metric.name + suffix);
  }
  const own = (await createMetrics(new Registry()).registry.getMetricsAsJSON()).map((m) => m.name);
  return { all: names, own };
}

/** Names an expression reads that cdc-sync does not export (allow-listed ones excepted). */
export function unknownNames(expr: string, known: Set<string>): string[] {
  return metricNames(expr).filter((name) => !known.has(name) && !NOT_YET_EXPORTED.includes(name));
}

export interface Target {
  expr: string;
  datasource?: { uid?: string };
}
export interface Panel {
  id: number;
  type: string;
  title: string;
  datasource?: { type?: string; uid?: string };
  targets?: Target[];
  gridPos: { x: number; y: number; w: number; h: number };
}
export interface Variable {
  name: string;
  type: string;
  query: string;
  multi?: boolean;
  includeAll?: boolean;
  allValue?: string;
}
export interface Dashboard {
  uid: string;
  title: string;
  panels: Panel[];
  templating: { list: Variable[] };
}

export function loadDashboard(): Dashboard {
  return JSON.parse(readFileSync('grafana/dashboards/cdc-sync.json', 'utf8')) as Dashboard;
}

/** Every PromQL expression of the dashboard, with its panel's title. */
export function dashboardExpressions(dashboard: Dashboard): { panel: string; expr: string }[] {
  return dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, expr: t.expr })));
}

export interface AlertRule {
  alert: string;
  expr: string;
  for?: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
}

export const RULES_FILE = 'grafana/alerts/cdc-sync.rules.yml';
export const RULES_TEST_FILE = 'grafana/alerts/cdc-sync.rules.test.yml';

export function loadRules(): AlertRule[] {
  const doc = parse(readFileSync(RULES_FILE, 'utf8')) as { groups: { name: string; rules: AlertRule[] }[] };
  return doc.groups.flatMap((g) => g.rules);
}

/** Runs promtool (Debian's `prometheus` package; .ci/run installs it). */
export function promtool(args: string[], input?: string): { status: number | null; output: string } {
  const result = spawnSync('promtool', args, { encoding: 'utf8', input, timeout: 60_000 });
  if (result.error) throw new Error(`cannot run promtool (apt-get install -y prometheus): ${result.error.message}`);
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}
