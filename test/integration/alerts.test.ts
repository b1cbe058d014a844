// The chart's alerts and dashboard, checked by Prometheus' own tools: `promtool check rules`
// on the rendered PrometheusRule, `promtool test rules` unit tests for every alert
// (test/alerts/rules.test.yaml), every dashboard expression parsed by promtool, and every
// metric they name exported by the operator (whose exposition `promtool check metrics` lints).
// Needs no cluster: helm and promtool are built by the run's global setup.
import { copyFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { dump, loadAll } from 'js-yaml';
import { beforeAll, describe, expect, it } from 'vitest';
import { createMetrics } from '../../src/observability/metrics.ts';
import { repoRoot } from '../cluster/controlplane.ts';
import { helmBinary } from '../helm/helm.ts';
import { promtoolBinary } from '../promtool/promtool.ts';
import { run } from '../kube.ts';

const chart = path.join(repoRoot, 'charts/service-user-operator');
const dir = mkdtempSync(path.join(tmpdir(), 'alerts-'));
let helm: string;
let promtool: string;

type Doc = { kind?: string; metadata?: { name?: string; labels?: Record<string, string> }; spec?: { groups?: RuleGroup[] }; data?: Record<string, string> };
interface RuleGroup {
  name: string;
  rules: { alert?: string; record?: string; expr: string; for?: string; labels?: Record<string, string>; annotations?: Record<string, string> }[];
}

async function render(...set: string[]): Promise<Doc[]> {
  const r = await run(helm, ['template', 'suo', chart, '--namespace', 'service-user-operator', '--kube-version', '1.34.4', ...set.flatMap((s) => ['--set', s])]);
  expect(r.err).toBe('');
  expect(r.ok).toBe(true);
  return (loadAll(r.out) as (Doc | null)[]).filter((d): d is Doc => !!d?.kind);
}

/** The metric names an expression reads (the operator's own: serviceuser_*). */
const metricNames = (expr: string) => [...new Set(expr.match(/\bserviceuser_[a-z_]+/g) ?? [])].map((m) => m.replace(/_(bucket|sum|count)$/, ''));

let groups: RuleGroup[];
let dashboard: { panels: { title: string; targets: { expr: string }[] }[]; templating: { list: { name: string }[] } };
let dashboardMap: Doc;

beforeAll(async () => {
  helm = helmBinary();
  promtool = promtoolBinary();
  const docs = await render('metrics.prometheusRule.enabled=true', 'grafana.dashboard.enabled=true');
  const rule = docs.find((d) => d.kind === 'PrometheusRule');
  expect(rule?.spec?.groups?.length).toBeGreaterThan(0);
  groups = rule!.spec!.groups!;
  dashboardMap = docs.find((d) => d.kind === 'ConfigMap' && d.metadata?.name?.endsWith('-dashboard'))!;
  expect(dashboardMap).toBeDefined();
  dashboard = JSON.parse(dashboardMap.data!['service-user-operator.json']!);
});

describe('alerts (PrometheusRule)', () => {
  it('pass promtool check rules', async () => {
    const file = path.join(dir, 'rules.yaml');
    writeFileSync(file, dump({ groups }));
    const r = await run(promtool, ['check', 'rules', file]);
    expect(r.err + r.out).toMatch(/SUCCESS: \d+ rules found/);
    expect(r.ok).toBe(true);
  });

  it('pass their promtool unit tests: each alert fires when it should and not before', async () => {
    writeFileSync(path.join(dir, 'rules.yaml'), dump({ groups }));
    copyFileSync(path.join(repoRoot, 'test/alerts/rules.test.yaml'), path.join(dir, 'rules.test.yaml'));
    const r = await run(promtool, ['test', 'rules', path.join(dir, 'rules.test.yaml')]);
    expect(r.out + r.err).toContain('SUCCESS');
    expect(r.ok, r.out + r.err).toBe(true);
  });

  it('each have a unit test', async () => {
    const tests = (await import('node:fs')).readFileSync(path.join(repoRoot, 'test/alerts/rules.test.yaml'), 'utf8');
    for (const alert of groups.flatMap((g) => g.rules).map((r) => r.alert).filter(Boolean)) expect(tests, `a unit test for ${alert}`).toContain(`alertname: ${alert}`);
  });

  it('a broken rule fails the check (the check can fail)', async () => {
    const file = path.join(dir, 'broken.yaml');
    writeFileSync(file, dump({ groups: [{ name: 'broken', rules: [{ alert: 'Broken', expr: 'max by (namespace (serviceuser_info)' }] }] }));
    const r = await run(promtool, ['check', 'rules', file]);
    expect(r.ok).toBe(false);
  });
});

describe('the Grafana dashboard', () => {
  it('is off by default, and carries the sidecar label when on', async () => {
    const off = await render();
    expect(off.some((d) => d.metadata?.name?.endsWith('-dashboard'))).toBe(false);
    expect(dashboardMap.metadata?.labels?.grafana_dashboard).toBe('1');
  });

  it('shows users by phase, time to expiry, issuance and verification rates, queue depth, reconcile errors and CRL entries by user', () => {
    const exprs = dashboard.panels.flatMap((p) => p.targets.map((t) => t.expr)).join('\n');
    for (const metric of ['serviceuser_info', 'serviceuser_expiration_timestamp_seconds', 'serviceuser_tokens_issued_total', 'serviceuser_verifications_total', 'serviceuser_operator_workqueue_depth', 'serviceuser_operator_reconcile_total', 'serviceuser_crl_entries']) {
      expect(exprs, metric).toContain(metric);
    }
  });

  it('has every PromQL expression parsed by promtool', async () => {
    // Grafana's variables are not PromQL: substitute what Grafana would.
    const rules = dashboard.panels.flatMap((p, i) =>
      p.targets.map((t, j) => ({ record: `dashboard:panel_${i}_${j}`, expr: t.expr.replaceAll('$__rate_interval', '5m').replaceAll('$namespace', '.*') })),
    );
    expect(rules.length).toBeGreaterThan(8);
    const file = path.join(dir, 'dashboard-rules.yaml');
    writeFileSync(file, dump({ groups: [{ name: 'dashboard', rules }] }));
    const r = await run(promtool, ['check', 'rules', file]);
    expect(r.ok, r.out + r.err).toBe(true);
    expect(r.out + r.err).toContain(`SUCCESS: ${rules.length} rules found`);
  });
});

describe('what the alerts and dashboard read', () => {
  it('is exported by the operator, in an exposition promtool check metrics accepts', async () => {
    const metrics = createMetrics();
    // One sample of each labelled series, as a running operator has them.
    metrics.expiration.set({ namespace: 'ci', name: 'a' }, 1);
    metrics.expiryWarning.set({ namespace: 'ci', name: 'a' }, 1);
    metrics.expiringSoon.set({ namespace: 'ci', name: 'a' }, 0);
    metrics.info.set({ namespace: 'ci', name: 'a', phase: 'Active', friendly_name: 'a' }, 1);
    metrics.reconciles.inc({ controller: 'serviceuser', result: 'success' });
    metrics.reconcileSeconds.observe({ controller: 'serviceuser' }, 0.01);
    metrics.queueDepth.set({ controller: 'serviceuser' }, 0);
    metrics.verifications.inc({ endpoint: 'tokenreview', result: 'authenticated' });
    metrics.apiRequests.inc({ verb: 'get', group: '', resource: 'secrets', code: '200' });
    metrics.tokensRevoked.inc({ reason: 'Rotated' });
    metrics.crlOwners.top = () => [{ owner: 'ci/a', entries: 3 }];
    metrics.crlOwnerBudget.set(100);
    const exposition = await metrics.registry.metrics();
    const r = await run(promtool, ['check', 'metrics'], { input: exposition });
    // Lint findings from the operator's own series would print "<name> <problem>"; Node's
    // default process metrics are prom-client's and not ours to rename.
    const ours = (r.out + r.err).split('\n').filter((l) => l.startsWith('serviceuser_'));
    expect(ours).toEqual([]);
    const exported = new Set(exposition.split('\n').filter((l) => l.startsWith('# TYPE ')).map((l) => l.split(' ')[2]));
    const read = [...groups.flatMap((g) => g.rules.map((x) => x.expr)), ...dashboard.panels.flatMap((p) => p.targets.map((t) => t.expr))].flatMap(metricNames);
    expect(read.length).toBeGreaterThan(5);
    for (const name of new Set(read)) expect(exported.has(name), `${name} is exported`).toBe(true);
  });
});
