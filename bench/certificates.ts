// 200 client certificates from the built-in CA versus the same 200 through cert-manager's CA
// issuer: same run, same API server (the local control plane), same operator. Also 200 bare
// cert-manager Certificates without the operator, to show what cert-manager alone costs.
// Times are from creating the objects until the last one is ready.
import type { KubeClient } from '../src/controller/kube.ts';
import { createCa } from '../src/credentials/ca.ts';
import { createLogger } from '../src/observability/logger.ts';
import { createMetrics } from '../src/observability/metrics.ts';
import { startOperator } from '../src/operator.ts';
import { startCertManager } from '../test/certmanager/certmanager.ts';
import { withControlPlane } from './cluster.ts';

type Condition = { type: string; status: string };
const isReady = (o: { status?: { conditions?: Condition[] } }) => o.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;

async function timeUntilReady(client: KubeClient, listPath: string, count: number, create: (i: number) => Promise<unknown>): Promise<number> {
  const started = performance.now();
  for (let i = 0; i < count; i += 20) await Promise.all(Array.from({ length: Math.min(20, count - i) }, (_, j) => create(i + j)));
  for (;;) {
    const list = await client.get<{ items: { status?: { conditions?: Condition[] } }[] }>(listPath);
    if (list.items.filter(isReady).length >= count) return (performance.now() - started) / 1000;
    if (performance.now() - started > 600_000) throw new Error(`${listPath}: not all ${count} ready after 10 minutes`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export function benchCertificates(count = 200) {
  return withControlPlane('certificates', ['bench', 'builtin', 'via-cert-manager', 'cert-manager-only'], async ({ controlPlane, kc, client }) => {
    const certManager = await startCertManager(controlPlane.kubeconfig);
    const operator = startOperator({ kubeConfig: kc, log: createLogger('warn', process.stderr), metrics: createMetrics(), operatorNamespace: 'bench', concurrency: 8 });
    try {
      await operator.ready;
      const ca = await createCa({ commonName: 'bench issuer CA' });
      for (const ns of ['via-cert-manager', 'cert-manager-only']) {
        await client.request('POST', `/api/v1/namespaces/${ns}/secrets`, {
          apiVersion: 'v1', kind: 'Secret', type: 'kubernetes.io/tls', metadata: { name: 'issuer-ca' },
          data: { 'tls.crt': Buffer.from(ca.certPem).toString('base64'), 'tls.key': Buffer.from(ca.keyPem).toString('base64') },
        });
        await client.request('POST', `/apis/cert-manager.io/v1/namespaces/${ns}/issuers`, {
          apiVersion: 'cert-manager.io/v1', kind: 'Issuer', metadata: { name: 'ca' }, spec: { ca: { secretName: 'issuer-ca' } },
        });
      }
      for (let i = 0; ; i++) {
        const issuers = await client.get<{ items: { status?: { conditions?: Condition[] } }[] }>('/apis/cert-manager.io/v1/issuers');
        if (issuers.items.filter(isReady).length === 2) break;
        if (i > 600) throw new Error('issuers not ready');
        await new Promise((r) => setTimeout(r, 100));
      }
      const serviceUser = (ns: string, i: number, issuerRef: object | null) =>
        client.request('POST', `/apis/serviceusers.dev/v1alpha1/namespaces/${ns}/serviceusers`, {
          apiVersion: 'serviceusers.dev/v1alpha1', kind: 'ServiceUser', metadata: { name: `su-${i}` },
          spec: { email: 'bench@example.com', accounts: ['bench'], credentials: { token: { enabled: false }, clientCertificate: { issuerRef, pkcs12: false } } },
        });
      const builtIn = await timeUntilReady(client, '/apis/serviceusers.dev/v1alpha1/namespaces/builtin/serviceusers', count, (i) => serviceUser('builtin', i, null));
      const viaCertManager = await timeUntilReady(client, '/apis/serviceusers.dev/v1alpha1/namespaces/via-cert-manager/serviceusers', count, (i) =>
        serviceUser('via-cert-manager', i, { name: 'ca', kind: 'Issuer', group: 'cert-manager.io' }),
      );
      const certManagerOnly = await timeUntilReady(client, '/apis/cert-manager.io/v1/namespaces/cert-manager-only/certificates', count, (i) =>
        client.request('POST', '/apis/cert-manager.io/v1/namespaces/cert-manager-only/certificates', {
          apiVersion: 'cert-manager.io/v1', kind: 'Certificate', metadata: { name: `c-${i}` },
          spec: { secretName: `c-${i}`, commonName: `client-${i}`, usages: ['client auth', 'digital signature'], privateKey: { algorithm: 'ECDSA', size: 256 }, issuerRef: { name: 'ca', kind: 'Issuer' } },
        }),
      );
      const rate = (s: number) => Math.round((count / s) * 10) / 10;
      return {
        name: 'client-certificates',
        count,
        kubernetes: controlPlane.version,
        certManager: certManager.version,
        builtInCa: { seconds: round(builtIn), perSecond: rate(builtIn) },
        certManagerCaIssuerViaOperator: { seconds: round(viaCertManager), perSecond: rate(viaCertManager) },
        certManagerCaIssuerAlone: { seconds: round(certManagerOnly), perSecond: rate(certManagerOnly) },
        ratio: {
          certManagerViaOperatorOverBuiltIn: round(viaCertManager / builtIn),
          certManagerAloneOverBuiltIn: round(certManagerOnly / builtIn),
        },
      };
    } finally {
      await operator.stop();
      await certManager.stop();
    }
  });
}

const round = (x: number) => Math.round(x * 100) / 100;
