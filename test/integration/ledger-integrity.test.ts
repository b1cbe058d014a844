// The ledger cannot be forged (issue 11, attacks 5 and 6), against the run's API server and
// the verification service: what someone who may write a ServiceUser's status, or their own
// Secret, can try without the ledger key — and rotation and renewal on demand (issue 12).
// Each attack passed on the main before the ledger was MAC'd: the injected record was
// honoured and kept, the planted token recorded and the victim's token refused, the copied
// serial shadowed the victim's certificate.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { KubeClient, resourcePath, type KubeObject } from '../../src/controller/kube.ts';
import { resources } from '../../src/api/resources.ts';
import { issueToken } from '../../src/credentials/token.ts';
import { createMetrics } from '../../src/observability/metrics.ts';
import { startOperator, type Operator } from '../../src/operator.ts';
import { applyManifests, manifestsIn } from '../crds.ts';
import { tokenWithId } from '../forge.ts';
import { reconciledSince, testLogger } from '../logs.ts';
import { eventually, kubeConfig, useNamespace } from '../kube.ts';
import { freePort } from '../net.ts';
import { api, decodeSecret, useAccounts, statusOf } from '../operator.ts';

const home = useNamespace('ledger');
const tenantNs = useNamespace('tenant');
useAccounts(['acme']);
const dir = mkdtempSync(path.join(tmpdir(), 'ledger-'));
const logs: string[] = [];
const client = new KubeClient(kubeConfig());
let operator: Operator;
let port: number;
let caPem: string;
const k = () => api(client, home.name);
const t = () => api(client, tenantNs.name);

const active = (o: KubeObject) => statusOf(o).conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;

function kubectl(args: string[]): Promise<{ ok: boolean; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile('kubectl', ['--kubeconfig', inject('kubeconfig'), ...args], { encoding: 'utf8', timeout: 30_000 }, (error, out, err) => resolve({ ok: !error, out, err }));
  });
}

async function credentials(ns: string, name: string) {
  const u = api(client, ns);
  await u.waitFor(name, `${name} Ready`, active, 30_000);
  const data = decodeSecret((await u.secret(`${name}-credentials`))!);
  const cert = path.join(dir, `${ns}-${name}.crt`);
  const key = path.join(dir, `${ns}-${name}.key`);
  writeFileSync(cert, data['tls.crt']!);
  writeFileSync(key, data['tls.key']!);
  return { token: data.token!, cert: data['tls.crt']!, key: data['tls.key']!, data };
}

function call(pathname: string, body: unknown, auth: { bearer?: string; cert?: { cert: string; key: string } }) {
  return new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = httpsRequest(
      {
        host: '127.0.0.1',
        port,
        path: pathname,
        method: 'POST',
        ca: caPem,
        ...(auth.cert ? { cert: auth.cert.cert, key: auth.cert.key } : {}),
        headers: { 'content-type': 'application/json', ...(auth.bearer ? { authorization: `Bearer ${auth.bearer}` } : {}) },
      },
      (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

let gateway: Awaited<ReturnType<typeof credentials>>;

/** TokenReview, as a kube-apiserver asks it (the caller authenticated by its certificate). */
async function authenticated(token: string): Promise<boolean> {
  const r = await call('/apis/authentication.k8s.io/v1/tokenreviews', { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token } }, { cert: gateway });
  return (JSON.parse(r.body) as { status?: { authenticated?: boolean } }).status?.authenticated === true;
}

/** Asks `check` every 100 ms for `ms`: it must hold at every instant, not only in the end. */
async function throughout(ms: number, what: string, check: () => Promise<boolean>) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    expect(await check(), what).toBe(true);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const events = async (ns: string, name: string) => api(client, ns).events(name);

beforeAll(async () => {
  port = await freePort();
  await applyManifests(client, manifestsIn('config/roles'), home.name);
  operator = startOperator({
    kubeConfig: kubeConfig(),
    log: testLogger(logs),
    metrics: createMetrics(),
    namespaces: [home.name, tenantNs.name],
    operatorNamespace: home.name,
    verification: { address: `127.0.0.1:${port}` },
  });
  await operator.ready;
  caPem = operator.authority.ca.certPem;
  await k().createServiceUser('gateway', { email: 'ops@example.com', accounts: ['acme'] });
  await client.request('POST', resourcePath(resources.roleBindings, home.name), {
    apiVersion: 'serviceusers.dev/v1alpha1', kind: 'RoleBinding', metadata: { name: 'gateway-verifies' },
    spec: { roleRef: { name: 'service-user-operator.verifier' }, subjects: [{ kind: 'ServiceUser', name: 'gateway' }] },
  });
  await k().waitFor('gateway', 'verifier permissions', (o) => ((o.status as { permissions?: unknown[] } | undefined)?.permissions ?? []).length > 0);
  gateway = await credentials(home.name, 'gateway');
  await k().createServiceUser('victim', { email: 'ops@example.com', accounts: ['acme'] });
  await t().createServiceUser('tenant', { email: 'ops@example.com', accounts: ['acme'] });
}, 120_000);

afterAll(async () => {
  await operator?.stop();
  client.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('the ledger cannot be forged', () => {
  it('attack 5: an Active record injected through the status subresource is refused, dropped, never re-applied, and reported', async () => {
    const victim = await credentials(home.name, 'victim');
    await eventually('the victim verified', async () => ((await authenticated(victim.token)) ? true : undefined));
    const mine = issueToken();
    const record = { id: mine.id, sha256: mine.sha256, createdAt: new Date().toISOString(), state: 'Active' };
    const patched = await kubectl(['patch', 'serviceuser', 'victim', '-n', home.name, '--subresource=status', '--type=json', '-p', JSON.stringify([{ op: 'add', path: '/status/tokens/-', value: record }])]);
    expect(patched.err).toBe('');
    await throughout(3000, 'the injected token is never authenticated', async () => !(await authenticated(mine.token)));
    const dropped = await k().waitFor('victim', 'the injected record dropped and LedgerIntact False', (o) =>
      !statusOf(o).tokens?.some((x) => x.id === mine.id) && !!statusOf(o).conditions?.some((c) => c.type === 'LedgerIntact' && c.status === 'False' && c.reason === 'RecordForged'));
    expect(statusOf(dropped).tokens!.filter((x) => x.state === 'Active')).toHaveLength(1);
    const warned = await eventually('the RecordForged event', async () => (await events(home.name, 'victim')).find((e) => e.reason === 'RecordForged'));
    expect(warned).toMatchObject({ type: 'Warning', message: expect.stringContaining(mine.id) });
    // Another reconcile (a label edit wakes it) does not bring it back.
    const poked = logs.length;
    await client.mergePatch(resourcePath(resources.serviceUsers, home.name, 'victim'), { metadata: { labels: { poke: '1' } } });
    await eventually('the reconcile the label edit wakes', async () => reconciledSince(logs, poked, 'serviceuser', `${home.name}/victim`), 30_000);
    expect(statusOf(await k().serviceUser('victim')).tokens!.some((x) => x.id === mine.id)).toBe(false);
    expect(await authenticated(mine.token)).toBe(false);
    expect(await authenticated(victim.token)).toBe(true);
  });

  it("attack 6: a tenant's token planted under the victim's id with token-replaces is not recorded; the victim's token still verifies", async () => {
    const victim = await credentials(home.name, 'victim');
    const tenant = await credentials(tenantNs.name, 'tenant');
    const victimId = victim.token.split('_')[1]!;
    const planted = tokenWithId(victimId);
    await client.mergePatch(resourcePath(resources.secrets, tenantNs.name, 'tenant-credentials'), {
      metadata: { annotations: { 'serviceusers.dev/token-replaces': `${tenant.data['token-id']}:Rotated`, 'serviceusers.dev/token-created-at': new Date().toISOString().replace(/\.\d+Z$/, 'Z') } },
      data: { token: Buffer.from(planted.token).toString('base64') },
    });
    await throughout(3000, "the victim's token keeps verifying", () => authenticated(victim.token));
    const repaired = await t().waitFor('tenant', 'the tenant repaired with a fresh token', (o) => statusOf(o).tokens?.some((x) => x.state === 'Active' && x.id !== tenant.data['token-id']) ?? false);
    expect(statusOf(repaired).tokens!.map((x) => x.id)).not.toContain(victimId);
    expect(await authenticated(planted.token)).toBe(false);
    expect(await authenticated(victim.token)).toBe(true);
    expect((await events(tenantNs.name, 'tenant')).map((e) => e.reason)).toContain('RecordForged');
  });

  it("attack 6, serials: a tenant's status claiming the victim's certificate serial does not shadow the victim's certificate", async () => {
    const introspectByCertificate = async () => (await call('/v1/introspect', { token: gateway.token }, { cert: gateway })).status === 200;
    expect(await introspectByCertificate()).toBe(true);
    const serial = statusOf(await k().serviceUser('gateway')).certificate!;
    const patched = await kubectl(['patch', 'serviceuser', 'tenant', '-n', tenantNs.name, '--subresource=status', '--type=merge', '-p', JSON.stringify({ status: { certificate: { serialNumber: serial.serialNumber, issuer: serial.issuer } } })]);
    expect(patched.err).toBe('');
    await throughout(3000, "the gateway's own certificate keeps authenticating it", introspectByCertificate);
    // Nor is the claimed serial revoked on the tenant's behalf (the unsealed claim is not the tenant's to revoke).
    expect(await operator.authority.ledger.isListed(serial.serialNumber)).toBe(false);
  });

  it('the ledger key rotates: records are re-MACed under the new key, and verification follows on every replica', async () => {
    const victim = await credentials(home.name, 'victim');
    const keyPath = resourcePath(resources.secrets, home.name, 'service-user-operator-ledger-key');
    const key = await client.get(keyPath);
    expect(Object.keys(key.data as object).sort()).toEqual(['current', 'key.k1']);
    await client.mergePatch(keyPath, { stringData: { 'key.k2': issueToken().token.slice(21, 64), current: 'k2' } });
    await k().waitFor('victim', 'records under k2', (o) => statusOf(o).tokens!.every((x) => x.mac?.startsWith('v1.k2.')), 30_000);
    expect(await authenticated(victim.token)).toBe(true);
    // The old key removed once every record carries the new one.
    await k().waitFor('gateway', 'records under k2', (o) => statusOf(o).tokens!.every((x) => x.mac?.startsWith('v1.k2.')), 30_000);
    await client.mergePatch(keyPath, { data: { 'key.k1': null } });
    await throughout(2000, 'the victim still verifies without k1', () => authenticated(victim.token));
  });
});

describe('rotation and renewal on demand', () => {
  it('a value at creation is recorded without a rotation; a new value rotates the token (with grace) and renews the certificate once', { timeout: 240_000 }, async () => {
    await k().createServiceUser('rotor', { email: 'ops@example.com', accounts: ['acme'], credentials: { token: { rotationRequest: 'r0', gracePeriod: '1h' }, clientCertificate: { renewalRequest: 'c0' } } });
    const first = await credentials(home.name, 'rotor');
    const created = statusOf(await k().serviceUser('rotor'));
    expect(created).toMatchObject({ lastRotationRequest: 'r0', lastRenewalRequest: 'c0' });
    expect(created.tokens).toHaveLength(1);
    const oldSerial = created.certificate!.serialNumber;

    // Acted on once the minute since the first token and certificate has passed (one of each a minute).
    await k().patchServiceUser('rotor', { credentials: { token: { rotationRequest: 'r1' }, clientCertificate: { renewalRequest: 'c1' } } });
    const rotated = await k().waitFor('rotor', 'rotated and renewed', (o) => statusOf(o).lastRotationRequest === 'r1' && statusOf(o).lastRenewalRequest === 'c1' && statusOf(o).certificate?.serialNumber !== oldSerial, 150_000);
    expect(statusOf(rotated).tokens!.map((x) => x.state).sort()).toEqual(['Active', 'Grace']);
    const second = decodeSecret((await k().secret('rotor-credentials'))!);
    expect(second.token).not.toBe(first.token);
    expect(await authenticated(first.token)).toBe(true); // in its grace period
    expect(await authenticated(second.token!)).toBe(true);
    expect(await operator.authority.ledger.isListed(oldSerial)).toBe(true);
    const reasons = (await events(home.name, 'rotor')).map((e) => e.reason);
    expect(reasons).toEqual(expect.arrayContaining(['TokenRotated', 'CertificateIssued']));

    // The same values applied again (and a wake-up): nothing more.
    await k().patchServiceUser('rotor', { credentials: { token: { rotationRequest: 'r1' }, clientCertificate: { renewalRequest: 'c1' } } });
    const poked = logs.length;
    await client.mergePatch(resourcePath(resources.serviceUsers, home.name, 'rotor'), { metadata: { labels: { poke: '1' } } });
    await eventually('the reconcile the label edit wakes', async () => reconciledSince(logs, poked, 'serviceuser', `${home.name}/rotor`), 30_000);
    const after = statusOf(await k().serviceUser('rotor'));
    expect(after.tokens).toHaveLength(2);
    expect(after.certificate!.serialNumber).toBe(statusOf(rotated).certificate!.serialNumber);
  });

  it('refuses an empty or over-long request, naming the field', async () => {
    const bad = await k().createServiceUser('bad', { email: 'ops@example.com', accounts: ['acme'], credentials: { token: { rotationRequest: 'x'.repeat(65) } } }).catch((e: unknown) => String(e));
    expect(bad).toContain('spec.credentials.token.rotationRequest');
    const empty = await k().createServiceUser('bad', { email: 'ops@example.com', accounts: ['acme'], credentials: { clientCertificate: { renewalRequest: '' } } }).catch((e: unknown) => String(e));
    expect(empty).toContain('spec.credentials.clientCertificate.renewalRequest');
  });
});
