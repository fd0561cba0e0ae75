import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { knownMetricNames, loadRules, promtool, RULES_FILE, RULES_TEST_FILE, unknownNames } from './support.js';

/**
 * grafana/alerts/cdc-sync.rules.yml: promtool accepts it, its promtool unit
 * tests pass, and they make every rule both fire and stay quiet.
 * promtool comes with Debian's `prometheus` package (.ci/run installs it).
 */
interface AlertTest {
  eval_time: string;
  alertname: string;
  exp_alerts?: { exp_labels?: Record<string, string>; exp_annotations?: Record<string, string> }[];
}
interface RuleTests {
  rule_files: string[];
  tests: { name: string; alert_rule_test?: AlertTest[] }[];
}

const EXPECTED_ALERTS = [
  'CdcSyncChangesFailed',
  'CdcSyncLagHigh',
  'CdcSyncStalled',
  'CdcSyncDisconnected',
  'CdcSyncDown',
  'CdcSyncRetentionAtRisk',
];

describe('Prometheus alert rules', () => {
  const rules = loadRules();

  it('promtool check rules accepts the rule file (lint included)', () => {
    const { status, output } = promtool(['check', 'rules', RULES_FILE]);
    expect(output).toContain('SUCCESS');
    expect(status, output).toBe(0);
  });

  it('promtool test rules passes', () => {
    const { status, output } = promtool(['test', 'rules', RULES_TEST_FILE]);
    expect(status, output).toBe(0);
    expect(output).toContain('SUCCESS');
  });

  it('has the alerts operators rely on, each with a severity, a summary and a description', () => {
    expect([...new Set(rules.map((r) => r.alert))].sort()).toEqual([...EXPECTED_ALERTS].sort());
    const failed = rules.find((r) => r.alert === 'CdcSyncChangesFailed')!;
    expect(failed.expr).toBe('increase(cdc_sync_events_failed_total[5m]) > 0');
    expect(rules.find((r) => r.alert === 'CdcSyncDown')!.expr).toBe('up{job="cdc-sync"} == 0');
    for (const rule of rules) {
      expect(['warning', 'critical'], rule.alert).toContain(rule.labels.severity);
      expect(rule.annotations.summary?.length, rule.alert).toBeGreaterThan(10);
      expect(rule.annotations.description?.length, rule.alert).toBeGreaterThan(100);
    }
    // The description tells the operator where the failed changes are and how to put them back.
    expect(failed.annotations.description).toContain('cdc_sync.dead_letters');
    expect(failed.annotations.description).toContain('cdc-sync retry-failed');
    expect(rules.find((r) => r.expr.includes('source_gap'))!.annotations.description).toContain('cdc-sync snapshot --stream');
  });

  it('reads only metrics cdc-sync exports', async () => {
    const { all } = await knownMetricNames();
    expect(rules.flatMap((r) => unknownNames(r.expr, all).map((n) => `${r.alert}: ${n}`))).toEqual([]);
  });

  it('every rule has a unit test where it fires and one where it does not', () => {
    const doc = parse(readFileSync(RULES_TEST_FILE, 'utf8')) as RuleTests;
    expect(doc.rule_files).toEqual(['cdc-sync.rules.yml']);
    const checks = doc.tests.flatMap((t) => t.alert_rule_test ?? []);
    for (const rule of rules) {
      const own = checks.filter((c) => c.alertname === rule.alert);
      // Fires: an expected alert carrying this rule's own labels (the RetentionAtRisk rules differ by "risk").
      const fires = own.some((c) => (c.exp_alerts ?? []).some((a) => Object.entries(rule.labels).every(([k, v]) => a.exp_labels?.[k] === v)));
      expect(fires, `${rule.alert} ${JSON.stringify(rule.labels)} fires in a test`).toBe(true);
      expect(own.some((c) => (c.exp_alerts ?? []).length === 0), `${rule.alert} stays quiet in a test`).toBe(true);
    }
  });
});
