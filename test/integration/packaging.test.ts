// The Helm chart and the kustomize build render manifests the real API server accepts
// (server-side dry run of every object), and both grant the same permissions.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadAll } from 'js-yaml';
import { beforeAll, describe, expect, inject, it } from 'vitest';
import { KubeClient, isConflict } from '../../src/controller/kube.ts';
import { repoRoot } from '../cluster/controlplane.ts';
import { helmBinary } from '../helm/helm.ts';
import { chartRuntime, quantityBytes } from '../image/runtime.ts';
import { eventually, kubeConfig, useNamespace, run } from '../kube.ts';

const ns = useNamespace('chart');
const dir = mkdtempSync(path.join(tmpdir(), 'chart-'));
const chart = path.join(repoRoot, 'charts/service-user-operator');
let helm: string;

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
  'every value of issue 21 set (values file)': ['-f', 'EVERYTHING'],
};

/** A values file setting every value added for issue 21: helm lint with the schema, and the API server, accept it. */
const everything = path.join(dir, 'everything.yaml');
const digest = `sha256:${'0123456789abcdef'.repeat(4)}`;
writeFileSync(everything, JSON.stringify({
  image: { digest },
  logFormat: 'text',
  concurrency: 8,
  leaderElection: { leaseDuration: '30s', renewDeadline: '20s', retryPeriod: '4s' },
  restartTargets: { enabled: false },
  podDisruptionBudget: { enabled: true, maxUnavailable: 1 },
  podSecurityContext: { runAsNonRoot: true, runAsUser: 1000, runAsGroup: 1000, fsGroup: 2000, seccompProfile: { type: 'RuntimeDefault' } },
  containerSecurityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] }, runAsNonRoot: true },
  livenessProbe: { httpGet: { path: '/healthz', port: 'health' }, periodSeconds: 20, failureThreshold: 6 },
  readinessProbe: { httpGet: { path: '/readyz', port: 'health' }, periodSeconds: 7 },
  topologySpreadConstraints: [{ maxSkew: 1, topologyKey: 'topology.kubernetes.io/zone', whenUnsatisfiable: 'ScheduleAnyway' }],
  extraVolumes: [{ name: 'trust-bundle', configMap: { name: 'trust-bundle' } }],
  extraVolumeMounts: [{ name: 'trust-bundle', mountPath: '/etc/trust', readOnly: true }],
  metrics: { serviceMonitor: { enabled: true, interval: '15s', scrapeTimeout: '10s', relabelings: [{ action: 'replace', targetLabel: 'cluster', replacement: 'prod' }], metricRelabelings: [{ action: 'drop', sourceLabels: ['__name__'], regex: 'nodejs_.*' }] } },
  networkPolicy: { enabled: true, verification: { from: [{ ipBlock: { cidr: '10.0.0.0/8' } }] }, apiServer: { ports: [6443], cidrs: ['172.20.0.1/32'] }, extraEgress: [{ ports: [{ port: 8200, protocol: 'TCP' }] }] },
  notifications: { email: { enabled: true, host: 'smtp.example.com', from: 'operator@example.com' } },
}));

type Pod = { securityContext: Record<string, unknown>; volumes: { name: string }[]; topologySpreadConstraints?: { labelSelector: { matchLabels: Record<string, string> } }[]; containers: { image: string; args: string[]; securityContext: Record<string, unknown>; livenessProbe: Record<string, unknown>; readinessProbe: Record<string, unknown>; volumeMounts: { name: string; mountPath: string }[] }[] };
type Doc = { kind?: string; metadata: { name: string }; spec?: Record<string, unknown> & { template?: { spec: Pod }; selector?: { matchLabels: Record<string, string> } }; rules?: { apiGroups?: string[]; resources?: string[] }[] };

async function render(args: string[]): Promise<Doc[]> {
  const r = await run(helm, ['template', 'suo', chart, '--namespace', ns.name, '--kube-version', '1.34.4', ...args]);
  expect(r.ok, r.err).toBe(true);
  return (loadAll(r.out) as (Doc | null)[]).filter((d): d is Doc => !!d?.kind);
}
const podOf = (docs: Doc[], mode: string) => docs.find((d) => d.kind === 'Deployment' && d.spec!.template!.spec.containers[0]!.args.includes(`--mode=${mode}`))!.spec!.template!.spec;

describe('the Helm chart', () => {
  it('passes helm lint', async () => {
    const r = await run(helm, ['lint', '--strict', chart, '--kube-version', '1.34.4']);
    expect(r.ok, r.out + r.err).toBe(true);
  });

  it('passes helm lint with the schema on a values file setting every value', async () => {
    const r = await run(helm, ['lint', '--strict', chart, '--kube-version', '1.34.4', '-f', everything]);
    expect(r.ok, r.out + r.err).toBe(true);
  });

  it('puts the pod-level values on both Deployments and the controller-only ones on the controller', async () => {
    const docs = await render(['-f', everything]);
    for (const mode of ['controller', 'verifier']) {
      const pod = podOf(docs, mode);
      const container = pod.containers[0]!;
      expect(container.image).toBe(`ghcr.io/service-user-operator/service-user-operator@${digest}`);
      expect(container.args).toContain('--log-format=text');
      expect(pod.securityContext).toMatchObject({ runAsUser: 1000, fsGroup: 2000 });
      expect(container.securityContext).toMatchObject({ runAsNonRoot: true, readOnlyRootFilesystem: true });
      expect(container.livenessProbe).toMatchObject({ periodSeconds: 20, failureThreshold: 6 });
      expect(container.readinessProbe).toMatchObject({ periodSeconds: 7 });
      expect(pod.volumes.map((v) => v.name)).toContain('trust-bundle');
      expect(container.volumeMounts).toContainEqual({ name: 'trust-bundle', mountPath: '/etc/trust', readOnly: true });
      // Each Deployment's spread counts its own pods, not the other's.
      const own = docs.find((d) => d.kind === 'Deployment' && d.spec!.template!.spec === pod)!.spec!.selector!.matchLabels;
      expect(pod.topologySpreadConstraints![0]!.labelSelector.matchLabels).toEqual(own);
    }
    const controller = podOf(docs, 'controller').containers[0]!.args;
    expect(controller).toEqual(expect.arrayContaining(['--concurrency=8', '--leader-election-lease-duration=30s', '--leader-election-renew-deadline=20s', '--leader-election-retry-period=4s']));
    expect(podOf(docs, 'verifier').containers[0]!.args.filter((a) => /concurrency|leader/.test(a))).toEqual([]);
    const endpoint = (docs.find((d) => d.kind === 'ServiceMonitor')!.spec!.endpoints as Record<string, unknown>[])[0]!;
    expect(endpoint).toMatchObject({ interval: '15s', scrapeTimeout: '10s', relabelings: [{ targetLabel: 'cluster' }], metricRelabelings: [{ action: 'drop' }] });
  });

  it('keeps today\'s hardened security contexts, probes and image tag by default', async () => {
    const docs = await render([]);
    for (const mode of ['controller', 'verifier']) {
      const pod = podOf(docs, mode);
      expect(pod.securityContext).toEqual({ runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, fsGroup: 65532, seccompProfile: { type: 'RuntimeDefault' } });
      expect(pod.containers[0]!.image).toBe('ghcr.io/service-user-operator/service-user-operator:0.1.0');
      expect(pod.containers[0]!.livenessProbe).toEqual({ httpGet: { path: '/healthz', port: 'health' }, periodSeconds: 10, failureThreshold: 3 });
      expect(pod.topologySpreadConstraints).toBeUndefined();
    }
  });

  it('renders a NetworkPolicy per Deployment only when networkPolicy.enabled', async () => {
    expect((await render([])).filter((d) => d.kind === 'NetworkPolicy')).toEqual([]);
    const policies = (await render(['-f', everything])).filter((d) => d.kind === 'NetworkPolicy');
    expect(policies.map((p) => p.metadata.name).sort()).toEqual(['suo-service-user-operator', 'suo-service-user-operator-verifier']);
    const verifier = policies.find((p) => p.metadata.name.endsWith('-verifier'))!.spec as { ingress: { ports: { port: string }[]; from?: object[] }[]; egress: { ports: { port: number }[]; to?: object[] }[] };
    expect(verifier.ingress).toContainEqual({ ports: [{ port: 'verify', protocol: 'TCP' }], from: [{ ipBlock: { cidr: '10.0.0.0/8' } }] });
    expect(verifier.ingress).toContainEqual({ ports: [{ port: 'metrics', protocol: 'TCP' }], from: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } }] });
    expect(verifier.egress).toContainEqual({ ports: [{ port: 6443, protocol: 'TCP' }], to: [{ ipBlock: { cidr: '172.20.0.1/32' } }] });
    expect(verifier.egress.flatMap((e) => e.ports.map((p) => p.port))).toEqual(expect.arrayContaining([53, 6443, 8200]));
    // The SMTP port only for the controller, which sends the notices.
    const controller = policies.find((p) => !p.metadata.name.endsWith('-verifier'))!.spec as typeof verifier;
    expect(controller.egress.flatMap((e) => e.ports.map((p) => p.port))).toContain(587);
    expect(verifier.egress.flatMap((e) => e.ports.map((p) => p.port))).not.toContain(587);
  });

  it('drops the apps get/patch rule with restartTargets.enabled=false, cluster-wide and per watched namespace', async () => {
    const apps = (docs: Doc[]) => docs.filter((d) => d.kind === 'ClusterRole' || d.kind === 'Role').flatMap((d) => d.rules ?? []).filter((r) => r.apiGroups?.includes('apps'));
    expect(apps(await render([]))).toHaveLength(1);
    expect(apps(await render(['--set', 'restartTargets.enabled=false']))).toEqual([]);
    expect(apps(await render(['--set', `watchNamespaces={${ns.name}-a}`]))).toHaveLength(1);
    expect(apps(await render(['--set', `watchNamespaces={${ns.name}-a}`, '--set', 'restartTargets.enabled=false']))).toEqual([]);
  });

  it('has no PodDisruptionBudget by default, and enabled one never blocks a drain of a single replica', async () => {
    expect((await render([])).filter((d) => d.kind === 'PodDisruptionBudget')).toEqual([]);
    const pdbs = (await render(['--set', 'podDisruptionBudget.enabled=true', '--set', 'replicaCount=1', '--set', 'verifier.replicaCount=1'])).filter((d) => d.kind === 'PodDisruptionBudget');
    expect(pdbs).toHaveLength(2);
    for (const pdb of pdbs) {
      expect(pdb.spec!.maxUnavailable).toBe(1);
      expect(pdb.spec!.minAvailable).toBeUndefined();
    }
    // minAvailable at the replica count would block every eviction: refused, naming both values.
    const blocking = await run(helm, ['template', 'x', chart, '--kube-version', '1.34.4', '--set', 'podDisruptionBudget.enabled=true', '--set', 'replicaCount=1', '--set', 'podDisruptionBudget.minAvailable=1']);
    expect(blocking.ok).toBe(false);
    expect(blocking.err).toContain('podDisruptionBudget.minAvailable (1) must be below replicaCount (1)');
    const below = await render(['--set', 'podDisruptionBudget.enabled=true', '--set', 'podDisruptionBudget.minAvailable=1']);
    expect(below.filter((d) => d.kind === 'PodDisruptionBudget').map((d) => d.spec!.minAvailable)).toEqual([1, 1]);
  });

  it('renders without --kube-version (Helm built with its release ldflags assumes a current Kubernetes, not v1.20)', async () => {
    const r = await run(helm, ['template', 'x', chart]);
    expect(r.ok, r.err).toBe(true);
  });

  it('installs over CRDs applied with kubectl (the README quick start; was: "exists and cannot be imported into the current release")', async () => {
    // This cluster's CRDs were applied with kubectl by the test setup. A server-side dry run
    // is Helm's whole install check (mapping every kind, ownership of what exists) without
    // creating anything other tests would see. The role catalog and the admission policies
    // have fixed cluster-wide names that other files of the run apply with kubectl too: a real
    // cluster has them from this chart alone, so they are left out of this check.
    const r = await run(helm, ['install', 'suo-adopt', chart, '--namespace', ns.name, '--dry-run=server', '--kubeconfig', inject('kubeconfig'),
      '--set', 'roleCatalog.enabled=false', '--set', 'admissionPolicy.enabled=false']);
    expect(r.ok, r.err).toBe(true);
  });

  it('refuses values its schema does not allow, saying which', async () => {
    const r = await run(helm, ['template', 'x', chart, '--kube-version', '1.34.4', '--set', 'replicaCount=0', '--set', 'logLevel=loud']);
    expect(r.ok).toBe(false);
    expect(r.err).toContain('replicaCount');
    expect(r.err).toContain('logLevel');
  });

  it('refuses to run the verifier as the controller\'s ServiceAccount, naming the value', async () => {
    const same = await run(helm, ['template', 'x', chart, '--kube-version', '1.34.4', '--set', 'serviceAccount.create=false', '--set', 'serviceAccount.name=ops', '--set', 'verifier.serviceAccountName=ops']);
    expect(same.ok).toBe(false);
    expect(same.err).toContain('verifier.serviceAccountName');
    const apart = await run(helm, ['template', 'x', chart, '--kube-version', '1.34.4', '--set', 'serviceAccount.create=false', '--set', 'serviceAccount.name=ops', '--set', 'verifier.serviceAccountName=ops-verifier']);
    expect(apart.ok, apart.err).toBe(true);
  });

  it.each(Object.keys(valueSets))('renders manifests the API server accepts: %s', async (name) => {
    const args = valueSets[name]!.map((a) => a.replaceAll('NS-', `${ns.name}-`).replace('EVERYTHING', everything));
    const r = await run(helm, ['template', 'suo', chart, '--namespace', ns.name, '--kube-version', '1.34.4', ...args]);
    expect(r.ok, r.err).toBe(true);
    expect(await dryRunApply(r.out, name.replace(/\W+/g, '-'))).toEqual([]);
    if (name.startsWith('watched')) {
      // No cluster-wide Secret access when namespaces are listed.
      const clusterRole = (loadAll(r.out) as { kind?: string; rules?: { resources: string[] }[] }[]).find((d) => d?.kind === 'ClusterRole')!;
      expect(clusterRole.rules!.flatMap((rule) => rule.resources)).not.toContain('secrets');
    }
  });

  it('hardens both Deployments; the verifier, under its own ServiceAccount, neither elects nor reconciles', async () => {
    const r = await run(helm, ['template', 'suo', chart, '--namespace', ns.name, '--kube-version', '1.34.4']);
    type Deployment = { kind?: string; spec?: { replicas: number; template: { spec: { serviceAccountName: string; securityContext: Record<string, unknown>; containers: { securityContext: Record<string, unknown>; resources: object; args: string[] }[] } } } };
    const deployments = (loadAll(r.out) as Deployment[]).filter((d) => d?.kind === 'Deployment');
    const byMode = (mode: string) => deployments.find((d) => d.spec!.template.spec.containers[0]!.args.includes(`--mode=${mode}`))!.spec!;
    expect(deployments).toHaveLength(2);
    for (const d of [byMode('controller'), byMode('verifier')]) {
      const pod = d.template.spec;
      expect(d.replicas).toBe(2);
      expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } });
      expect(pod.containers[0]!.securityContext).toEqual({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
      expect(pod.containers[0]!.resources).toMatchObject({ requests: { cpu: '50m', memory: '256Mi' }, limits: { memory: '640Mi' } });
    }
    expect(byMode('controller').template.spec.containers[0]!.args).toContain('--leader-elect');
    expect(byMode('controller').template.spec.containers[0]!.args.some((a) => a.startsWith('--verify-'))).toBe(false);
    expect(byMode('verifier').template.spec.containers[0]!.args).not.toContain('--leader-elect');
    expect(byMode('verifier').template.spec.serviceAccountName).not.toBe(byMode('controller').template.spec.serviceAccountName);
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

  it('has what the chart has beside it: fsGroup, the PrometheusRule (the chart\'s alerts), the Grafana dashboard (the chart\'s JSON)', async () => {
    const kustomize = async (dirName: string) => {
      const r = await run('kubectl', ['kustomize', path.join(repoRoot, 'config', dirName)]);
      expect(r.ok, r.err).toBe(true);
      return (loadAll(r.out) as (Doc | null)[]).filter((d): d is Doc => !!d?.kind) as (Doc & { data?: Record<string, string>; metadata: { labels?: Record<string, string> } })[];
    };
    for (const d of (await kustomize('default')).filter((d) => d.kind === 'Deployment')) {
      expect(d.spec!.template!.spec.securityContext).toMatchObject({ fsGroup: 65532 });
    }
    const chartDocs = await render(['--set', 'metrics.prometheusRule.enabled=true', '--set', 'grafana.dashboard.enabled=true']);
    const rule = (await kustomize('prometheus')).find((d) => d.kind === 'PrometheusRule');
    expect(rule?.spec).toEqual(chartDocs.find((d) => d.kind === 'PrometheusRule')!.spec);
    const dashboard = (await kustomize('grafana')).find((d) => d.kind === 'ConfigMap');
    expect(dashboard?.metadata.labels).toMatchObject({ grafana_dashboard: '1' });
    const chartDashboard = chartDocs.find((d) => d.kind === 'ConfigMap' && d.metadata.name.endsWith('-dashboard')) as unknown as { data: Record<string, string> };
    expect(JSON.parse(dashboard!.data!['service-user-operator.json']!)).toEqual(JSON.parse(chartDashboard.data['service-user-operator.json']!));
    expect(await dryRunApply((await run('kubectl', ['kustomize', path.join(repoRoot, 'config/prometheus')])).out + '\n---\n' + (await run('kubectl', ['kustomize', path.join(repoRoot, 'config/grafana')])).out + '\n---\n' + (await run('kubectl', ['kustomize', path.join(repoRoot, 'config/default')])).out, 'kustomize-extras')).toEqual([]);
  });

  it('sizes the operator and its heap as the chart does (it was left at 128Mi/256Mi: OOM-killed at a few thousand users)', async () => {
    const chart_ = await run(helm, ['template', 'suo', chart, '--namespace', 'service-user-operator', '--kube-version', '1.34.4']);
    const kustomize = await run('kubectl', ['kustomize', path.join(repoRoot, 'config/default')]);
    const container = (yaml: string) =>
      (loadAll(yaml) as { kind?: string; spec?: { template: { spec: { containers: { resources: object; env: { name: string; value?: string }[] }[] } } } }[]).find((d) => d?.kind === 'Deployment')!.spec!.template.spec.containers[0]!;
    expect(container(kustomize.out).resources).toEqual(container(chart_.out).resources);
    // And the heap within it: V8's default under 1Gi (a quarter) thrashes at 10,000 users.
    const heap = (yaml: string) => container(yaml).env.find((e) => e.name === 'NODE_OPTIONS')?.value;
    expect(heap(chart_.out)).toBe('--max-old-space-size=384');
    expect(heap(kustomize.out)).toBe(heap(chart_.out));
    // The benchmarks run the operator as the chart does, from their own reading of values.yaml: the same.
    const runtime = chartRuntime();
    expect(runtime.nodeOptions).toBe(heap(chart_.out));
    const resources = container(chart_.out).resources as { requests: { memory: string }; limits: { memory: string } };
    expect([runtime.memoryRequestBytes, runtime.memoryLimitBytes]).toEqual([quantityBytes(resources.requests.memory), quantityBytes(resources.limits.memory)]);
  });
});
