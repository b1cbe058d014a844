// /metrics names every tenant's ServiceUsers (namespace, name, friendly name): the operator
// process serves it over HTTPS only to a bearer token the real API server authenticates
// (TokenReview) and authorizes for get on the nonResourceURL /metrics (SubjectAccessReview) —
// a ServiceAccount bound to the chart's metrics-reader ClusterRole, as Prometheus is. curl,
// the real consumer, verifies the serving certificate against the built-in CA, as the chart's
// ServiceMonitor does. Issue 22, item 7: on main, anyone reaching :8080 read them over plain
// HTTP.
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadAll } from 'js-yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KubeClient, type KubeObject } from '../../src/controller/kube.ts';
import { repoRoot } from '../cluster/controlplane.ts';
import { helmBinary } from '../helm/helm.ts';
import { eventually, kubeConfig, useNamespace, run } from '../kube.ts';
import { freePort } from '../net.ts';
import { api, decodeSecret, useAccounts, useOperatorProcesses } from '../operator.ts';

const ns = useNamespace('metrics');
const admin = new KubeClient(kubeConfig());
const processes = useOperatorProcesses(ns);
const dir = mkdtempSync(path.join(tmpdir(), 'metrics-'));
const caFile = path.join(dir, 'ca.crt');
const cleanup: string[] = [];
const output: string[] = [];
let port: number;
let readerRole: string;
useAccounts(['acme'], admin);

/** A scrape with curl, verifying the serving certificate against the built-in CA. */
async function scrape(token?: string, scheme = 'https'): Promise<{ status: number; body: string }> {
  const r = await run('curl', ['-sS', '--max-time', '30', '--cacert', caFile, ...(token ? ['-H', `Authorization: Bearer ${token}`] : []), '-w', '\n%{http_code}', `${scheme}://127.0.0.1:${port}/metrics`]);
  const i = r.out.lastIndexOf('\n');
  return { status: r.ok ? Number(r.out.slice(i + 1)) : 0, body: r.ok ? r.out.slice(0, i) : r.err };
}

async function serviceAccountToken(name: string): Promise<string> {
  await admin.request('POST', `/api/v1/namespaces/${ns.name}/serviceaccounts`, { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name } }).catch(() => undefined);
  const { status } = await admin.request<{ status: { token: string } }>('POST', `/api/v1/namespaces/${ns.name}/serviceaccounts/${name}/token`, {
    apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { expirationSeconds: 3600 },
  });
  return status.token;
}

/** The operator's own count of its API requests for `resource` (create), from an admitted scrape. */
const reviews = (metrics: string, resource: string) =>
  [...metrics.matchAll(new RegExp(`^serviceuser_operator_api_requests_total\\{[^}]*resource="${resource}"[^}]*\\} (\\d+)`, 'gm'))].reduce((a, m) => a + Number(m[1]), 0);

let prometheus: string;
let nosy: string;

beforeAll(async () => {
  // The chart's metrics-reader ClusterRole, as rendered, bound to a "prometheus" ServiceAccount.
  const release = `m${ns.name.split('-')[1]}`;
  const rendered = await run(helmBinary(), ['template', release, path.join(repoRoot, 'charts/service-user-operator'), '--namespace', ns.name, '--kube-version', '1.34.4']);
  expect(rendered.ok, rendered.err).toBe(true);
  const role = (loadAll(rendered.out) as (KubeObject | null)[]).find((d) => d?.kind === 'ClusterRole' && d.metadata.name.endsWith('-metrics-reader'));
  expect(role, 'the chart ships a metrics-reader ClusterRole').toBeDefined();
  readerRole = role!.metadata.name;
  await admin.apply(`/apis/rbac.authorization.k8s.io/v1/clusterroles/${readerRole}`, role, 'metrics-test');
  cleanup.push(`/apis/rbac.authorization.k8s.io/v1/clusterroles/${readerRole}`);
  await admin.apply(`/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/${readerRole}`, {
    apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding', metadata: { name: readerRole },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: readerRole },
    subjects: [{ kind: 'ServiceAccount', name: 'prometheus', namespace: ns.name }],
  }, 'metrics-test');
  cleanup.push(`/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/${readerRole}`);
  prometheus = await serviceAccountToken('prometheus');
  nosy = await serviceAccountToken('nosy');

  port = await freePort();
  processes.start(['--metrics-bind-address', `127.0.0.1:${port}`, '--verify-bind-address', '0', '--health-probe-bind-address', '0'], { output });
  const ca = await eventually('the CA Secret', () => api(admin, ns.name).secret('service-user-operator-ca'), 60_000);
  writeFileSync(caFile, decodeSecret(ca!)['tls.crt']!);
  await eventually('metrics served', async () => ((await scrape()).status ? true : undefined), 60_000);
  await api(admin, ns.name).createServiceUser('tenant', { email: 'ops@example.com', accounts: ['acme'], friendlyName: 'Payroll robot' });
  await api(admin, ns.name).waitFor('tenant', 'Active', (o) => (o.status as { phase?: string } | undefined)?.phase === 'Active', 60_000);
}, 180_000);

afterAll(async () => {
  for (const p of cleanup) await admin.request('DELETE', p).catch(() => undefined);
  admin.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('the metrics endpoint', () => {
  it('attack: an anonymous scrape, or one with a token not allowed /metrics, learns no tenant', async () => {
    // Plain HTTP is not answered at all.
    const plain = await scrape(undefined, 'http');
    expect(plain.status).not.toBe(200);
    const anonymous = await scrape();
    expect(anonymous.status).toBe(401);
    expect(anonymous.body).toContain('/metrics');
    const madeUp = await scrape('eyJhbGciOiJSUzI1NiJ9.bm90IGEgdG9rZW4.c2ln');
    expect(madeUp.status).toBe(401);
    // An authenticated ServiceAccount without the metrics-reader ClusterRole.
    const forbidden = await scrape(nosy);
    expect(forbidden.status).toBe(403);
    expect(forbidden.body).toContain(`system:serviceaccount:${ns.name}:nosy`);
    for (const r of [plain, anonymous, madeUp, forbidden]) expect(r.body).not.toMatch(/tenant|Payroll robot/);
  });

  it("serves a ServiceAccount bound to the chart's metrics-reader ClusterRole, over TLS curl verifies", async () => {
    const r = await eventually('the tenant in the metrics', async () => {
      const s = await scrape(prometheus);
      return s.status === 200 && s.body.includes('name="tenant"') ? s : undefined;
    });
    expect(r.body).toContain(`serviceuser_info{namespace="${ns.name}",name="tenant",phase="Active",friendly_name="Payroll robot"} 1`);
  });

  it("reviews a scraper's token once a minute, not once a scrape", async () => {
    const count = async () => {
      const r = await scrape(prometheus);
      expect(r.status).toBe(200);
      return { tokenreviews: reviews(r.body, 'tokenreviews'), subjectaccessreviews: reviews(r.body, 'subjectaccessreviews') };
    };
    const before = await count();
    expect(before.tokenreviews).toBeGreaterThan(0);
    // A second token of the same ServiceAccount is not in the cache yet: reviewed once, then remembered.
    const fresh = await serviceAccountToken('prometheus');
    for (let i = 0; i < 5; i++) expect((await scrape(fresh)).status).toBe(200);
    expect(await count()).toEqual({ tokenreviews: before.tokenreviews + 1, subjectaccessreviews: before.subjectaccessreviews + 1 });
  });

  it('attack: made-up tokens from the scraper\'s address are throttled, and the scraper is still answered', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 500 && !statuses.includes(429); i++) statuses.push((await scrape(`made-up-${i}`)).status);
    expect(statuses).toContain(429);
    expect(new Set(statuses)).toEqual(new Set([401, 429]));
    const r = await scrape(prometheus);
    expect(r.status).toBe(200);
    expect(r.body).toContain('name="tenant"');
    // A throttled token costs no review: the API calls are exactly the 401s (the budget refills
    // at 5 a second, so some of these may be answered).
    const before = reviews(r.body, 'tokenreviews');
    const again: number[] = [];
    for (let i = 0; i < 10; i++) again.push((await scrape(`made-up-again-${i}`)).status);
    expect(reviews((await scrape(prometheus)).body, 'tokenreviews') - before).toBe(again.filter((s) => s === 401).length);
  });

  it('refuses --no-metrics-secure on an address other than loopback, naming the flag', async () => {
    const lines: string[] = [];
    const child = processes.start(['--metrics-bind-address', ':0', '--no-metrics-secure', '--verify-bind-address', '0', '--health-probe-bind-address', '0'], { output: lines });
    const [code] = (await once(child, 'exit')) as [number];
    expect(code).toBe(2);
    expect(lines.join('')).toContain('--no-metrics-secure');
    expect(lines.join('')).toContain('loopback');
  });
});
