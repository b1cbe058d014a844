// Expiry: N ServiceUsers whose end dates are spread over 60 s. For each: how late the
// verification service refuses the token (it checks the time itself: target 0) and how late
// the Secret is wiped (target p99 ≤ 1 s), measured by a watch on the Secrets.
import { request } from 'node:https';
import { Informer } from '../src/controller/informer.ts';
import { resourcePath } from '../src/controller/kube.ts';
import { resources } from '../src/api/resources.ts';
import { createLogger } from '../src/observability/logger.ts';
import { createMetrics } from '../src/observability/metrics.ts';
import { startOperator } from '../src/operator.ts';
import { withControlPlane } from './cluster.ts';
import { freePort } from '../test/net.ts';
import { callerCa, type CallerCertificate } from '../test/callers.ts';

/** A TokenReview as a kube-apiserver asks it: with its webhook client certificate. */
function tokenReview(port: number, token: string, caller: CallerCertificate): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method: 'POST', path: '/apis/authentication.k8s.io/v1/tokenreviews', rejectUnauthorized: false, cert: caller.certPem, key: caller.keyPem, headers: { 'content-type': 'application/json' } }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve((JSON.parse(body) as { status: { authenticated: boolean } }).status.authenticated));
    });
    req.on('error', reject);
    req.end(JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token } }));
  });
}

const percentile = (xs: number[], p: number) => {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
};

export function benchExpiry(count = 1000) {
  return withControlPlane('expiry', ['service-user-operator', 'expiry'], async ({ kc, client }) => {
    const port = await freePort();
    const webhookCa = await callerCa('bench webhook CA');
    const webhook = await webhookCa.issue('kube-apiserver');
    const operator = startOperator({
      kubeConfig: kc, log: createLogger('warn', process.stderr), metrics: createMetrics(), operatorNamespace: 'service-user-operator', namespaces: ['expiry'], concurrency: 8,
      verification: { address: `127.0.0.1:${port}`, tokenReviewCaPems: [webhookCa.certPem] },
    });
    const secrets = new Informer(client, { resource: resources.secrets, namespace: 'expiry', labelSelector: 'serviceusers.dev/name' });
    const wiped = new Map<string, number>();
    secrets.onChange((type, s) => {
      if (type !== 'DELETED' && !(s.data as Record<string, string> | undefined)?.token && !wiped.has(s.metadata.name)) wiped.set(s.metadata.name, Date.now());
    });
    try {
      await operator.ready;
      const first = Date.now() + Math.max(60_000, count * 60);
      const ends = Array.from({ length: count }, (_, i) => first + Math.floor((i * 60_000) / count));
      for (let i = 0; i < count; i += 50) {
        await Promise.all(ends.slice(i, i + 50).map((end, j) =>
          client.request('POST', resourcePath(resources.serviceUsers, 'expiry'), {
            apiVersion: 'serviceusers.dev/v1alpha1', kind: 'ServiceUser', metadata: { name: `su-${i + j}` },
            spec: { email: 'bench@example.com', accounts: ['bench'], endDate: new Date(end).toISOString(), credentials: { clientCertificate: { enabled: false } } },
          })));
      }
      const tokens = new Map<number, string>();
      for (;;) {
        const list = await client.get<{ items: { metadata: { name: string }; data?: Record<string, string> }[] }>(`${resourcePath(resources.secrets, 'expiry')}?labelSelector=serviceusers.dev%2Fname`);
        for (const s of list.items) if (s.data?.token) tokens.set(Number(s.metadata.name.split('-')[1]), Buffer.from(s.data.token, 'base64').toString());
        const users = await client.get<{ items: { status?: { phase?: string } }[] }>(resourcePath(resources.serviceUsers, 'expiry'));
        if (tokens.size === count && users.items.filter((u) => u.status?.phase === 'Active').length === count) break;
        if (Date.now() > first - 2000) throw new Error(`rollout of ${count} did not finish before the first end date`);
        await new Promise((r) => setTimeout(r, 200));
      }
      secrets.start();
      await secrets.synced;

      // Every 10th: a TokenReview half a second before its end (accepted) and right at it (refused).
      const refusal: { acceptedBefore: boolean; refusedAt: boolean; lateMs: number }[] = [];
      await Promise.all(
        ends.map(async (end, i) => {
          if (i % 10) return;
          await new Promise((r) => setTimeout(r, end - 500 - Date.now()));
          const acceptedBefore = await tokenReview(port, tokens.get(i)!, webhook);
          await new Promise((r) => setTimeout(r, Math.max(0, end - Date.now())));
          const askedAt = Date.now();
          const refusedAt = !(await tokenReview(port, tokens.get(i)!, webhook));
          refusal.push({ acceptedBefore, refusedAt, lateMs: askedAt - end });
        }),
      );
      await new Promise((r) => setTimeout(r, 5000));
      const lateness = ends.map((end, i) => (wiped.get(`su-${i}-credentials`) ?? Infinity) - end);
      const finite = lateness.filter(Number.isFinite);
      return {
        name: 'expiry',
        count,
        spreadSeconds: 60,
        tokenRefusal: {
          sampled: refusal.length,
          acceptedJustBefore: refusal.filter((r) => r.acceptedBefore).length,
          refusedAtTheEnd: refusal.filter((r) => r.refusedAt).length,
          target: 'all refused at the end date: lateness 0 (the verifier checks the time itself)',
        },
        secretWipeLatenessMs: {
          p50: percentile(finite, 50),
          p99: percentile(finite, 99),
          max: Math.max(...finite),
          notWiped: lateness.length - finite.length,
          early: finite.filter((x) => x < 0).length,
          target: 'p99 ≤ 1000',
        },
      };
    } finally {
      await secrets.stop();
      await operator.stop();
    }
  });
}
