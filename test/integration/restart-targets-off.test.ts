// The chart with restartTargets.enabled=false: the controller, run as its ServiceAccount under
// exactly the rendered RBAC (no apps rule), still issues the credentials of a ServiceUser that
// names a restart target, and says in RestartTargetsReady why the target is left alone —
// where a 403 used to fail the reconcile before its status was written.
import { execFile } from 'node:child_process';
import path from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { loadAll } from 'js-yaml';
import { afterAll, expect, it } from 'vitest';
import { KubeClient, resourcePath, type KubeObject } from '../../src/controller/kube.ts';
import { createMetrics } from '../../src/observability/metrics.ts';
import { startOperator } from '../../src/operator.ts';
import { repoRoot } from '../cluster/controlplane.ts';
import { helmBinary } from '../helm/helm.ts';
import { testLogger } from '../logs.ts';
import { kubeConfig, useNamespace } from '../kube.ts';
import { api, decodeSecret } from '../operator.ts';

const ns = useNamespace('rt-off');
const admin = new KubeClient(kubeConfig());
const clusterScoped: string[] = [];
afterAll(async () => {
  for (const p of clusterScoped) await admin.request('DELETE', p).catch(() => undefined);
  admin.close();
});
const plural: Record<string, string> = { ServiceAccount: 'serviceaccounts', ClusterRole: 'clusterroles', ClusterRoleBinding: 'clusterrolebindings', Role: 'roles', RoleBinding: 'rolebindings' };

it('issues credentials and reports TargetForbidden under the RBAC of restartTargets.enabled=false', { timeout: 180_000 }, async () => {
  const release = `rt-${ns.name.slice(-6)}`;
  const rendered = await new Promise<string>((resolve, reject) => execFile(helmBinary(), ['template', release, path.join(repoRoot, 'charts/service-user-operator'), '--namespace', ns.name, '--kube-version', '1.34.4',
    '--set', `watchNamespaces={${ns.name}}`, '--set', 'roleCatalog.enabled=false', '--set', 'restartTargets.enabled=false'], { maxBuffer: 16 << 20 }, (err, out, stderr) => (err ? reject(new Error(stderr)) : resolve(out))));
  const docs = (loadAll(rendered) as (KubeObject | null)[]).filter((d): d is KubeObject => !!d && !!plural[d.kind!] && d.apiVersion !== 'serviceusers.dev/v1alpha1');
  const controllerSa = `${release}-service-user-operator`;
  // The controller's ServiceAccount and what is bound to it, nothing else.
  const bound = new Set(docs.filter((d) => d.kind?.endsWith('Binding') && ((d.subjects ?? []) as { name: string }[]).some((s) => s.name === controllerSa)).map((b) => (b.roleRef as { name: string }).name));
  for (const doc of docs) {
    const isRole = doc.kind === 'Role' || doc.kind === 'ClusterRole';
    const isBinding = doc.kind!.endsWith('Binding');
    if (doc.kind === 'ServiceAccount' ? doc.metadata.name !== controllerSa : isRole ? !bound.has(doc.metadata.name) : isBinding && !bound.has((doc.roleRef as { name: string }).name)) continue;
    expect(JSON.stringify(doc.rules ?? [])).not.toContain('"apps"');
    const namespaced = doc.kind !== 'ClusterRole' && doc.kind !== 'ClusterRoleBinding';
    const p = resourcePath({ group: doc.apiVersion === 'v1' ? '' : 'rbac.authorization.k8s.io', version: 'v1', plural: plural[doc.kind!]!, namespaced }, doc.metadata.namespace, doc.metadata.name);
    await admin.apply(p, doc, 'rt-off-test');
    if (!namespaced) clusterScoped.push(p);
  }
  const { status } = await admin.request<{ status: { token: string } }>('POST', `/api/v1/namespaces/${ns.name}/serviceaccounts/${controllerSa}/token`, { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { expirationSeconds: 3600 } });
  const kc = new KubeConfig();
  kc.loadFromClusterAndUser(kubeConfig().getCurrentCluster()!, { name: controllerSa, token: status.token });

  // A workload that reads the Secret: what restartTargets would roll out if it were granted.
  await admin.request('POST', `/apis/apps/v1/namespaces/${ns.name}/deployments`, {
    apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'worker' },
    spec: { selector: { matchLabels: { app: 'worker' } }, template: { metadata: { labels: { app: 'worker' } }, spec: { containers: [{ name: 'app', image: 'registry.example/app:1', envFrom: [{ secretRef: { name: 'worker-credentials' } }] }] } } },
  });
  const logs: string[] = [];
  const operator = startOperator({ kubeConfig: kc, log: testLogger(logs), metrics: createMetrics(), namespaces: [ns.name], operatorNamespace: ns.name });
  try {
    await operator.ready;
    const k = api(admin, ns.name);
    await k.createServiceUser('worker', { email: 'ops@example.com', accounts: ['acme'], credentials: { restartTargets: [{ kind: 'Deployment', name: 'worker' }] } });
    const su = await k.waitFor('worker', 'Active with RestartTargetsReady', (o) => {
      const s = o.status as { phase?: string; conditions?: { type: string }[] } | undefined;
      return s?.phase === 'Active' && !!s.conditions?.some((c) => c.type === 'RestartTargetsReady');
    }, 90_000);
    const condition = ((su.status as { conditions: { type: string; status: string; reason: string; message: string }[] }).conditions).find((c) => c.type === 'RestartTargetsReady')!;
    expect(condition).toMatchObject({ status: 'False', reason: 'TargetForbidden' });
    expect(condition.message).toContain('restartTargets.enabled');
    expect(decodeSecret((await k.secret('worker-credentials'))!).token).toMatch(/^suo_/);
    const deployment = await admin.get<{ spec: { template: { metadata: { annotations?: Record<string, string> } } } }>(`/apis/apps/v1/namespaces/${ns.name}/deployments/worker`);
    expect(deployment.spec.template.metadata.annotations?.['serviceusers.dev/credentials-digest']).toBeUndefined();
  } finally {
    await operator.stop();
  }
});
