// The Helm chart and the kustomize build render manifests the real API server accepts
// (server-side dry run of every object), and both grant the same permissions.
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadAll } from 'js-yaml';
import { beforeAll, describe, expect, inject, it } from 'vitest';
import { KubeClient, isConflict } from '../../src/controller/kube.ts';
import { repoRoot } from '../cluster/controlplane.ts';
import { helmBinary } from '../helm/helm.ts';
import { eventually, kubeConfig, useNamespace } from '../kube.ts';

const ns = useNamespace('chart');
const dir = mkdtempSync(path.join(tmpdir(), 'chart-'));
const chart = path.join(repoRoot, 'charts/service-user-operator');
let helm: string;

function run(cmd: string, args: string[]): Promise<{ ok: boolean; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { encoding: 'utf8', maxBuffer: 32 * 1024 * 1024, timeout: 120_000 }, (error, out, err) => resolve({ ok: !error, out, err }));
  });
}

/** Every object applied with server-side dry run; returns the failures. */
async function dryRunApply(yaml: string, name: string): Promise<string[]> {
  const failures: string[] = [];
  const docs = (loadAll(yaml) as ({ kind?: string; metadata?: { name?: string } } | null)[]).filter((d): d is { kind: string; metadata: { name: string } } => !!d?.kind);
  expect(docs.length).toBeGreaterThan(5);
  for (const [i, doc] of docs.entries()) {
    const file = path.join(dir, `${name}-${i}.yaml`);
    writeFileSync(file, JSON.stringify(doc));
    const r = await run('kubectl', ['--kubeconfig', inject('kubeconfig'), 'apply', '--server-side', '--force-conflicts', '--field-manager=chart-test', '--dry-run=server', '-f', file]);
    if (!r.ok) failures.push(`${doc.kind}/${doc.metadata.name}: ${r.err.trim()}`);
  }
  return failures;
}

beforeAll(async () => {
  helm = helmBinary();
  const client = new KubeClient(kubeConfig());
  // The Prometheus Operator's kinds, as bare CRDs: enough for the API server to judge the
  // ServiceMonitor and PrometheusRule objects' shape (apiVersion, kind, metadata).
  for (const [plural, kind] of [['servicemonitors', 'ServiceMonitor'], ['prometheusrules', 'PrometheusRule']]) {
    await client
      .request('POST', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions', {
        apiVersion: 'apiextensions.k8s.io/v1', kind: 'CustomResourceDefinition', metadata: { name: `${plural}.monitoring.coreos.com` },
        spec: {
          group: 'monitoring.coreos.com', scope: 'Namespaced', names: { plural, kind },
          versions: [{ name: 'v1', served: true, storage: true, schema: { openAPIV3Schema: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } } }],
        },
      })
      .catch((err: unknown) => (isConflict(err) ? undefined : Promise.reject(err)));
  }
  for (const name of [`${ns.name}-a`, `${ns.name}-b`, 'service-user-operator']) {
    await client.request('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name } }).catch((err: unknown) => (isConflict(err) ? undefined : Promise.reject(err)));
  }
  for (const plural of ['servicemonitors', 'prometheusrules']) {
    await eventually(`${plural} to be served`, () => client.get(`/apis/monitoring.coreos.com/v1/${plural}?limit=1`).then(() => true));
  }
  client.close();
}, 600_000);

const valueSets: Record<string, string[]> = {
  defaults: [],
  'watched namespaces, monitoring, caller CA': ['--set', `watchNamespaces={NS-a,NS-b}`, '--set', 'metrics.serviceMonitor.enabled=true', '--set', 'metrics.prometheusRule.enabled=true', '--set', 'verification.clientCaSecrets={gateway-ca}', '--set', 'verification.tokenReviewClientCaSecrets={apiserver-webhook-ca}', '--set', 'verification.trustedProxyHops=1', '--set', 'grafana.dashboard.enabled=true', '--set', 'notifications.email.enabled=true', '--set', 'notifications.email.host=smtp.example.com', '--set', 'notifications.email.from=operator@example.com', '--set', 'notifications.email.credentialsSecret=smtp-credentials', '--set', 'notifications.email.caSecret=smtp-ca'],
  'single replica on the node network, no catalog, no leader election': ['--set', 'replicaCount=1', '--set', 'hostNetwork=true', '--set', 'dnsPolicy=ClusterFirstWithHostNet', '--set', 'strategy.type=Recreate', '--set', 'extraEnv[0].name=KUBERNETES_SERVICE_HOST', '--set', 'extraEnv[0].value=10.0.0.1', '--set', 'extraArgs={--log-format=json}', '--set', 'roleCatalog.enabled=false', '--set', 'leaderElection.enabled=false', '--set', 'podDisruptionBudget.enabled=false'],
};

describe('the Helm chart', () => {
  it('passes helm lint', async () => {
    const r = await run(helm, ['lint', '--strict', chart, '--kube-version', '1.34.4']);
    expect(r.ok, r.out + r.err).toBe(true);
  });

  it('renders without --kube-version (Helm built with its release ldflags assumes a current Kubernetes, not v1.20)', async () => {
    const r = await run(helm, ['template', 'x', chart]);
    expect(r.ok, r.err).toBe(true);
  });

  it('installs over CRDs applied with kubectl (the README quick start; was: "exists and cannot be imported into the current release")', async () => {
    // This cluster's CRDs were applied with kubectl by the test setup. A server-side dry run
    // is Helm's whole install check (mapping every kind, ownership of what exists) without
    // creating anything other tests would see.
    const r = await run(helm, ['install', 'suo-adopt', chart, '--namespace', ns.name, '--dry-run=server', '--kubeconfig', inject('kubeconfig')]);
    expect(r.ok, r.err).toBe(true);
  });

  it('refuses values its schema does not allow, saying which', async () => {
    const r = await run(helm, ['template', 'x', chart, '--kube-version', '1.34.4', '--set', 'replicaCount=0', '--set', 'logLevel=loud']);
    expect(r.ok).toBe(false);
    expect(r.err).toContain('replicaCount');
    expect(r.err).toContain('logLevel');
  });

  it.each(Object.keys(valueSets))('renders manifests the API server accepts: %s', async (name) => {
    const args = valueSets[name]!.map((a) => a.replaceAll('NS-', `${ns.name}-`));
    const r = await run(helm, ['template', 'suo', chart, '--namespace', ns.name, '--kube-version', '1.34.4', ...args]);
    expect(r.ok, r.err).toBe(true);
    expect(await dryRunApply(r.out, name.replace(/\W+/g, '-'))).toEqual([]);
    if (name.startsWith('watched')) {
      // No cluster-wide Secret access when namespaces are listed.
      const clusterRole = (loadAll(r.out) as { kind?: string; rules?: { resources: string[] }[] }[]).find((d) => d?.kind === 'ClusterRole')!;
      expect(clusterRole.rules!.flatMap((rule) => rule.resources)).not.toContain('secrets');
    }
  });

  it('hardens the Deployment', async () => {
    const r = await run(helm, ['template', 'suo', chart, '--namespace', ns.name, '--kube-version', '1.34.4']);
    const deployment = (loadAll(r.out) as { kind?: string; spec?: { replicas: number; template: { spec: Record<string, unknown> } } }[]).find((d) => d?.kind === 'Deployment')!;
    const pod = deployment.spec!.template.spec as { securityContext: Record<string, unknown>; containers: { securityContext: Record<string, unknown>; resources: object; args: string[] }[] };
    expect(deployment.spec!.replicas).toBe(2);
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } });
    expect(pod.containers[0]!.securityContext).toEqual({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
    expect(pod.containers[0]!.resources).toMatchObject({ requests: { cpu: '50m', memory: '512Mi' }, limits: { memory: '1Gi' } });
    expect(pod.containers[0]!.args).toContain('--leader-elect');
    expect(r.out).not.toMatch(/verbs: \[[^\]]*\*/);
  });
});

describe('kustomize', () => {
  it('config/default renders manifests the API server accepts', async () => {
    const r = await run('kubectl', ['kustomize', path.join(repoRoot, 'config/default')]);
    expect(r.ok, r.err).toBe(true);
    expect(await dryRunApply(r.out, 'kustomize-default')).toEqual([]);
  });

  it('grants what the chart grants', async () => {
    const chart_ = await run(helm, ['template', 'suo', chart, '--namespace', 'service-user-operator', '--kube-version', '1.34.4']);
    const kustomize = await run('kubectl', ['kustomize', path.join(repoRoot, 'config/default')]);
    expect(chart_.ok, chart_.err).toBe(true);
    expect(kustomize.ok, kustomize.err).toBe(true);
    const [chartOut, kustomizeOut] = [chart_.out, kustomize.out];
    const rules = (yaml: string, kind: string) =>
      (loadAll(yaml) as { kind?: string; rules?: object[] }[])
        .filter((d) => d?.kind === kind && d.rules)
        .flatMap((d) => d.rules!)
        .map((rule) => JSON.stringify(rule))
        .sort();
    // Both sides empty would agree and prove nothing.
    expect(rules(chartOut, 'ClusterRole').length).toBeGreaterThan(5);
    expect(rules(chartOut, 'Role').length).toBeGreaterThan(2);
    expect(rules(kustomizeOut, 'ClusterRole')).toEqual(rules(chartOut, 'ClusterRole'));
    expect(rules(kustomizeOut, 'Role')).toEqual(rules(chartOut, 'Role').filter((r) => !r.includes('"permissions"')));
  });

  it('sizes the operator and its heap as the chart does (it was left at 128Mi/256Mi: OOM-killed at a few thousand users)', async () => {
    const chart_ = await run(helm, ['template', 'suo', chart, '--namespace', 'service-user-operator', '--kube-version', '1.34.4']);
    const kustomize = await run('kubectl', ['kustomize', path.join(repoRoot, 'config/default')]);
    const container = (yaml: string) =>
      (loadAll(yaml) as { kind?: string; spec?: { template: { spec: { containers: { resources: object; env: { name: string; value?: string }[] }[] } } } }[]).find((d) => d?.kind === 'Deployment')!.spec!.template.spec.containers[0]!;
    expect(container(kustomize.out).resources).toEqual(container(chart_.out).resources);
    // And the heap within it: V8's default under 1Gi (a quarter) thrashes at 10,000 users.
    const heap = (yaml: string) => container(yaml).env.find((e) => e.name === 'NODE_OPTIONS')?.value;
    expect(heap(chart_.out)).toBe('--max-old-space-size=512');
    expect(heap(kustomize.out)).toBe(heap(chart_.out));
  });
});
