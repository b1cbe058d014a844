// Rollout: N ServiceUsers applied at once until all are Ready, against the floor — a plain
// script making the same essential API writes with the same client (N ServiceUsers, N
// Secrets, N status updates), same concurrency. Token only, then with client certificates
// from the built-in CA. Same run, same API server.
import { resourcePath, type KubeClient } from '../src/controller/kube.ts';
import { resources } from '../src/api/resources.ts';
import { issueToken } from '../src/credentials/token.ts';
import { createLogger } from '../src/observability/logger.ts';
import { createMetrics } from '../src/observability/metrics.ts';
import { startOperator } from '../src/operator.ts';
import { withControlPlane } from './cluster.ts';

const concurrency = 8;

async function pool<T>(items: T[], worker: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < items.length) await worker(items[next++]!);
  }));
}

const serviceUser = (name: string, certificates: boolean) => ({
  apiVersion: 'serviceusers.dev/v1alpha1', kind: 'ServiceUser', metadata: { name },
  spec: { email: 'bench@example.com', accounts: ['bench'], credentials: { clientCertificate: { enabled: certificates, pkcs12: false } } },
});

async function floor(client: KubeClient, ns: string, count: number): Promise<number> {
  const names = Array.from({ length: count }, (_, i) => `su-${i}`);
  const started = performance.now();
  await pool(names, async (name) => {
    const su = await client.request<{ metadata: { uid: string } }>('POST', resourcePath(resources.serviceUsers, ns), serviceUser(name, false));
    const token = issueToken();
    await client.apply(resourcePath(resources.secrets, ns, `${name}-credentials`), {
      apiVersion: 'v1', kind: 'Secret', type: 'Opaque',
      metadata: { name: `${name}-credentials`, namespace: ns, ownerReferences: [{ apiVersion: 'serviceusers.dev/v1alpha1', kind: 'ServiceUser', name, uid: su.metadata.uid, controller: true }] },
      data: { token: Buffer.from(token.token).toString('base64') },
    }, 'floor');
    await client.apply(resourcePath(resources.serviceUsers, ns, name, 'status'), {
      apiVersion: 'serviceusers.dev/v1alpha1', kind: 'ServiceUser', metadata: { name, namespace: ns },
      status: { phase: 'Active', tokens: [{ id: token.id, sha256: token.sha256, createdAt: new Date().toISOString(), state: 'Active' }], conditions: [{ type: 'Ready', status: 'True', reason: 'Active', message: 'floor', lastTransitionTime: new Date().toISOString().replace(/\.\d+Z$/, 'Z') }] },
    }, 'floor');
  });
  return (performance.now() - started) / 1000;
}

async function withOperator(client: KubeClient, ns: string, count: number, certificates: boolean): Promise<number> {
  const names = Array.from({ length: count }, (_, i) => `su-${i}`);
  const started = performance.now();
  await pool(names, (name) => client.request('POST', resourcePath(resources.serviceUsers, ns), serviceUser(name, certificates)));
  for (;;) {
    const list = await client.get<{ items: { status?: { phase?: string } }[] }>(resourcePath(resources.serviceUsers, ns));
    if (list.items.filter((o) => o.status?.phase === 'Active').length === count) return (performance.now() - started) / 1000;
    if (performance.now() - started > 900_000) throw new Error(`${ns}: not all Active after 15 minutes`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export function benchRollout(count = 1000) {
  return withControlPlane('rollout', ['service-user-operator', 'floor', 'tokens', 'certificates'], async ({ controlPlane, kc, client }) => {
    const metrics = createMetrics();
    const operator = startOperator({ kubeConfig: kc, log: createLogger('warn', process.stderr), metrics, operatorNamespace: 'service-user-operator', namespaces: ['tokens', 'certificates'], concurrency });
    try {
      await operator.ready;
      const floorSeconds = await floor(client, 'floor', count);
      // The operator's own requests per ServiceUser, by verb and resource: where the time goes.
      const requests = async () => new Map((await metrics.apiRequests.get()).values.map((v) => [`${v.labels.verb} ${v.labels.resource}`, v.value]));
      const perUser = (after: Map<string, number>, before: Map<string, number>) =>
        Object.fromEntries([...after].map(([k, v]) => [k, Math.round(((v - (before.get(k) ?? 0)) / count) * 100) / 100] as const).filter(([k, v]) => v > 0 && !k.startsWith('watch')));
      const r0 = await requests();
      const tokenSeconds = await withOperator(client, 'tokens', count, false);
      const r1 = await requests();
      const certificateSeconds = await withOperator(client, 'certificates', count, true);
      const r2 = await requests();
      const round = (x: number) => Math.round(x * 100) / 100;
      return {
        name: 'rollout',
        count,
        concurrency,
        kubernetes: controlPlane.version,
        floor: { seconds: round(floorSeconds), writesPerServiceUser: 3 },
        operatorTokens: { seconds: round(tokenSeconds), ratioToFloor: round(tokenSeconds / floorSeconds), target: 1.5, requestsPerServiceUser: perUser(r1, r0) },
        operatorTokensAndCertificates: { seconds: round(certificateSeconds), ratioToFloor: round(certificateSeconds / floorSeconds), target: 2, requestsPerServiceUser: perUser(r2, r1) },
      };
    } finally {
      await operator.stop();
    }
  });
}
