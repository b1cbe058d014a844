// Client certificates from the built-in CA, against the real API server, read by openssl
// and keytool; revocation and holds checked with `openssl verify -crl_check`.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { describe, expect, inject, it } from 'vitest';
import { createCa } from '../../src/credentials/ca.ts';
import { testLogger } from '../logs.ts';
import { createMetrics } from '../../src/observability/metrics.ts';
import { startOperator } from '../../src/operator.ts';
import { eventually, useNamespace } from '../kube.ts';
import { api, decodeSecret, useOperator } from '../operator.ts';

const ns = useNamespace('certs');
const running = useOperator(ns);
const dir = mkdtempSync(path.join(tmpdir(), 'certs-'));
const k = () => api(running.client, ns.name);
const base = { email: 'ops@example.com', accounts: ['acme'] };

type Status = { phase?: string; certificate?: { serialNumber: string; notBefore: string; notAfter: string; renewalTime?: string; issuer: string } };
const statusOf = (o: object) => ((o as { status?: unknown }).status ?? {}) as Status;

function run(cmd: string, args: string[]) {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return { ok: r.status === 0, out: `${r.stdout}${r.stderr}` };
}

/** The CRL the operator publishes (what /v1/crl serves), in a file for openssl. */
async function crl(): Promise<string> {
  const file = path.join(dir, `crl-${Date.now()}-${Math.random()}.pem`);
  writeFileSync(file, running.operator.authority.ledger.crlPem);
  return file;
}

/** openssl verify -crl_check of the Secret's certificate against its ca.crt and the published CRL. */
async function verify(data: Record<string, string>): Promise<{ ok: boolean; out: string }> {
  const cert = path.join(dir, `leaf-${Date.now()}-${Math.random()}.pem`);
  const ca = path.join(dir, `ca-${Date.now()}-${Math.random()}.pem`);
  writeFileSync(cert, data['tls.crt']!);
  writeFileSync(ca, data['ca.crt']!);
  return run('openssl', ['verify', '-crl_check', '-purpose', 'sslclient', '-CAfile', ca, '-CRLfile', await crl(), cert]);
}

async function activeSecret(name: string) {
  await k().waitFor(name, `${name} Active`, (o) => statusOf(o).phase === 'Active' && !!statusOf(o).certificate);
  const secret = await k().secret(`${name}-credentials`);
  return { raw: secret!, data: decodeSecret(secret!) };
}

describe('client certificates from the built-in CA', () => {
  it('land in the Secret with the CA and a PKCS#12 bundle that openssl and keytool read', async () => {
    const endDate = new Date(Date.now() + 30 * 86_400_000).toISOString().slice(0, 10);
    await k().createServiceUser('signer', { ...base, friendlyName: 'Release signer', endDate, credentials: { clientCertificate: { duration: '8760h' } } });
    const { raw, data } = await activeSecret('signer');
    expect(Object.keys(data).sort()).toEqual(['ca.crt', 'client.p12', 'client.p12.password', 'expires-at', 'identity', 'tls.crt', 'tls.key', 'token', 'token-id']);
    const certFile = path.join(dir, 'signer.crt');
    writeFileSync(certFile, data['tls.crt']!);
    const text = run('openssl', ['x509', '-in', certFile, '-noout', '-subject', '-enddate', '-serial', '-ext', 'extendedKeyUsage']).out;
    expect(text).toContain(`CN = serviceuser:${ns.name}:signer`);
    expect(text).toContain('OU = Release signer');
    expect(text).toContain('TLS Web Client Authentication');
    // Never past the end date, though duration asks for a year.
    const su = await k().serviceUser('signer');
    expect(statusOf(su).certificate!.notAfter).toBe(`${endDate}T23:59:59Z`);
    expect(statusOf(su).certificate!.renewalTime).toBeUndefined();
    expect(text).toContain(`serial=${statusOf(su).certificate!.serialNumber.toUpperCase()}`);

    const p12 = path.join(dir, 'signer.p12');
    writeFileSync(p12, Buffer.from((raw.data as Record<string, string>)['client.p12']!, 'base64'));
    const password = data['client.p12.password']!;
    const info = run('openssl', ['pkcs12', '-in', p12, '-info', '-noout', '-passin', `pass:${password}`]);
    expect(info.ok, info.out).toBe(true);
    expect(info.out).toContain('MAC: sha256');
    const keytool = run('keytool', ['-list', '-keystore', p12, '-storetype', 'PKCS12', '-storepass', password]);
    expect(keytool.ok, keytool.out).toBe(true);
    expect(keytool.out).toContain('PrivateKeyEntry');
    expect((await verify(data)).ok).toBe(true);
  });

  it('disable puts the certificate on hold; enable releases it', async () => {
    await k().createServiceUser('pausable', base);
    const { data } = await activeSecret('pausable');
    expect((await verify(data)).ok).toBe(true);
    await k().patchServiceUser('pausable', { disabled: true });
    await eventually('the hold on the CRL', async () => ((await verify(data)).out.includes('certificate revoked') ? true : undefined));
    expect(run('openssl', ['crl', '-in', await crl(), '-noout', '-text']).out).toContain('Certificate Hold');
    expect(decodeSecret((await k().secret('pausable-credentials'))!)['tls.crt']).toBe(data['tls.crt']);
    await k().patchServiceUser('pausable', { disabled: false });
    await eventually('the release', async () => ((await verify(data)).ok ? true : undefined));
  });

  it('at the end date the certificate fails openssl verify -crl_check and leaves the Secret', async () => {
    await k().createServiceUser('ending', { ...base, endDate: new Date(Date.now() + 3000).toISOString() });
    const { data } = await activeSecret('ending');
    expect((await verify(data)).ok).toBe(true);
    const serial = statusOf(await k().serviceUser('ending')).certificate!.serialNumber;
    await k().waitFor('ending', 'Expired', (o) => statusOf(o).phase === 'Expired', 15_000);
    // Its notAfter is the end date, so openssl also finds it expired; the CRL lists it all the same.
    const after = await verify(data);
    expect(after.ok).toBe(false);
    expect(after.out).toMatch(/certificate revoked|certificate has expired/);
    const listed = run('openssl', ['crl', '-in', await crl(), '-noout', '-text']).out;
    expect(listed).toContain(`Serial Number: ${serial.toUpperCase()}`);
    expect(listed).toContain('Cessation Of Operation');
    expect(Object.keys(decodeSecret((await k().secret('ending-credentials'))!)).sort()).toEqual(['expires-at', 'identity']);
  });

  it('renews at renewBefore: a new certificate, the old one revoked as superseded', async () => {
    await k().createServiceUser('renewing', { ...base, credentials: { clientCertificate: { duration: '2h', renewBefore: '30m' } } });
    const first = await activeSecret('renewing');
    const before = statusOf(await k().serviceUser('renewing')).certificate!;
    expect(Date.parse(before.renewalTime!)).toBe(Date.parse(before.notAfter) - 30 * 60_000);
    running.clock.offsetMs += 91 * 60_000;
    running.operator.controllers.serviceUsers.enqueue(`${ns.name}/renewing`);
    const renewed = await k().waitFor('renewing', 'a new certificate', (o) => statusOf(o).certificate?.serialNumber !== before.serialNumber);
    running.clock.offsetMs -= 91 * 60_000;
    expect(statusOf(renewed).certificate!.serialNumber).not.toBe(before.serialNumber);
    const data = decodeSecret((await k().secret('renewing-credentials'))!);
    expect(data['tls.crt']).not.toBe(first.data['tls.crt']);
    expect(data['client.p12.password']).not.toBe(first.data['client.p12.password']);
    const old = await verify(first.data);
    expect(old.out).toContain('certificate revoked');
    expect(run('openssl', ['crl', '-in', await crl(), '-noout', '-text']).out).toContain('Superseded');
  });

  it('deletion puts the serial on the CRL before the Secret goes', async () => {
    await k().createServiceUser('doomed', base);
    const { data } = await activeSecret('doomed');
    await running.client.request('DELETE', `/apis/serviceusers.dev/v1alpha1/namespaces/${ns.name}/serviceusers/doomed`);
    await eventually('revocation', async () => ((await verify(data)).out.includes('certificate revoked') ? true : undefined));
  });

  it('a PKCS#12 can be turned off and on without a new certificate', async () => {
    await k().createServiceUser('bundle', base);
    const first = await activeSecret('bundle');
    await k().patchServiceUser('bundle', { credentials: { clientCertificate: { pkcs12: false } } });
    await eventually('no client.p12', async () => {
      const d = decodeSecret((await k().secret('bundle-credentials'))!);
      return !('client.p12' in d) && !('client.p12.password' in d) ? d : undefined;
    });
    expect(decodeSecret((await k().secret('bundle-credentials'))!)['tls.crt']).toBe(first.data['tls.crt']);
  });
});

describe('the CA Secret', () => {
  it('a CA the user put there is used as it is', async () => {
    const own = await createCa({ commonName: 'Example Corp service users' });
    const caNs = `${ns.name}`;
    await running.client.request('POST', `/api/v1/namespaces/${caNs}/secrets`, {
      apiVersion: 'v1', kind: 'Secret', type: 'kubernetes.io/tls', metadata: { name: 'own-ca' },
      data: { 'tls.crt': Buffer.from(own.certPem).toString('base64'), 'tls.key': Buffer.from(own.keyPem).toString('base64') },
    });
    const kc = new KubeConfig();
    kc.loadFromFile(inject('kubeconfig'));
    const op = startOperator({ kubeConfig: kc, log: testLogger(), metrics: createMetrics(), namespaces: ['none-' + ns.name], operatorNamespace: caNs, caSecretName: 'own-ca', crlConfigMapName: 'own-crl' });
    await op.ready;
    expect(op.authority.ca.certPem).toBe(own.certPem);
    await op.stop();
  });

  it('a broken CA Secret stops the start with a message naming it', async () => {
    await running.client.request('POST', `/api/v1/namespaces/${ns.name}/secrets`, {
      apiVersion: 'v1', kind: 'Secret', type: 'kubernetes.io/tls', metadata: { name: 'broken-ca' },
      data: { 'tls.crt': Buffer.from('not a certificate').toString('base64'), 'tls.key': Buffer.from('nope').toString('base64') },
    });
    const kc = new KubeConfig();
    kc.loadFromFile(inject('kubeconfig'));
    const op = startOperator({ kubeConfig: kc, log: testLogger(), metrics: createMetrics(), namespaces: ['none-' + ns.name], operatorNamespace: ns.name, caSecretName: 'broken-ca' });
    await expect(op.ready).rejects.toThrow(`the CA Secret ${ns.name}/broken-ca cannot be used: the CA certificate (tls.crt) is not a PEM X.509 certificate`);
    await op.stop();
  });
});
