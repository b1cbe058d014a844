// A missing operator namespace (issue 12 item 10). The CA and the ledger key live there, and
// every token record is MACed with that key, so without the namespace nothing can be issued:
// a local run (npm start against a fresh cluster) creates it and goes ahead at once; with
// --no-create-operator-namespace the operator says in one line what to do, waits, and issues
// everything — certificates and the verification service included — once the namespace is there.
import { request } from 'node:https';
import { afterAll, expect, it } from 'vitest';
import { KubeClient } from '../../src/controller/kube.ts';
import { tokenSha256 } from '../../src/credentials/token.ts';
import { eventually, kubeConfig, useNamespace } from '../kube.ts';
import { api, decodeSecret, useOperatorProcesses, statusOf } from '../operator.ts';
import { freePort } from '../net.ts';

const ns = useNamespace('cawait');
const client = new KubeClient(kubeConfig());
const k = api(client, ns.name);
const processes = useOperatorProcesses(ns);
const operatorNs = `${ns.name}-op`;
afterAll(async () => {
  await client.request('DELETE', `/api/v1/namespaces/${operatorNs}`).catch(() => undefined);
  client.close();
});

const ready = (o: { status?: unknown }) => statusOf(o).conditions?.find((c) => c.type === 'Ready');

/** GET over TLS without trusting anything: whether the verification service listens at all. */
const listening = (port: number) =>
  new Promise<boolean>((resolve) => {
    const req = request({ host: '127.0.0.1', port, path: '/v1/ca.crt', rejectUnauthorized: false, timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => req.destroy());
    req.end();
  });

it('a local run creates the missing operator namespace, says so in one line, and issues at once', { timeout: 120_000 }, async () => {
  const output: string[] = [];
  const operatorNs2 = `${operatorNs}-auto`;
  const child = processes.start(['--operator-namespace', operatorNs2, '--log-format', 'text', '--verify-bind-address', '0', '--metrics-bind-address', '0', '--health-probe-bind-address', '0'], { output });
  try {
    await k.createServiceUser('local-run', { email: 'ops@example.com', accounts: ['acme'] });
    const active = await k.waitFor('local-run', 'Active with its certificate', (o) => statusOf(o).phase === 'Active' && !!statusOf(o).certificate, 45_000);
    expect(ready(active)).toMatchObject({ status: 'True' });
    const lines = output.join('').split('\n').filter((l) => l.includes(`namespace ${operatorNs2} did not exist: created it`));
    expect(lines).toHaveLength(1);
    expect(output.join('')).not.toMatch(/ WARN .*does not exist/);
  } finally {
    child.kill('SIGKILL');
    await client.request('DELETE', `/api/v1/namespaces/${operatorNs2}`).catch(() => undefined);
  }
});

it('without creating it: says what to do in one line, issues nothing unsigned, and catches up when the namespace appears', { timeout: 120_000 }, async () => {
  const verify = await freePort();
  const output: string[] = [];
  processes.start(
    ['--operator-namespace', operatorNs, '--no-create-operator-namespace', '--log-format', 'text', '--log-level', 'debug', '--verify-bind-address', `127.0.0.1:${verify}`, '--metrics-bind-address', '0', '--health-probe-bind-address', '0'],
    { output },
  );
  await k.createServiceUser('tokens-only', { email: 'ops@example.com', accounts: ['acme'], credentials: { clientCertificate: { enabled: false } } });
  await k.createServiceUser('with-cert', { email: 'ops@example.com', accounts: ['acme'] });

  const hint = `namespace ${operatorNs} does not exist: create it with "kubectl create namespace ${operatorNs}", or pass --operator-namespace`;
  await eventually('the one line at the terminal', async () => (output.join('').includes(hint) ? true : undefined), 30_000);
  // One line, once, however many retries follow (each a debug line); nothing is written meanwhile.
  const retries = () => output.join('').split('\n').filter((l) => l.includes('still waiting for the built-in CA')).length;
  await eventually('two retries after the line', async () => (retries() >= 2 ? true : undefined), 30_000);
  const lines = output.join('').split('\n').filter((l) => l.includes(hint));
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^\S+ WARN {2}namespace .* does not exist: .*; meanwhile nothing is issued/);
  expect(statusOf((await k.serviceUser('tokens-only')) as { status?: unknown }).tokens ?? []).toEqual([]);
  expect(await k.secret('tokens-only-credentials')).toBeUndefined();
  // The verification service waits too (its serving certificate comes from the CA).
  expect(await listening(verify)).toBe(false);

  // The namespace appears: the ledger key and the CA are created, everything issued, verification served.
  await client.request('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: operatorNs, labels: { 'serviceusers.dev/test': 'true' } } });
  const tokensOnly = await k.waitFor('tokens-only', 'Active', (o) => statusOf(o).phase === 'Active', 45_000);
  const token = decodeSecret((await k.secret('tokens-only-credentials'))!).token!;
  expect(statusOf(tokensOnly).tokens?.[0]?.sha256).toBe(tokenSha256(token));
  const issued = await k.waitFor('with-cert', 'Active with its certificate', (o) => statusOf(o).phase === 'Active' && !!statusOf(o).certificate, 45_000);
  expect(ready(issued)).toMatchObject({ status: 'True' });
  expect(decodeSecret((await k.secret('with-cert-credentials'))!)['tls.crt']).toContain('BEGIN CERTIFICATE');
  await eventually('the verification service', async () => ((await listening(verify)) ? true : undefined), 15_000);
  expect(output.join('')).toContain('the built-in CA is available');
});
