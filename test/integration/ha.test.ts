// Two replicas: one leader reconciles, both serve verification; SIGKILL the leader and the
// other takes the Lease over within 20 s, while verification keeps answering.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { KubeClient } from '../../src/controller/kube.ts';
import { eventually, kubeConfig, useNamespace } from '../kube.ts';
import { api, decodeSecret, useOperatorProcesses } from '../operator.ts';
import { freePort } from '../net.ts';
import { callerCa, type CallerCertificate } from '../callers.ts';

const ns = useNamespace('ha');
const client = new KubeClient(kubeConfig());
const k = api(client, ns.name);
const processes = useOperatorProcesses(ns);
afterAll(() => client.close());
// The TokenReview caller authenticates as a kube-apiserver's webhook does: a client certificate.
const dir = mkdtempSync(path.join(tmpdir(), 'ha-'));
let webhook: CallerCertificate;
beforeAll(async () => {
  const ca = await callerCa('ha webhook CA');
  writeFileSync(path.join(dir, 'webhook-ca.crt'), ca.certPem);
  webhook = await ca.issue('kube-apiserver');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));


async function replica(id: string) {
  const ports = { verify: await freePort(), metrics: await freePort() };
  const child = processes.start(
    [
      '--leader-elect',
      '--leader-election-id', id,
      '--verify-bind-address', `127.0.0.1:${ports.verify}`,
      '--tokenreview-client-ca', path.join(dir, 'webhook-ca.crt'),
      // Plain HTTP on loopback: the test reads the leader gauge, not the guard (metrics.test.ts).
      '--metrics-bind-address', `127.0.0.1:${ports.metrics}`, '--no-metrics-secure',
      '--health-probe-bind-address', '0',
    ],
  );
  return { id, child, ...ports };
}

const holder = async () =>
  (await client.get<{ spec: { holderIdentity?: string } }>(`/apis/coordination.k8s.io/v1/namespaces/${ns.name}/leases/service-user-operator`).catch(() => undefined))?.spec.holderIdentity;

function tokenReview(port: number, token: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, method: 'POST', path: '/apis/authentication.k8s.io/v1/tokenreviews', rejectUnauthorized: false, cert: webhook.certPem, key: webhook.keyPem, headers: { 'content-type': 'application/json' }, timeout: 2000 }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve((JSON.parse(body) as { status?: { authenticated?: boolean } }).status?.authenticated === true));
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => req.destroy());
    req.end(JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token } }));
  });
}

it('fails over within 20 s when the leader is killed, and verification answers throughout', { timeout: 120_000 }, async () => {
  const a = await replica('replica-a');
  await eventually('replica-a to lead', async () => ((await holder()) === 'replica-a' ? true : undefined), 30_000);
  const b = await replica('replica-b');
  await k.createServiceUser('before', { email: 'ops@example.com', accounts: ['acme'] });
  await k.waitFor('before', 'Active', (o) => (o.status as { phase?: string } | undefined)?.phase === 'Active', 30_000);
  const token = decodeSecret((await k.secret('before-credentials'))!).token!;
  // The follower serves verification too, from its own cache.
  await eventually('replica-b to verify', async () => ((await tokenReview(b.verify, token)) ? true : undefined), 30_000);
  expect(await holder()).toBe('replica-a');
  const followerMetrics = await (await fetch(`http://127.0.0.1:${b.metrics}/metrics`)).text();
  expect(followerMetrics).toMatch(/^serviceuser_operator_leader 0$/m);

  const answers: boolean[] = [];
  let polling = true;
  const poller = (async () => {
    while (polling) {
      answers.push(await tokenReview(b.verify, token));
      await new Promise((r) => setTimeout(r, 100));
    }
  })();

  a.child.kill('SIGKILL');
  const killed = Date.now();
  await k.createServiceUser('after', { email: 'ops@example.com', accounts: ['acme'] });
  await k.waitFor('after', 'Active under the new leader', (o) => (o.status as { phase?: string } | undefined)?.phase === 'Active', 30_000);
  const takeover = Date.now() - killed;
  polling = false;
  await poller;

  expect(await holder()).toBe('replica-b');
  expect(takeover).toBeLessThan(20_000);
  expect(answers.length).toBeGreaterThan(10);
  expect(answers.every(Boolean)).toBe(true);
  const leaderMetrics = await (await fetch(`http://127.0.0.1:${b.metrics}/metrics`)).text();
  expect(leaderMetrics).toMatch(/^serviceuser_operator_leader 1$/m);
  expect(leaderMetrics).toContain(`serviceuser_info{namespace="${ns.name}",name="after",phase="Active",friendly_name="after"} 1`);
  console.log(`failover: the new leader reconciled ${takeover} ms after the old one was killed`);
});
