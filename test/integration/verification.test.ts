// The verification service with real consumers: a kube-apiserver (a control plane of this
// file's own, started with the operator as its token webhook — its webhook kubeconfig
// presenting a client certificate from a CA given with --tokenreview-client-ca — and the
// built-in CA as an extra client CA) authenticates service users by token and by certificate,
// through kubectl; an mTLS server that trusts /v1/ca.crt and checks /v1/crl accepts curl with
// the certificate; introspection and authorization answer authenticated callers, each only
// about the accounts it verifies in; malformed requests get 4xx. The attacks of issue 11
// (a verifier reading another tenant, a spoofed X-Forwarded-For, anonymous TokenReview) are
// tests here.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest, createServer, type Server } from 'node:https';
import { connect } from 'node:tls';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { KubeConfig } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KubeClient, resourcePath } from '../../src/controller/kube.ts';
import { resources } from '../../src/api/resources.ts';
import { createCa, loadCa } from '../../src/credentials/ca.ts';
import { issueServingCertificate } from '../../src/credentials/certificate.ts';
import { findSecrets, testLogger } from '../logs.ts';
import { issueToken } from '../../src/credentials/token.ts';
import { createMetrics } from '../../src/observability/metrics.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { startOperator, type Operator } from '../../src/operator.ts';
import { startControlPlane, type ControlPlane } from '../cluster/controlplane.ts';
import { applyManifests, installCrds, manifestsIn } from '../crds.ts';
import { eventually, run } from '../kube.ts';
import { api, decodeSecret, testAccount } from '../operator.ts';
import { freePort } from '../net.ts';
import { callerCa, writeCertificate } from '../callers.ts';
import { Directory } from '../../src/verify/directory.ts';
import { startVerificationServer, verificationOptions } from '../../src/verify/server.ts';
import { ServingCertificate } from '../../src/verify/serving-certificate.ts';
import { keyRingOf } from '../../src/authority/ledger-key.ts';

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
/** The kube-apiserver's webhook certificate (from the --tokenreview-client-ca CA), as files. */
let webhookCert: { cert: string; key: string };
/** A gateway's certificate from the --verify-client-ca CA: a platform-wide caller. */
let platformGateway: { cert: string; key: string };
const ns = 'apps';
const k = () => api(client, ns);


/** kubectl as the holder of `auth`, run without blocking the event loop (the operator and its verification service run in this very process). */
function kubectl(args: string[], auth: string[]) {
  const empty = path.join(dir, 'empty-kubeconfig');
  writeFileSync(empty, 'apiVersion: v1\nkind: Config\n');
  return run('kubectl', ['--server', controlPlane.server, '--certificate-authority', apiserverCa, ...auth, ...args], { env: { ...process.env, KUBECONFIG: empty } });
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
function call(pathname: string, options: { body?: string; type?: string; bearer?: string; cert?: { cert: string; key: string }; method?: string; headers?: Record<string, string>; port?: number } = {}) {
  return new Promise<{ status: number; body: string; headers: Record<string, unknown> }>((resolve, reject) => {
    const req = httpsRequest(
      {
        host: '127.0.0.1',
        port: options.port ?? port,
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

let webhookCa: Awaited<ReturnType<typeof callerCa>>;
/** An intermediate under webhookCa that the operator's bundle names, as a platform team would. */
let webhookIntermediate: Awaited<ReturnType<typeof callerCa>>;
let gatewayCa: Awaited<ReturnType<typeof callerCa>>;

beforeAll(async () => {
  const ca = await createCa({ commonName: 'verification test CA' });
  caMaterial = ca;
  caPem = ca.certPem;
  writeFileSync(path.join(dir, 'ca.crt'), ca.certPem);
  // Two caller CAs, as a platform team would keep them: one for kube-apiservers, one for gateways.
  webhookCa = await callerCa('kube-apiserver webhook CA');
  webhookIntermediate = await webhookCa.intermediate('kube-apiservers of cluster east');
  gatewayCa = await callerCa('gateway CA');
  webhookCert = writeCertificate(dir, 'webhook', await webhookCa.issue('kube-apiserver'));
  platformGateway = writeCertificate(dir, 'platform-gateway', await gatewayCa.issue('envoy'));
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
  user:
    client-certificate: ${webhookCert.cert}
    client-key: ${webhookCert.key}
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
  for (const [name, namespace] of [['acme', ns], ['other', ns], ['beta', 'tenant-b']] as const) {
    await client.apply(resourcePath(resources.accounts, undefined, name), testAccount(name, { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'In', values: [namespace] }] }), 'tests');
  }
  operator = startOperator({
    kubeConfig: kc, log: testLogger(logs), metrics: createMetrics(), operatorNamespace: 'suo',
    // The webhook CA file is a bundle: the root and the intermediate that issues east's certificates.
    verification: { address: `127.0.0.1:${port}`, tokenReviewCaPems: [`${webhookCa.certPem}\n${webhookIntermediate.certPem}`], callerCaPems: [gatewayCa.certPem] },
  });
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
    const { token, cert, key } = await credentials('deployer');
    await k().patchServiceUser('deployer', { disabled: true });
    await eventually('the token refused', async () => (typeof (await whoami(['--token', token])) === 'string' ? true : undefined));
    expect(await whoami(['--token', token])).toContain('Unauthorized');
    // What docs/certificates.md says a kube-apiserver does with a disabled user's certificate:
    // it reads no CRL, so the certificate on hold still logs in until its notAfter.
    expect(await whoami(['--client-certificate', cert, '--client-key', key])).toMatchObject({ username: `serviceuser:${ns}:deployer` });
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
    const answer = JSON.parse((await call('/apis/authentication.k8s.io/v1/tokenreviews', { type: 'application/json', cert: webhookCert, body: JSON.stringify(review) })).body);
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
      return { status: r.code, stdout: r.out, stderr: r.err };
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
  let victim: Awaited<ReturnType<typeof credentials>>;
  const tenantB = 'tenant-b';
  const bind = (namespace: string, name: string, role: string, subject: string, accounts?: string[]) =>
    client.request('POST', `/apis/serviceusers.dev/v1alpha1/namespaces/${namespace}/rolebindings`, {
      apiVersion: 'serviceusers.dev/v1alpha1', kind: 'RoleBinding', metadata: { name },
      spec: { roleRef: { name: role }, subjects: [{ kind: 'ServiceUser', name: subject }], ...(accounts ? { accounts } : {}) },
    });
  const permissionsIn = (o: { status?: Record<string, unknown> }) => ((o.status?.permissions ?? []) as { account: string }[]).map((p) => p.account);
  beforeAll(async () => {
    // The verifier `gateway` is bound in account acme only. `signer` acts in acme and other;
    // `victim` belongs to another tenant, in account beta.
    await k().createServiceUser('gateway', { email: 'ops@example.com', accounts: ['acme'] });
    await k().createServiceUser('signer', { email: 'ops@example.com', accounts: ['acme', 'other'], credentials: { token: { allowedCIDRs: ['10.20.0.0/16'] } } });
    await k().createServiceUser('plain', { email: 'ops@example.com', accounts: ['acme'] });
    await client.request('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: tenantB } });
    await api(client, tenantB).createServiceUser('victim', { email: 'b@example.com', accounts: ['beta'], friendlyName: 'Victim' });
    await bind(ns, 'gateway-verifies', 'service-user-operator.verifier', 'gateway');
    await bind(ns, 'signer-signs', 'software-trust-manager.signer', 'signer', ['acme']);
    await bind(ns, 'signer-signs-other', 'software-trust-manager.signer', 'signer', ['other']);
    await bind(tenantB, 'victim-signs', 'software-trust-manager.signer', 'victim', ['beta']);
    await k().waitFor('gateway', 'verifier permissions', (o) => ((o.status as { permissions?: unknown[] } | undefined)?.permissions ?? []).length === 2);
    await k().waitFor('signer', 'signer permissions in acme and other', (o) => permissionsIn(o).includes('acme') && permissionsIn(o).includes('other'));
    await api(client, tenantB).waitFor('victim', 'victim permissions', (o) => permissionsIn(o).includes('beta'));
    gateway = await credentials('gateway');
    signer = await credentials('signer');
    await api(client, tenantB).waitFor('victim', 'victim Active', (o) => (o.status as { phase?: string } | undefined)?.phase === 'Active');
    victim = { token: decodeSecret((await api(client, tenantB).secret('victim-credentials'))!).token! } as typeof victim;
    tokens.add(victim.token);
  });

  it('introspects for an authenticated caller, honouring allowedCIDRs for the address it reports', async () => {
    const ask = (client_address?: string) => call('/v1/introspect', { type: 'application/x-www-form-urlencoded', bearer: gateway.token, body: new URLSearchParams({ token: signer.token, ...(client_address ? { client_address } : {}) }).toString() });
    const inside = await ask('10.20.3.4');
    expect(inside.status).toBe(200);
    const body = JSON.parse(inside.body);
    // The verifier is bound in acme: it sees signer's acme, not its other account.
    expect(body).toMatchObject({
      active: true, sub: `serviceuser:${ns}:signer`, token_id: signer.token.split('_')[1], accounts: ['acme'],
      permissions: expect.arrayContaining([{ account: 'acme', manager: 'software-trust-manager', permission: 'signatures:sign' }]),
    });
    expect(body.permissions.filter((p: { account: string }) => p.account !== 'acme')).toEqual([]);
    expect(JSON.parse((await ask('192.168.1.1')).body)).toEqual({ active: false });
    expect(JSON.parse((await ask()).body)).toEqual({ active: false });
    // By client certificate too.
    const byCert = await call('/v1/introspect', { type: 'application/json', cert: gateway, body: JSON.stringify({ token: signer.token, client_address: '10.20.0.9' }) });
    expect(JSON.parse(byCert.body)).toMatchObject({ active: true, accounts: ['acme'] });
    // A caller from the --verify-client-ca CA is platform-wide: every account.
    const platform = JSON.parse((await call('/v1/introspect', { type: 'application/json', cert: platformGateway, body: JSON.stringify({ token: signer.token, client_address: '10.20.0.9' }) })).body);
    expect(platform).toMatchObject({ active: true, accounts: ['acme', 'other'] });
    expect(platform.permissions).toEqual(expect.arrayContaining([{ account: 'other', manager: 'software-trust-manager', permission: 'signatures:sign' }]));
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
    // A CA trusted for TokenReview only does not open introspection.
    const webhookOnly = await call('/v1/introspect', { type: 'application/json', cert: webhookCert, body });
    expect(webhookOnly.status).toBe(403);
    expect(JSON.parse(webhookOnly.body).message).toContain('--verify-client-ca');
  });

  it('authorizes by the RoleBindings, per account, within the accounts the caller verifies in', async () => {
    const ask = async (q: Record<string, string>, auth: { bearer?: string; cert?: { cert: string; key: string } } = { bearer: gateway.token }) =>
      JSON.parse((await call('/v1/authorize', { type: 'application/json', ...auth, body: JSON.stringify(q) })).body) as { allowed: boolean; reason: string };
    expect(await ask({ identity: `serviceuser:${ns}:signer`, account: 'acme', permission: 'signatures:sign' })).toMatchObject({ allowed: true });
    expect(await ask({ identity: `serviceuser:${ns}:signer`, account: 'acme', permission: 'keypairs:generate' })).toMatchObject({ allowed: false });
    expect(await ask({ token: signer.token, account: 'acme', permission: 'signatures:sign', client_address: '10.20.1.1' })).toMatchObject({ allowed: true });
    expect(await ask({ token: signer.token, account: 'acme', permission: 'signatures:sign', client_address: '172.16.0.1' })).toMatchObject({ allowed: false });
    // signer holds signatures:sign in other too, but the verifier is not bound there…
    expect(await ask({ identity: `serviceuser:${ns}:signer`, account: 'other', permission: 'signatures:sign' })).toEqual({
      allowed: false, reason: 'account other is outside the accounts this caller verifies in',
    });
    // …and the answer does not depend on the target: the same for one that does not exist.
    expect(await ask({ identity: `serviceuser:${ns}:nobody`, account: 'other', permission: 'signatures:sign' })).toEqual({
      allowed: false, reason: 'account other is outside the accounts this caller verifies in',
    });
    // A platform-wide caller sees it.
    expect(await ask({ identity: `serviceuser:${ns}:signer`, account: 'other', permission: 'signatures:sign' }, { cert: platformGateway })).toMatchObject({ allowed: true });
  });

  it('checks for a gateway (ext_authz / auth_request): the token it forwards, the gateway by its certificate', async () => {
    const check = (headers: Record<string, string>, cert?: { cert: string; key: string }) =>
      call('/v1/check/api/sign', { method: 'GET', bearer: signer.token, headers, ...(cert ? { cert } : {}) });
    // The gateway appended the address it saw (10.20.1.1) to what the client sent.
    const inside = { 'x-forwarded-for': '203.0.113.7, 10.20.1.1' };
    const ok = await check({ ...inside, 'x-serviceuser-account': 'acme', 'x-serviceuser-permission': 'signatures:sign' }, gateway);
    expect(ok.status).toBe(200);
    expect(ok.headers['x-serviceuser']).toBe(`serviceuser:${ns}:signer`);
    expect(ok.headers['x-serviceuser-accounts']).toBe('acme');
    expect((await check(inside, platformGateway)).headers['x-serviceuser-accounts']).toBe('acme,other');
    expect((await check(inside, gateway)).status).toBe(200);
    expect((await check({ 'x-forwarded-for': '192.0.2.1' }, gateway)).status).toBe(401);
    expect((await check({ ...inside, 'x-serviceuser-account': 'acme', 'x-serviceuser-permission': 'keypairs:generate' }, gateway)).status).toBe(403);
    // Asking about an account the gateway does not verify in is refused, whoever the token's holder.
    expect((await check({ ...inside, 'x-serviceuser-account': 'other', 'x-serviceuser-permission': 'signatures:sign' }, gateway)).status).toBe(403);
    expect((await check({ ...inside, 'x-serviceuser-account': 'other', 'x-serviceuser-permission': 'signatures:sign' }, platformGateway)).status).toBe(200);
    // A gateway without a client certificate is not one.
    expect((await check(inside)).status).toBe(401);
  });

  describe('attack: a verifier bound in account acme asks about a tenant in account beta', () => {
    const unknownToken = () => issueToken().token;
    const introspect = (token: string, auth: { bearer?: string; cert?: { cert: string; key: string } }) =>
      call('/v1/introspect', { type: 'application/json', ...auth, body: JSON.stringify({ token }) }).then((r) => ({ status: r.status, body: r.body }));

    it('introspection answers {active: false}, exactly as for an unknown token', async () => {
      const answer = await introspect(victim.token, { bearer: gateway.token });
      expect(answer).toEqual({ status: 200, body: JSON.stringify({ active: false }) });
      expect(answer).toEqual(await introspect(unknownToken(), { bearer: gateway.token }));
      // The same verifier by its certificate: the same.
      expect(await introspect(victim.token, { cert: gateway })).toEqual(answer);
      // The token is live: the platform-wide caller sees it, in beta.
      const platform = JSON.parse((await introspect(victim.token, { cert: platformGateway })).body);
      expect(platform).toMatchObject({ active: true, sub: `serviceuser:${tenantB}:victim`, accounts: ['beta'] });
    });

    it('authorization and the gateway check answer as for an unknown token or identity', async () => {
      const authorize = async (q: Record<string, string>) => (await call('/v1/authorize', { type: 'application/json', bearer: gateway.token, body: JSON.stringify(q) })).body;
      // Asked within the verifier's own account, about the victim's identity and token.
      expect(await authorize({ identity: `serviceuser:${tenantB}:victim`, account: 'acme', permission: 'signatures:sign' }))
        .toBe(await authorize({ identity: `serviceuser:${tenantB}:nobody`, account: 'acme', permission: 'signatures:sign' }));
      expect(await authorize({ token: victim.token, account: 'acme', permission: 'signatures:sign' }))
        .toBe(await authorize({ token: unknownToken(), account: 'acme', permission: 'signatures:sign' }));
      const check = async (token: string) => {
        const r = await call('/v1/check/x', { method: 'GET', bearer: token, cert: gateway });
        return { status: r.status, body: r.body, challenge: r.headers['www-authenticate'] };
      };
      const refused = await check(victim.token);
      expect(refused.status).toBe(401);
      expect(refused).toEqual(await check(unknownToken()));
      expect((await call('/v1/check/x', { method: 'GET', bearer: victim.token, cert: platformGateway })).status).toBe(200);
    });

    it('TokenReview by the verifier does not authenticate the other tenant', async () => {
      const review = async (token: string) => JSON.parse((await call('/apis/authentication.k8s.io/v1/tokenreviews', {
        type: 'application/json', bearer: gateway.token, body: JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token } }),
      })).body) as { status: { authenticated: boolean; user?: { extra?: Record<string, string[]> } } };
      expect((await review(victim.token)).status).toEqual({ authenticated: false, error: 'invalid token' });
      // Its own account's users it does authenticate, reporting only the shared accounts.
      const own = await review(signer.token);
      expect(own.status.authenticated).toBe(false); // signer's token is limited to 10.20.0.0/16; TokenReview has no address
      await k().createServiceUser('webhook-user', { email: 'ops@example.com', accounts: ['acme', 'other'] });
      const user = await credentials('webhook-user');
      expect((await review(user.token)).status).toMatchObject({ authenticated: true, user: { username: `serviceuser:${ns}:webhook-user`, extra: { 'serviceusers.dev/accounts': ['acme'] } } });
    });

    it('a disabled or deleted victim leaks nothing through the reason either', async () => {
      const authorize = async (auth: { bearer?: string; cert?: { cert: string; key: string } }) =>
        JSON.parse((await call('/v1/authorize', { type: 'application/json', ...auth, body: JSON.stringify({ identity: `serviceuser:${tenantB}:victim`, account: 'acme', permission: 'signatures:sign' }) })).body) as { reason: string };
      await api(client, tenantB).patchServiceUser('victim', { disabled: true });
      await eventually('the platform-wide caller to see it disabled', async () => ((await authorize({ cert: platformGateway })).reason === 'service user disabled' ? true : undefined));
      expect(await authorize({ bearer: gateway.token })).toEqual({ allowed: false, reason: 'unknown service user' });
    });
  });

  describe('attack: anonymous TokenReview of a leaked token', () => {
    const review = (token: string, auth: { bearer?: string; cert?: { cert: string; key: string } } = {}) =>
      call('/apis/authentication.k8s.io/v1/tokenreviews', { type: 'application/json', ...auth, body: JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token } }) });

    it('is refused with 401 and learns nothing about the holder', async () => {
      const leaked = (await credentials('plain')).token;
      const su = (await k().serviceUser('plain')) as { metadata: { uid: string } };
      const answer = await review(leaked);
      expect(answer.status).toBe(401);
      for (const secret of ['plain', ns, 'acme', su.metadata.uid, 'serviceuser:', 'authenticated']) expect(answer.body).not.toContain(secret);
      // The same for one never issued: the 401 says nothing about the token.
      expect(JSON.parse((await review(issueToken().token)).body)).toEqual(JSON.parse(answer.body));
    });

    it('is answered for a certificate from the --tokenreview-client-ca bundle, also from an intermediate in it, and for no other', async () => {
      const leaked = (await credentials('plain')).token;
      expect(JSON.parse((await review(leaked, { cert: webhookCert })).body).status).toMatchObject({ authenticated: true });
      const east = writeCertificate(dir, 'east', await webhookIntermediate.issue('kube-apiserver-east'));
      expect(JSON.parse((await review(leaked, { cert: east })).body).status).toMatchObject({ authenticated: true });
      // An intermediate under the same root that the bundle does not name vouches for no one,
      // though its chain verifies: which CA vouches must be one the platform team listed.
      const unlisted = writeCertificate(dir, 'west', await (await webhookCa.intermediate('kube-apiservers of cluster west')).issue('kube-apiserver-west'));
      expect((await review(leaked, { cert: unlisted })).status).toBe(401);
      // The gateway CA is trusted for introspection and check, not for TokenReview.
      expect((await review(leaked, { cert: platformGateway })).status).toBe(401);
      // A look-alike CA with the same names is no one.
      const impostor = writeCertificate(dir, 'impostor', await (await callerCa('kube-apiserver webhook CA')).issue('kube-apiserver'));
      expect((await review(leaked, { cert: impostor })).status).toBe(401);
      // A service user that is not a verifier may not ask.
      expect((await review(leaked, { bearer: (await credentials('plain')).token })).status).toBe(403);
    });
  });

  describe('attack: a client spoofs the leftmost X-Forwarded-For', () => {
    let internal: Awaited<ReturnType<typeof credentials>>;
    beforeAll(async () => {
      await k().createServiceUser('internal', { email: 'ops@example.com', accounts: ['acme'], credentials: { token: { allowedCIDRs: ['10.0.0.0/8'] } } });
      internal = await credentials('internal');
    });
    const check = (p: number, xff: string) => call('/v1/check/x', { method: 'GET', bearer: internal.token, cert: gateway, headers: { 'x-forwarded-for': xff }, port: p }).then((r) => r.status);

    it('is refused: the address is the one the gateway appended', async () => {
      // The client (at 192.0.2.5) wrote 10.1.1.1; the gateway appended 192.0.2.5.
      expect(await check(port, '10.1.1.1, 192.0.2.5')).toBe(401);
      // A client really inside, whatever it wrote itself.
      expect(await check(port, '192.0.2.5, 10.1.1.1')).toBe(200);
      expect(await check(port, '10.1.1.1')).toBe(200);
    });

    it('with --trusted-proxy-hops 1, takes the entry the proxy in front of the gateway appended, and fails closed without one', async () => {
      // A verification server of its own with one trusted hop, on a directory of this namespace
      // that honours what the operator MAC'd (its ledger key).
      const directory = new Directory({ ring: keyRingOf(await client.get(resourcePath(resources.secrets, 'suo', 'service-user-operator-ledger-key'))) });
      const list = await client.get<{ items: Record<string, unknown>[] }>(resourcePath(resources.serviceUsers, ns));
      for (const item of list.items) directory.observe('ADDED', item as never);
      const own = await freePort();
      const server = await startVerificationServer({
        address: `127.0.0.1:${own}`, directory, caPem, crl: () => '', log: testLogger(logs), callerCaPems: [gatewayCa.certPem], trustedProxyHops: 1,
        tls: ServingCertificate.fixed(await issueServingCertificate(await loadCa(caMaterial), ['127.0.0.1'], new Date())),
      });
      try {
        // client wrote 10.1.1.1; the load balancer appended the client's 192.0.2.5; the gateway the balancer's 10.0.0.2.
        expect(await check(own, '10.1.1.1, 192.0.2.5, 10.0.0.2')).toBe(401);
        expect(await check(own, '192.0.2.5, 10.1.1.1, 10.0.0.2')).toBe(200);
        // Fewer entries than the hops need: the address is unknown, the token limited to networks refused.
        expect(await check(own, '10.1.1.1')).toBe(401);
      } finally {
        server.closeAllConnections();
        server.close();
      }
    });
  });

  it('logs each request at debug only: at info (the chart\'s default) it is counted in the metrics and writes no line', async () => {
    const own = await freePort();
    const lines: string[] = [];
    const metrics = createMetrics();
    const directory = new Directory({ ring: keyRingOf(await client.get(resourcePath(resources.secrets, 'suo', 'service-user-operator-ledger-key'))) });
    const server = await startVerificationServer(verificationOptions(
      { address: `127.0.0.1:${own}` },
      { directory, tls: ServingCertificate.fixed(await issueServingCertificate(await loadCa(caMaterial), ['127.0.0.1'], new Date())), caPem, crl: () => '', metrics, log: createLogger('info', new Writable({ write: (c: Buffer, _e, done) => (lines.push(c.toString()), done()) })), now: Date.now },
    ));
    try {
      expect((await call('/v1/check/x', { method: 'GET', bearer: 'suo_not_a_token', port: own })).status).toBeGreaterThanOrEqual(400);
      expect((await call('/v1/ca.crt', { method: 'GET', port: own })).status).toBe(200);
      const counted = (await metrics.registry.getSingleMetricAsString('serviceuser_verifications_total')).split('\n').filter((l) => !l.startsWith('#') && l.trim());
      expect(counted.reduce((n, l) => n + Number(l.split(' ').at(-1)), 0)).toBe(2);
      expect(lines.join('')).not.toContain('verification request');
      // The operator of this file logs at debug: there, every request has its line.
      expect(logs.join('')).toContain('"msg":"verification request"');
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });

  it('answers malformed, oversized, wrong-type and slow requests with a 4xx, and keeps serving others', async () => {
    const webhook = { cert: webhookCert };
    const corpus: [string, Parameters<typeof call>[1], number][] = [
      ['/apis/authentication.k8s.io/v1/tokenreviews', { ...webhook, type: 'application/json', body: '{not json' }, 400],
      ['/apis/authentication.k8s.io/v1/tokenreviews', { ...webhook, type: 'text/plain', body: 'hello' }, 415],
      ['/apis/authentication.k8s.io/v1/tokenreviews', { ...webhook, type: 'application/json', body: JSON.stringify({ kind: 'Pod' }) }, 400],
      ['/apis/authentication.k8s.io/v1/tokenreviews', { ...webhook, type: 'application/json', body: JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: {} }) }, 400],
      ['/apis/authentication.k8s.io/v1/tokenreviews', { ...webhook, type: 'application/json', body: '[1,2]' }, 400],
      ['/apis/authentication.k8s.io/v1/tokenreviews', { ...webhook, type: 'application/json', body: 'x'.repeat(200_000) }, 413],
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
    const slow = connect({ host: '127.0.0.1', port, ca: caPem, cert: readFileSync(webhookCert.cert), key: readFileSync(webhookCert.key) });
    await new Promise((r) => slow.once('secureConnect', r));
    slow.write('POST /apis/authentication.k8s.io/v1/tokenreviews HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{');
    const closed = new Promise<string>((resolve) => {
      let answer = '';
      slow.on('data', (c: Buffer) => (answer += c.toString()));
      slow.on('close', () => resolve(answer));
    });
    const review = { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token: signer.token } };
    const meanwhile = await call('/apis/authentication.k8s.io/v1/tokenreviews', { ...webhook, type: 'application/json', body: JSON.stringify(review) });
    expect(meanwhile.status).toBe(200);
    expect(await closed).toMatch(/^HTTP\/1.1 408|^$/);
  }, 30_000);

  // Last: it exhausts this address's budget of failed attempts.
  it('rate-limits unauthenticated probing, but never an authenticated kube-apiserver', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 40; i++) statuses.push((await call('/v1/introspect', { type: 'application/json', body: '{"token":"x"}' })).status);
    expect(statuses.slice(0, 5)).toEqual([401, 401, 401, 401, 401]);
    expect(statuses).toContain(429);
    const review = JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token: signer.token } });
    expect((await call('/apis/authentication.k8s.io/v1/tokenreviews', { type: 'application/json', body: review })).status).toBe(429);
    expect((await call('/apis/authentication.k8s.io/v1/tokenreviews', { type: 'application/json', body: review, cert: webhookCert })).status).toBe(200);
  });

  // Issue 22: /v1/check, /v1/introspect and /v1/authorize refused everyone from an address
  // once anonymous requests from it had used up its budget — the platform gateway with a
  // valid client certificate got 429 from someone else's probing behind the same SNAT.
  it('attack: anonymous requests from a gateway\'s address do not lock out the gateway, nor authenticated callers of introspect and authorize', async () => {
    const anonymous = () => call('/v1/check/api', { method: 'GET', bearer: signer.token });
    const exhaust = async () => {
      for (let i = 0; i < 500; i++) if ((await anonymous()).status === 429) return true;
      return false;
    };
    expect(await exhaust(), 'anonymous /v1/check from 127.0.0.1 throttled').toBe(true);
    // Authenticated callers from the same address are answered.
    // (signer's token is bound to 10.20.0.0/16: the address the gateway appended.)
    const inside = { 'x-forwarded-for': '10.20.1.1' };
    const checked = await call('/v1/check/api/sign', { method: 'GET', bearer: signer.token, headers: inside, cert: platformGateway });
    expect(checked.status).toBe(200);
    expect(checked.headers['x-serviceuser']).toBe(`serviceuser:${ns}:signer`);
    expect((await call('/v1/check/api/sign', { method: 'GET', bearer: signer.token, headers: inside, cert: gateway })).status).toBe(200);
    const introspected = await call('/v1/introspect', { type: 'application/json', bearer: gateway.token, body: JSON.stringify({ token: signer.token, client_address: '10.20.1.1' }) });
    expect(introspected.status).toBe(200);
    expect(JSON.parse(introspected.body)).toMatchObject({ active: true });
    const authorized = await call('/v1/authorize', { type: 'application/json', cert: platformGateway, body: JSON.stringify({ token: signer.token, account: 'acme', permission: 'signatures:sign', client_address: '10.20.1.1' }) });
    expect({ status: authorized.status, body: JSON.parse(authorized.body) }).toMatchObject({ status: 200, body: { allowed: true } });
    // A token that does not authenticate is still a failure, and still throttled.
    const failures: number[] = [];
    for (let i = 0; i < 500 && !failures.includes(429); i++) failures.push((await call('/v1/introspect', { type: 'application/json', bearer: issueToken().token, body: '{"token":"x"}' })).status);
    expect(failures).toContain(429);
    expect(new Set(failures)).toEqual(new Set(failures.includes(401) ? [401, 429] : [429]));
    // The anonymous gateway without a certificate too.
    expect(await exhaust()).toBe(true);
  });
});
