// Tokens do not wait on the CA (issue 12 item 10): the operator process pointed at an operator
// namespace that does not exist issues tokens at once, marks only the users that want a
// built-in certificate as waiting (condition and event), tells the person at the terminal in
// one line what to do, and issues the certificates — and starts the verification service —
// as soon as the namespace is there.
import { request } from 'node:https';
import { afterAll, expect, it } from 'vitest';
import { KubeClient } from '../../src/controller/kube.ts';
import { tokenSha256 } from '../../src/credentials/token.ts';
import { eventually, kubeConfig, useNamespace } from '../kube.ts';
import { api, decodeSecret, useOperatorProcesses } from '../operator.ts';
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

type Status = { phase?: string; tokens?: { state: string; sha256: string }[]; certificate?: { serialNumber: string }; conditions?: { type: string; status: string; reason: string; message: string }[] };
const statusOf = (o: { status?: unknown }) => (o.status ?? {}) as Status;
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

it('issues tokens without the CA, marks certificate users waiting, says what to do in one line, and catches up when the namespace appears', { timeout: 120_000 }, async () => {
  const verify = await freePort();
  const output: string[] = [];
  processes.start(
    ['--operator-namespace', operatorNs, '--log-format', 'text', '--verify-bind-address', `127.0.0.1:${verify}`, '--metrics-bind-address', '0', '--health-probe-bind-address', '0'],
    { output },
  );
  await k.createServiceUser('tokens-only', { email: 'ops@example.com', accounts: ['acme'], credentials: { clientCertificate: { enabled: false } } });
  await k.createServiceUser('with-cert', { email: 'ops@example.com', accounts: ['acme'] });

  // The token-only user is complete without the CA.
  const tokensOnly = await k.waitFor('tokens-only', 'Active', (o) => statusOf(o).phase === 'Active', 30_000);
  const token = decodeSecret((await k.secret('tokens-only-credentials'))!).token!;
  expect(statusOf(tokensOnly).tokens?.[0]?.sha256).toBe(tokenSha256(token));

  // The certificate user has its token, and waits for its certificate, saying why.
  const waiting = await k.waitFor('with-cert', 'waiting for the CA', (o) => ready(o)?.reason === 'CAUnavailable', 30_000);
  expect(statusOf(waiting).phase).toBe('Pending');
  const hint = `namespace ${operatorNs} does not exist: create it with "kubectl create namespace ${operatorNs}", or pass --operator-namespace`;
  expect(ready(waiting)!.message).toContain(hint);
  const secret = decodeSecret((await k.secret('with-cert-credentials'))!);
  expect(statusOf(waiting).tokens?.find((t) => t.state === 'Active')?.sha256).toBe(tokenSha256(secret.token!));
  expect(secret['tls.crt']).toBeUndefined();
  const events = await eventually('the CAUnavailable event', async () => {
    const list = (await k.events('with-cert')).filter((e) => e.reason === 'CAUnavailable');
    return list.length ? list : undefined;
  });
  expect(events[0]).toMatchObject({ type: 'Warning', message: expect.stringContaining(hint) });

  // The verification service waits too (its serving certificate comes from the CA).
  expect(await listening(verify)).toBe(false);
  // One line at the terminal, once, however many retries follow.
  await new Promise((r) => setTimeout(r, 3_000));
  const all = output.join('').split('\n').filter((l) => l.includes(hint));
  const lines = all.filter((l) => / WARN /.test(l));
  expect(lines).toHaveLength(1);
  // Besides it, only the waiting user's own event, logged on a line about that user.
  expect(all.filter((l) => !/ WARN /.test(l)).every((l) => l.includes('serviceUser='))).toBe(true);
  expect(lines[0]).toMatch(/^\S+ WARN {2}namespace .* does not exist: .*; meanwhile tokens are issued, client certificates and the verification service wait/);

  // The namespace appears: the CA is created, the waiting certificate issued, verification served.
  await client.request('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: operatorNs, labels: { 'serviceusers.dev/test': 'true' } } });
  const issued = await k.waitFor('with-cert', 'Active with its certificate', (o) => statusOf(o).phase === 'Active' && !!statusOf(o).certificate, 45_000);
  expect(ready(issued)).toMatchObject({ status: 'True' });
  expect(decodeSecret((await k.secret('with-cert-credentials'))!)['tls.crt']).toContain('BEGIN CERTIFICATE');
  // Its token was kept: the certificate did not cost a new one.
  expect(decodeSecret((await k.secret('with-cert-credentials'))!).token).toBe(secret.token);
  await eventually('the verification service', async () => ((await listening(verify)) ? true : undefined), 15_000);
  expect(output.join('')).toContain('the built-in CA is available');
});
