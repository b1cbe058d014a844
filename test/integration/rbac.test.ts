// The chart's least-privilege RBAC is enough: the operator runs as the chart's
// ServiceAccount, with exactly the rendered (Cluster)Roles, through a whole lifecycle —
// leader election, CA and CRL, issuing, roles, disable, deletion — and is never refused.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import path from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { loadAll } from 'js-yaml';
import { afterAll, expect, it } from 'vitest';
import { KubeClient, resourcePath, type KubeObject } from '../../src/controller/kube.ts';
import { resources } from '../../src/api/resources.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { createMetrics } from '../../src/observability/metrics.ts';
import { startOperator } from '../../src/operator.ts';
import { repoRoot } from '../cluster/controlplane.ts';
import { helmBinary } from '../helm/helm.ts';
import { eventually, kubeConfig, useNamespace } from '../kube.ts';
import { api } from '../operator.ts';

const ns = useNamespace('rbac');
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
      '--set', `watchNamespaces={${ns.name}}`, '--set', 'crds.enabled=false', '--set', 'roleCatalog.enabled=false'], { maxBuffer: 16 << 20 }, (err, out, errOut) => (err ? reject(new Error(errOut)) : resolve(out))),
  );
  let account = '';
  for (const doc of loadAll(rendered) as (KubeObject | null)[]) {
    if (!doc || !plural[doc.kind!] || doc.apiVersion === 'serviceusers.dev/v1alpha1') continue;
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
  const sink = new Writable({ write: (c: Buffer, _e, done) => (logs.push(c.toString()), done()) });
  const operator = startOperator({
    kubeConfig: kc, log: createLogger('debug', sink), metrics: createMetrics(), namespaces: [ns.name], operatorNamespace: ns.name,
    leaderElection: { identity: 'rbac-test', onLost: () => undefined },
  });
  const k = api(admin, ns.name);
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
    await k.createServiceUser('worker', { email: 'ops@example.com', accounts: ['acme'] });
    await admin.request('POST', resourcePath(resources.roleBindings, ns.name), {
      apiVersion: 'serviceusers.dev/v1alpha1', kind: 'RoleBinding', metadata: { name: 'worker-signs' },
      spec: { roleRef: { name: `${release}.signer` }, subjects: [{ kind: 'ServiceUser', name: 'worker' }] },
    });
    await k.waitFor('worker', 'Active with permissions', (o) => {
      const s = o.status as { phase?: string; permissions?: unknown[]; certificate?: unknown } | undefined;
      return s?.phase === 'Active' && !!s.certificate && (s.permissions ?? []).length === 1;
    });
    await eventually('the Role status', async () => ((await admin.get(resourcePath(resources.roles, undefined, `${release}.signer`))).status ? true : undefined));
    await k.patchServiceUser('worker', { disabled: true });
    await k.waitFor('worker', 'Disabled', (o) => (o.status as { phase?: string } | undefined)?.phase === 'Disabled');
    await admin.request('DELETE', resourcePath(resources.serviceUsers, ns.name, 'worker'));
    await eventually('deletion completed by the finalizer', () => k.serviceUser('worker').then(() => undefined, () => true));
  } finally {
    await operator.stop();
  }
  const log = logs.join('');
  expect(log).not.toMatch(/ 403 |forbidden/i);
});
