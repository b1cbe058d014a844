// The verification service with real consumers: a kube-apiserver (a control plane of this
// file's own, started with the operator as its token webhook and the built-in CA as an extra
// client CA) authenticates service users by token and by certificate, through kubectl; an
// mTLS server that trusts /v1/ca.crt and checks /v1/crl accepts curl with the certificate;
// introspection and authorization answer authenticated callers; malformed requests get 4xx.
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest, createServer, type Server } from 'node:https';
import { connect } from 'node:tls';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KubeClient, resourcePath } from '../../src/controller/kube.ts';
import { resources } from '../../src/api/resources.ts';
import { createCa, loadCa } from '../../src/credentials/ca.ts';
import { issueServingCertificate } from '../../src/credentials/certificate.ts';
import { findSecrets, testLogger } from '../logs.ts';
import { createMetrics } from '../../src/observability/metrics.ts';
import { startOperator, type Operator } from '../../src/operator.ts';
import { startControlPlane, type ControlPlane } from '../cluster/controlplane.ts';
import { applyManifests, installCrds, manifestsIn } from '../crds.ts';
import { eventually } from '../kube.ts';
import { api, decodeSecret, testAccount } from '../operator.ts';
import { freePort } from '../net.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'verify-'));
const logs: string[] = [];
const tokens = new Set<string>();
let controlPlane: ControlPlane;
let client: KubeClient;
let operator: Operator;
let port: number;
let caPem: string;
let caMaterial: { certPem: string; keyPem: string };
let apiserverCa: string;
const ns = 'apps';
const k = () => api(client, ns);


/**
 * Runs a command without blocking the event loop: the operator, and its verification service
 * that the kube-apiserver calls back, run in this very process.
 */
function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ ok: boolean; status: number; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { encoding: 'utf8', env, timeout: 30_000 }, (error, stdout, stderr) => {
      const status = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
      resolve({ ok: !error, status, out: stdout, err: stderr });
    });
  });
}

function kubectl(args: string[], auth: string[]) {
  const empty = path.join(dir, 'empty-kubeconfig');
  writeFileSync(empty, 'apiVersion: v1\nkind: Config\n');
  return run('kubectl', ['--server', controlPlane.server, '--certificate-authority', apiserverCa, ...auth, ...args], { ...process.env, KUBECONFIG: empty });
}
const whoami = async (auth: string[]) => {
  const r = await kubectl(['auth', 'whoami', '-o', 'json'], auth);
  return r.ok ? (JSON.parse(r.out) as { status: { userInfo: { username: string; groups: string[]; extra?: Record<string, string[]> } } }).status.userInfo : r.err;
};

async function credentials(name: string) {
  await k().waitFor(name, `${name} Active`, (o) => (o.status as { phase?: string } | undefined)?.phase === 'Active', 30_000);
  const data = decodeSecret((await k().secret(`${name}-credentials`))!);
  tokens.add(data.token!);
  const cert = path.join(dir, `${name}.crt`);
  const key = path.join(dir, `${name}.key`);
  writeFileSync(cert, data['tls.crt']!);
  writeFileSync(key, data['tls.key']!);
  return { token: data.token!, cert, key, data };
}

/** A POST to the verification service, over TLS that trusts the built-in CA. */
function call(pathname: string, options: { body?: string; type?: string; bearer?: string; cert?: { cert: string; key: string }; method?: string; headers?: Record<string, string> } = {}) {
  return new Promise<{ status: number; body: string; headers: Record<string, unknown> }>((resolve, reject) => {
    const req = httpsRequest(
      {
        host: '127.0.0.1',
        port,
        path: pathname,
        method: options.method ?? 'POST',
        ca: caPem,
        ...(options.cert ? { cert: readFileSync(options.cert.cert), key: readFileSync(options.cert.key) } : {}),
        headers: {
          ...(options.type ? { 'content-type': options.type } : {}),
          ...(options.bearer ? { authorization: `Bearer ${options.bearer}` } : {}),
          ...options.headers,
        },
      },
      (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

beforeAll(async () => {
  const ca = await createCa({ commonName: 'verification test CA' });
  caMaterial = ca;
  caPem = ca.certPem;
  writeFileSync(path.join(dir, 'ca.crt'), ca.certPem);
  port = await freePort();
  const webhook = path.join(dir, 'webhook.kubeconfig');
  writeFileSync(
    webhook,
    `apiVersion: v1
kind: Config
clusters:
- name: verifier
  cluster:
    server: https://127.0.0.1:${port}/apis/authentication.k8s.io/v1/tokenreviews
    certificate-authority: ${path.join(dir, 'ca.crt')}
users:
- name: kube-apiserver
  user: {}
contexts:
- name: webhook
  context: { cluster: verifier, user: kube-apiserver }
current-context: webhook
`,
  );
  mkdirSync(path.join(dir, 'cp'));
  controlPlane = await startControlPlane({
    dir: path.join(dir, 'cp'),
    extraClientCa: path.join(dir, 'ca.crt'),
    apiserverArgs: [`--authentication-token-webhook-config-file=${webhook}`, '--authentication-token-webhook-cache-ttl=1s', '--authentication-token-webhook-version=v1'],
  });
  const kc = new KubeConfig();
  kc.loadFromFile(controlPlane.kubeconfig);
  apiserverCa = path.join(dir, 'apiserver-ca.crt');
  writeFileSync(apiserverCa, Buffer.from(kc.getCurrentCluster()!.caData!, 'base64'));
  client = new KubeClient(kc);
  await installCrds(kc);
  for (const name of ['suo', ns]) await client.request('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
  await client.request('POST', '/api/v1/namespaces/suo/secrets', {
    apiVersion: 'v1', kind: 'Secret', type: 'kubernetes.io/tls', metadata: { name: 'service-user-operator-ca' },
    data: { 'tls.crt': Buffer.from(ca.certPem).toString('base64'), 'tls.key': Buffer.from(ca.keyPem).toString('base64') },
  });
  await applyManifests(client, manifestsIn('config/roles'), ns);
  // The accounts its ServiceUsers name, admitting this file's namespace.
  for (const name of ['acme', 'other']) {
    await client.apply(resourcePath(resources.accounts, undefined, name), testAccount(name, { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'In', values: [ns] }] }), 'tests');
  }
  operator = startOperator({ kubeConfig: kc, log: testLogger(logs), metrics: createMetrics(), operatorNamespace: 'suo', verification: { address: `127.0.0.1:${port}` } });
  await operator.ready;
}, 300_000);

afterAll(async () => {
  await operator?.stop();
  client?.close();
  await controlPlane?.stop();
  const log = logs.join('');
  for (const t of tokens) expect(log).not.toContain(t);
  expect(findSecrets(log)).toEqual([]);
  rmSync(dir, { recursive: true, force: true });
});

describe('a kube-apiserver', () => {
  it('authenticates the service user by its token and by its client certificate', async () => {
    await k().createServiceUser('deployer', { email: 'ops@example.com', accounts: ['acme'], friendlyName: 'Deployer' });
    const { token, cert, key } = await credentials('deployer');
    const byToken = await eventually('the token to be accepted', async () => {
      const who = await whoami(['--token', token]);
      return typeof who === 'string' ? undefined : who;
    });
    expect(byToken.username).toBe(`serviceuser:${ns}:deployer`);
    expect(byToken.groups).toEqual(expect.arrayContaining(['serviceusers', `serviceusers:${ns}`, 'system:authenticated']));
    expect(byToken.extra?.['serviceusers.dev/friendly-name']).toEqual(['Deployer']);
    expect(byToken.extra?.['serviceusers.dev/accounts']).toEqual(['acme']);
    const byCert = await whoami(['--client-certificate', cert, '--client-key', key]);
    expect(byCert).toMatchObject({ username: `serviceuser:${ns}:deployer`, groups: expect.arrayContaining(['serviceusers', `serviceusers:${ns}`]) });
  });

  it('grants exactly what a Kubernetes RBAC RoleBinding to serviceuser:<ns>:<name> says', async () => {
    const { token } = await credentials('deployer');
    await client.request('POST', `/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/roles`, {
      apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'Role', metadata: { name: 'configmap-reader' },
      rules: [{ apiGroups: [''], resources: ['configmaps'], verbs: ['get', 'list'] }],
    });
    await client.request('POST', `/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/rolebindings`, {
      apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'RoleBinding', metadata: { name: 'deployer-reads' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'configmap-reader' },
      subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: `serviceuser:${ns}:deployer` }],
    });
    const can = async (verb: string, resource: string, namespace = ns) => (await kubectl(['auth', 'can-i', verb, resource, '-n', namespace], ['--token', token])).out.trim();
    await eventually('RBAC to apply', async () => ((await can('list', 'configmaps')) === 'yes' ? true : undefined));
    expect(await can('list', 'secrets')).toBe('no');
    expect(await can('delete', 'configmaps')).toBe('no');
    expect(await can('list', 'configmaps', 'default')).toBe('no');
    expect((await kubectl(['get', 'configmaps', '-n', ns], ['--token', token])).ok).toBe(true);
    expect((await kubectl(['get', 'secrets', '-n', ns], ['--token', token])).err).toContain('Forbidden');
  });

  it('stops accepting the token on disable, and again after enable accepts it', async () => {
    const { token } = await credentials('deployer');
    await k().patchServiceUser('deployer', { disabled: true });
    await eventually('the token refused', async () => (typeof (await whoami(['--token', token])) === 'string' ? true : undefined));
    expect(await whoami(['--token', token])).toContain('Unauthorized');
    await k().patchServiceUser('deployer', { disabled: false });
    await eventually('the token accepted again', async () => (typeof (await whoami(['--token', token])) === 'string' ? undefined : true));
  });

  it('stops accepting a token revoked by id; its replacement works', async () => {
    const first = await credentials('deployer');
    await k().patchServiceUser('deployer', { credentials: { token: { revokedTokenIds: [first.token.split('_')[1]] } } });
    await eventually('the revoked token refused', async () => (typeof (await whoami(['--token', first.token])) === 'string' ? true : undefined));
    const second = await eventually('a new token', async () => {
      const c = await credentials('deployer');
      return c.token !== first.token ? c : undefined;
    });
    await eventually('the new token accepted', async () => (typeof (await whoami(['--token', second.token])) === 'string' ? undefined : true));
  });

  it('stops accepting token and certificate at the end date', async () => {
    const end = Date.now() + 8000;
    await k().createServiceUser('temp', { email: 'ops@example.com', accounts: ['acme'], endDate: new Date(end).toISOString() });
    const { token, cert, key } = await credentials('temp');
    await eventually('accepted before the end', async () => (typeof (await whoami(['--token', token])) === 'string' ? undefined : true));
    expect(typeof (await whoami(['--client-certificate', cert, '--client-key', key]))).toBe('object');
    // The verification service refuses from the instant of the end date…
    await new Promise((r) => setTimeout(r, Math.max(0, end - Date.now()) + 50));
    const review = { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token } };
    const answer = JSON.parse((await call('/apis/authentication.k8s.io/v1/tokenreviews', { type: 'application/json', body: JSON.stringify(review) })).body);
    expect(answer.status).toEqual({ authenticated: false, error: 'invalid token' });
    // …and the kube-apiserver once its own webhook cache lets go of the last answer.
    await eventually('the kube-apiserver to refuse the token', async () => (typeof (await whoami(['--token', token])) === 'string' ? true : undefined), 30_000);
    expect(await whoami(['--token', token])).toContain('Unauthorized');
    // An expired certificate authenticates nobody: the request is at most anonymous.
    const byCert = await whoami(['--client-certificate', cert, '--client-key', key]);
    expect(typeof byCert === 'string' ? byCert : byCert.username).not.toContain('serviceuser:');
  });
});

describe('an mTLS server that trusts /v1/ca.crt and checks /v1/crl', () => {
  it('accepts curl with the certificate while live, refuses it on hold and after revocation', async () => {
    await k().createServiceUser('caller', { email: 'ops@example.com', accounts: ['acme'] });
    const { cert, key } = await credentials('caller');
    const trust = (await call('/v1/ca.crt', { method: 'GET' })).body;
    expect(trust).toBe(caPem);
    const serving = await issueServingCertificate(await loadCa(caMaterial), ['127.0.0.1'], new Date());
    const context = async () => ({ key: serving.keyPem, cert: serving.certPem, ca: trust, crl: (await call('/v1/crl', { method: 'GET' })).body, requestCert: true, rejectUnauthorized: true });
    const server: Server = createServer(await context(), (_req, res) => res.end('hello, service user\n'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `https://127.0.0.1:${(server.address() as { port: number }).port}/`;
    const curl = async () => {
      const r = await run('curl', ['-sS', '-m', '10', '--cacert', path.join(dir, 'ca.crt'), '--cert', cert, '--key', key, url]);
      return { status: r.status, stdout: r.out, stderr: r.err };
    };
    try {
      expect((await curl()).stdout).toBe('hello, service user\n');
      await k().patchServiceUser('caller', { disabled: true });
      await eventually('the hold on /v1/crl', async () => {
        server.setSecureContext(await context());
        return (await curl()).status !== 0 ? true : undefined;
      });
      await k().patchServiceUser('caller', { disabled: false });
      await eventually('the release', async () => {
        server.setSecureContext(await context());
        return (await curl()).stdout === 'hello, service user\n' ? true : undefined;
      });
      await client.request('DELETE', `/apis/serviceusers.dev/v1alpha1/namespaces/${ns}/serviceusers/caller`);
      await eventually('the revocation', async () => {
        server.setSecureContext(await context());
        return (await curl()).status !== 0 ? true : undefined;
      });
      // The handshake fails (how curl words it varies with TLS 1.3); no response gets through.
      const refused = await curl();
      expect(refused.status).not.toBe(0);
      expect(refused.stdout).toBe('');
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });
});

describe('introspection and authorization', () => {
  let gateway: Awaited<ReturnType<typeof credentials>>;
  let signer: Awaited<ReturnType<typeof credentials>>;
  beforeAll(async () => {
    await k().createServiceUser('gateway', { email: 'ops@example.com', accounts: ['acme'] });
    await k().createServiceUser('signer', { email: 'ops@example.com', accounts: ['acme', 'other'], credentials: { token: { allowedCIDRs: ['10.20.0.0/16'] } } });
    await k().createServiceUser('plain', { email: 'ops@example.com', accounts: ['acme'] });
    const bind = (name: string, role: string, subject: string, accounts?: string[]) =>
      client.request('POST', `/apis/serviceusers.dev/v1alpha1/namespaces/${ns}/rolebindings`, {
        apiVersion: 'serviceusers.dev/v1alpha1', kind: 'RoleBinding', metadata: { name },
        spec: { roleRef: { name: role }, subjects: [{ kind: 'ServiceUser', name: subject }], ...(accounts ? { accounts } : {}) },
      });
    await bind('gateway-verifies', 'service-user-operator.verifier', 'gateway');
    await bind('signer-signs', 'software-trust-manager.signer', 'signer', ['acme']);
    await k().waitFor('gateway', 'verifier permissions', (o) => ((o.status as { permissions?: unknown[] } | undefined)?.permissions ?? []).length === 2);
    await k().waitFor('signer', 'signer permissions', (o) => ((o.status as { permissions?: unknown[] } | undefined)?.permissions ?? []).length > 0);
    gateway = await credentials('gateway');
    signer = await credentials('signer');
  });

  it('introspects for an authenticated caller, honouring allowedCIDRs for the address it reports', async () => {
    const ask = (client_address?: string) => call('/v1/introspect', { type: 'application/x-www-form-urlencoded', bearer: gateway.token, body: new URLSearchParams({ token: signer.token, ...(client_address ? { client_address } : {}) }).toString() });
    const inside = await ask('10.20.3.4');
    expect(inside.status).toBe(200);
    expect(JSON.parse(inside.body)).toMatchObject({
      active: true, sub: `serviceuser:${ns}:signer`, token_id: signer.token.split('_')[1], accounts: ['acme', 'other'],
      permissions: expect.arrayContaining([{ account: 'acme', manager: 'software-trust-manager', permission: 'signatures:sign' }]),
    });
    expect(JSON.parse((await ask('192.168.1.1')).body)).toEqual({ active: false });
    expect(JSON.parse((await ask()).body)).toEqual({ active: false });
    // By client certificate too.
    const byCert = await call('/v1/introspect', { type: 'application/json', cert: gateway, body: JSON.stringify({ token: signer.token, client_address: '10.20.0.9' }) });
    expect(JSON.parse(byCert.body).active).toBe(true);
  });

  it('refuses callers that are not authenticated or not granted', async () => {
    const body = JSON.stringify({ token: signer.token });
    const anonymous = await call('/v1/introspect', { type: 'application/json', body });
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers['www-authenticate']).toContain('Bearer');
    const plain = await credentials('plain');
    const ungranted = await call('/v1/introspect', { type: 'application/json', bearer: plain.token, body });
    expect(ungranted.status).toBe(403);
    expect(JSON.parse(ungranted.body).message).toContain('verification:introspect');
  });

  it('authorizes by the RoleBindings, per account', async () => {
    const ask = async (q: Record<string, string>) => JSON.parse((await call('/v1/authorize', { type: 'application/json', bearer: gateway.token, body: JSON.stringify(q) })).body) as { allowed: boolean; reason: string };
    expect(await ask({ identity: `serviceuser:${ns}:signer`, account: 'acme', permission: 'signatures:sign' })).toMatchObject({ allowed: true });
    expect(await ask({ identity: `serviceuser:${ns}:signer`, account: 'other', permission: 'signatures:sign' })).toMatchObject({ allowed: false });
    expect(await ask({ identity: `serviceuser:${ns}:signer`, account: 'acme', permission: 'keypairs:generate' })).toMatchObject({ allowed: false });
    expect(await ask({ token: signer.token, account: 'acme', permission: 'signatures:sign', client_address: '10.20.1.1' })).toMatchObject({ allowed: true });
    expect(await ask({ token: signer.token, account: 'acme', permission: 'signatures:sign', client_address: '172.16.0.1' })).toMatchObject({ allowed: false });
  });

  it('checks for a gateway (ext_authz / auth_request): the token it forwards, the gateway by its certificate', async () => {
    const check = (headers: Record<string, string>, cert?: { cert: string; key: string }) =>
      call('/v1/check/api/sign', { method: 'GET', bearer: signer.token, headers, ...(cert ? { cert } : {}) });
    const inside = { 'x-forwarded-for': '10.20.1.1, 10.0.0.1' };
    const ok = await check({ ...inside, 'x-serviceuser-account': 'acme', 'x-serviceuser-permission': 'signatures:sign' }, gateway);
    expect(ok.status).toBe(200);
    expect(ok.headers['x-serviceuser']).toBe(`serviceuser:${ns}:signer`);
    expect(ok.headers['x-serviceuser-accounts']).toBe('acme,other');
    expect((await check(inside, gateway)).status).toBe(200);
    expect((await check({ 'x-forwarded-for': '192.0.2.1' }, gateway)).status).toBe(401);
    expect((await check({ ...inside, 'x-serviceuser-account': 'acme', 'x-serviceuser-permission': 'keypairs:generate' }, gateway)).status).toBe(403);
    // A gateway without a client certificate is not one.
    expect((await check(inside)).status).toBe(401);
  });

  it('answers malformed, oversized, wrong-type and slow requests with a 4xx, and keeps serving others', async () => {
    const corpus: [string, Parameters<typeof call>[1], number][] = [
      ['/apis/authentication.k8s.io/v1/tokenreviews', { type: 'application/json', body: '{not json' }, 400],
      ['/apis/authentication.k8s.io/v1/tokenreviews', { type: 'text/plain', body: 'hello' }, 415],
      ['/apis/authentication.k8s.io/v1/tokenreviews', { type: 'application/json', body: JSON.stringify({ kind: 'Pod' }) }, 400],
      ['/apis/authentication.k8s.io/v1/tokenreviews', { type: 'application/json', body: JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: {} }) }, 400],
      ['/apis/authentication.k8s.io/v1/tokenreviews', { type: 'application/json', body: '[1,2]' }, 400],
      ['/apis/authentication.k8s.io/v1/tokenreviews', { type: 'application/json', body: 'x'.repeat(200_000) }, 413],
      ['/apis/authentication.k8s.io/v1/tokenreviews', { method: 'GET' }, 405],
      ['/v1/introspect', { type: 'application/json', bearer: gateway.token, body: '{}' }, 400],
      ['/v1/introspect', { type: 'application/xml', bearer: gateway.token, body: '<a/>' }, 415],
      ['/v1/authorize', { type: 'application/json', bearer: gateway.token, body: JSON.stringify({ account: 'acme' }) }, 400],
      ['/v1/authorize', { type: 'application/json', bearer: gateway.token, body: JSON.stringify({ account: 'acme', permission: 'x:y', token: 'a', identity: 'b' }) }, 400],
      ['/v1/nothing', { type: 'application/json', body: '{}' }, 404],
    ];
    for (const [p, options, status] of corpus) {
      const res = await call(p, options);
      expect({ p, status: res.status }).toEqual({ p, status });
      if (status !== 405) expect(JSON.parse(res.body).message, p).toEqual(expect.any(String));
    }
    // A client that sends headers and then trickles its body is cut off, and blocks nobody.
    const slow = connect({ host: '127.0.0.1', port, ca: caPem });
    await new Promise((r) => slow.once('secureConnect', r));
    slow.write('POST /apis/authentication.k8s.io/v1/tokenreviews HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{');
    const closed = new Promise<string>((resolve) => {
      let answer = '';
      slow.on('data', (c: Buffer) => (answer += c.toString()));
      slow.on('close', () => resolve(answer));
    });
    const review = { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token: signer.token } };
    const meanwhile = await call('/apis/authentication.k8s.io/v1/tokenreviews', { type: 'application/json', body: JSON.stringify(review) });
    expect(meanwhile.status).toBe(200);
    expect(await closed).toMatch(/^HTTP\/1.1 408|^$/);
  }, 30_000);

  it('rate-limits unauthenticated probing', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 40; i++) statuses.push((await call('/v1/introspect', { type: 'application/json', body: '{"token":"x"}' })).status);
    expect(statuses.slice(0, 5)).toEqual([401, 401, 401, 401, 401]);
    expect(statuses).toContain(429);
  });
});
