// The chart's least-privilege RBAC is enough, and no more: the operator runs as the chart's
// ServiceAccount, with exactly the rendered (Cluster)Roles, through a whole lifecycle —
// leader election, CA and CRL, issuing, roles, accounts and namespace labels, cert-manager
// mode, restart targets, disable, deletion — is
// never refused, and every verb the chart grants is one it was seen to use (counted by its
// own API request metric, in the authorizer's terms).
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { loadAll } from 'js-yaml';
import { afterAll, expect, inject, it } from 'vitest';
import { KubeClient, resourcePath, type KubeObject } from '../../src/controller/kube.ts';
import { resources } from '../../src/api/resources.ts';
import { testLogger } from '../logs.ts';
import { createMetrics } from '../../src/observability/metrics.ts';
import { startOperator } from '../../src/operator.ts';
import { repoRoot } from '../cluster/controlplane.ts';
import { installCertManagerCrds } from '../certmanager/certmanager.ts';
import { helmBinary } from '../helm/helm.ts';
import { eventually, kubeConfig, useNamespace } from '../kube.ts';
import { api } from '../operator.ts';

// The operator's own namespace (release, CA, CRL, lease) and a separate watched one, as in a
// real install: a grant that only works because the two coincide would go unnoticed.
const ns = useNamespace('rbac');
const watched = useNamespace('rbac-watched');
const admin = new KubeClient(kubeConfig());
const release = `rbac-${randomBytes(3).toString('hex')}`;
const clusterScoped: string[] = [];
afterAll(async () => {
  for (const p of clusterScoped) await admin.request('DELETE', p).catch(() => undefined);
  admin.close();
});

const plural: Record<string, string> = { ServiceAccount: 'serviceaccounts', ClusterRole: 'clusterroles', ClusterRoleBinding: 'clusterrolebindings', Role: 'roles', RoleBinding: 'rolebindings' };

it('runs a whole lifecycle under the chart\'s RBAC without a single refusal', { timeout: 180_000 }, async () => {
  const rendered = await new Promise<string>((resolve, reject) =>
    execFile(helmBinary(), ['template', release, path.join(repoRoot, 'charts/service-user-operator'), '--namespace', ns.name, '--kube-version', '1.34.4',
      '--set', `watchNamespaces={${watched.name}}`, '--set', 'roleCatalog.enabled=false'], { maxBuffer: 16 << 20 }, (err, out, errOut) => (err ? reject(new Error(errOut)) : resolve(out))),
  );
  let account = '';
  const granted = new Set<string>();
  const docs = (loadAll(rendered) as (KubeObject | null)[]).filter((d): d is KubeObject => !!d);
  // Only what the operator's ServiceAccount is bound to: the chart's roles for people are
  // rendered beside it, grant the operator nothing and are not applied here.
  const bound = new Set(
    docs
      .filter((d) => (d.kind === 'RoleBinding' || d.kind === 'ClusterRoleBinding') && ((d.subjects ?? []) as { kind: string }[]).some((x) => x.kind === 'ServiceAccount'))
      .map((d) => `${(d.roleRef as { kind: string }).kind}/${d.kind === 'RoleBinding' ? d.metadata.namespace : ''}/${(d.roleRef as { name: string }).name}`),
  );
  for (const doc of docs) {
    if (!plural[doc.kind!] || doc.apiVersion === 'serviceusers.dev/v1alpha1') continue;
    const isRole = doc.kind === 'Role' || doc.kind === 'ClusterRole';
    if (isRole && !bound.has(`${doc.kind}/${doc.kind === 'Role' ? doc.metadata.namespace : ''}/${doc.metadata.name}`)) continue;
    for (const rule of (doc.rules ?? []) as { apiGroups: string[]; resources: string[]; verbs: string[] }[]) {
      for (const group of rule.apiGroups) for (const resource of rule.resources) for (const verb of rule.verbs) granted.add(`${verb} ${group}/${resource}`);
    }
    const group = doc.apiVersion === 'v1' ? '' : 'rbac.authorization.k8s.io';
    const namespaced = doc.kind !== 'ClusterRole' && doc.kind !== 'ClusterRoleBinding';
    const p = resourcePath({ group, version: 'v1', plural: plural[doc.kind!]!, namespaced }, doc.metadata.namespace, doc.metadata.name);
    await admin.apply(p, doc, 'rbac-test');
    if (!namespaced) clusterScoped.push(p);
    if (doc.kind === 'ServiceAccount') account = doc.metadata.name;
  }
  const { status } = await admin.request<{ status: { token: string } }>('POST', `/api/v1/namespaces/${ns.name}/serviceaccounts/${account}/token`, {
    apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { expirationSeconds: 3600 },
  });
  const base = kubeConfig();
  const kc = new KubeConfig();
  kc.loadFromClusterAndUser(base.getCurrentCluster()!, { name: account, token: status.token });

  const logs: string[] = [];
  // cert-manager's API (no controller needed) so the operator's cert-manager calls happen.
  await installCertManagerCrds(inject('kubeconfig'));
  const metrics = createMetrics();
  const operator = startOperator({
    kubeConfig: kc, log: testLogger(logs), metrics, namespaces: [watched.name], operatorNamespace: ns.name,
    leaderElection: { identity: 'rbac-test', onLost: () => undefined },
  });
  const k = api(admin, watched.name);
  try {
    await Promise.race([
      operator.ready,
      new Promise((_, reject) => setTimeout(() => reject(new Error(`not ready in 60 s:\n${logs.filter((l) => /403|forbidden/i.test(l)).slice(0, 5).join('')}`)), 60_000)),
    ]);
    await eventually('leadership', async () => (operator.isLeader() ? true : undefined));
    await admin.request('POST', resourcePath(resources.roles), {
      apiVersion: 'serviceusers.dev/v1alpha1', kind: 'Role', metadata: { name: `${release}.signer` },
      spec: { displayName: 'Signer', manager: 'software-trust-manager', permissions: ['signatures:sign'] },
    });
    clusterScoped.push(resourcePath(resources.roles, undefined, `${release}.signer`));
    // An Account admitting the watched namespace by name: the operator reads both.
    await admin.request('POST', resourcePath(resources.accounts), {
      apiVersion: 'serviceusers.dev/v1alpha1', kind: 'Account', metadata: { name: release },
      spec: { namespaceSelector: { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'In', values: [watched.name] }] } },
    });
    clusterScoped.push(resourcePath(resources.accounts, undefined, release));
    // restartTargets: one workload of each kind, reading the Secret; the operator reads each
    // and annotates its pod template (get, patch on apps).
    const template = { metadata: { labels: { app: 'worker' } }, spec: { containers: [{ name: 'app', image: 'registry.example/app:1', envFrom: [{ secretRef: { name: 'worker-credentials' } }] }] } };
    const workloads = { Deployment: 'deployments', StatefulSet: 'statefulsets', DaemonSet: 'daemonsets' } as const;
    for (const [kind, plural] of Object.entries(workloads)) {
      await admin.request('POST', `/apis/apps/v1/namespaces/${watched.name}/${plural}`, {
        apiVersion: 'apps/v1', kind, metadata: { name: 'worker' },
        spec: { selector: { matchLabels: { app: 'worker' } }, template, ...(kind === 'StatefulSet' ? { serviceName: 'worker' } : {}) },
      });
    }
    await k.createServiceUser('worker', { email: 'ops@example.com', accounts: [release], credentials: { restartTargets: Object.keys(workloads).map((kind) => ({ kind, name: 'worker' })) } });
    await admin.request('POST', resourcePath(resources.roleBindings, watched.name), {
      apiVersion: 'serviceusers.dev/v1alpha1', kind: 'RoleBinding', metadata: { name: 'worker-signs' },
      spec: { roleRef: { name: `${release}.signer` }, subjects: [{ kind: 'ServiceUser', name: 'worker' }] },
    });
    await k.waitFor('worker', 'Active with permissions', (o) => {
      const s = o.status as { phase?: string; permissions?: unknown[]; certificate?: unknown } | undefined;
      return s?.phase === 'Active' && !!s.certificate && (s.permissions ?? []).length === 1;
    });
    for (const plural of Object.values(workloads)) {
      await eventually(`the ${plural} annotated`, async () =>
        ((await admin.get(`/apis/apps/v1/namespaces/${watched.name}/${plural}/worker`)).spec as { template: { metadata: { annotations?: Record<string, string> } } }).template.metadata.annotations?.['serviceusers.dev/credentials-digest'] ? true : undefined);
    }
    await eventually('the Role status', async () => ((await admin.get(resourcePath(resources.roles, undefined, `${release}.signer`))).status ? true : undefined));
    // cert-manager mode: the Certificate written, the Issuer and then a ClusterIssuer looked
    // up (neither exists), and the Certificate removed when the built-in CA is chosen again.
    await k.createServiceUser('external', { email: 'ops@example.com', accounts: [release], credentials: { clientCertificate: { issuerRef: { name: 'absent', kind: 'Issuer' } } } });
    const reason = (o: KubeObject) => (o.status as { conditions?: { type: string; reason: string }[] } | undefined)?.conditions?.find((c) => c.type === 'Ready')?.reason;
    await k.waitFor('external', 'IssuerNotFound', (o) => reason(o) === 'IssuerNotFound');
    await k.patchServiceUser('external', { credentials: { clientCertificate: { issuerRef: { name: `absent-${release}`, kind: 'ClusterIssuer' } } } });
    await eventually('the ClusterIssuer looked up', async () => (await metrics.apiRequests.get()).values.some((v) => v.labels.resource === 'clusterissuers') || undefined);
    await k.patchServiceUser('external', { credentials: { clientCertificate: { issuerRef: null } } });
    await k.waitFor('external', 'Active on the built-in CA', (o) => (o.status as { phase?: string; certificate?: unknown } | undefined)?.phase === 'Active' && !!(o.status as { certificate?: unknown }).certificate);
    await eventually('the Certificate removed', () =>
      admin.get(`/apis/cert-manager.io/v1/namespaces/${watched.name}/certificates`).then((l) => ((l as unknown as { items: unknown[] }).items.length === 0 ? true : undefined)));
    await k.patchServiceUser('worker', { disabled: true });
    await k.waitFor('worker', 'Disabled', (o) => (o.status as { phase?: string } | undefined)?.phase === 'Disabled');
    // Disabled, enabled and disabled again: the same event twice is aggregated (patch on events).
    await k.patchServiceUser('worker', { disabled: false });
    await k.waitFor('worker', 'Active again', (o) => (o.status as { phase?: string } | undefined)?.phase === 'Active');
    await k.patchServiceUser('worker', { disabled: true });
    await k.waitFor('worker', 'Disabled again', (o) => (o.status as { phase?: string } | undefined)?.phase === 'Disabled');
    await eventually('the repeated event aggregated', async () => (await metrics.apiRequests.get()).values.some((v) => v.labels.resource === 'events' && v.labels.verb === 'patch') || undefined);
    await admin.request('DELETE', resourcePath(resources.serviceUsers, watched.name, 'worker'));
    await eventually('deletion completed by the finalizer', () => k.serviceUser('worker').then(() => undefined, () => true));
    // The leader renews its Lease every 2 s: let one renewal happen whatever the pace above.
    await eventually('a lease renewal', async () => (await metrics.apiRequests.get()).values.some((v) => v.labels.resource === 'leases' && v.labels.verb === 'update') || undefined);
  } finally {
    await operator.stop();
  }
  const log = logs.join('');
  expect(log).not.toMatch(/ 403 |forbidden/i);
  const used = new Set((await metrics.apiRequests.get()).values.map((v) => `${v.labels.verb} ${v.labels.group}/${v.labels.resource}`));
  expect([...granted].filter((g) => !used.has(g)), 'granted by the chart but never used').toEqual([]);
  expect([...used].filter((u) => !granted.has(u)), 'used but not granted').toEqual([]);
});
