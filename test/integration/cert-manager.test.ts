// cert-manager issuer mode against a real cert-manager (built from its Go modules, run out of
// cluster) with a CA Issuer: the ServiceUser's Secret is assembled from cert-manager's
// output, PKCS#12 included; a missing or unready issuer is reported with what to do.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createCa } from '../../src/credentials/ca.ts';
import { startCertManager, type CertManager } from '../certmanager/certmanager.ts';
import { eventually, useNamespace } from '../kube.ts';
import { api, decodeSecret, useOperator } from '../operator.ts';

const ns = useNamespace('cm');
const running = useOperator(ns);
const k = () => api(running.client, ns.name);
const dir = mkdtempSync(path.join(tmpdir(), 'cm-'));
const base = { email: 'ops@example.com', accounts: ['acme'] };
let certManager: CertManager;
let caPem = '';

type Condition = { type: string; status: string; reason: string; message: string };
const ready = (o: object) => ((o as { status?: { conditions?: Condition[] } }).status?.conditions ?? []).find((c) => c.type === 'Ready');
const run = (cmd: string, args: string[]) => {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return { ok: r.status === 0, out: `${r.stdout}${r.stderr}` };
};

beforeAll(async () => {
  certManager = await startCertManager(inject('kubeconfig'));
  const ca = await createCa({ commonName: 'cert-manager test CA' });
  caPem = ca.certPem;
  await running.client.request('POST', `/api/v1/namespaces/${ns.name}/secrets`, {
    apiVersion: 'v1', kind: 'Secret', type: 'kubernetes.io/tls', metadata: { name: 'issuer-ca' },
    data: { 'tls.crt': Buffer.from(ca.certPem).toString('base64'), 'tls.key': Buffer.from(ca.keyPem).toString('base64') },
  });
  for (const [name, secretName] of [['ca-issuer', 'issuer-ca'], ['broken-issuer', 'no-such-secret']]) {
    await running.client.request('POST', `/apis/cert-manager.io/v1/namespaces/${ns.name}/issuers`, {
      apiVersion: 'cert-manager.io/v1', kind: 'Issuer', metadata: { name }, spec: { ca: { secretName } },
    });
  }
  await eventually('the CA Issuer to be ready', async () => {
    const issuer = await running.client.get(`/apis/cert-manager.io/v1/namespaces/${ns.name}/issuers/ca-issuer`);
    return ready(issuer)?.status === 'True' ? true : undefined;
  }, 60_000);
}, 600_000);
afterAll(async () => {
  await certManager?.stop();
});

describe(`cert-manager issuer mode`, () => {
  it('assembles the Secret from cert-manager\'s certificate, with a PKCS#12 openssl and keytool read', async () => {
    const endDate = new Date(Date.now() + 10 * 86_400_000).toISOString().slice(0, 10);
    await k().createServiceUser('managed', {
      ...base, friendlyName: 'Managed signer', endDate,
      credentials: { clientCertificate: { issuerRef: { name: 'ca-issuer', kind: 'Issuer', group: 'cert-manager.io' }, duration: '8760h', privateKey: { algorithm: 'RSA', size: 2048 } } },
    });
    const su = await k().waitFor('managed', 'Active', (o) => ready(o)?.status === 'True', 60_000);
    const data = decodeSecret((await k().secret('managed-credentials'))!);
    expect(Object.keys(data).sort()).toEqual(['ca.crt', 'client.p12', 'client.p12.password', 'expires-at', 'identity', 'tls.crt', 'tls.key', 'token', 'token-id']);
    expect(data['ca.crt']!.trim()).toBe(caPem.trim());
    const cert = path.join(dir, 'managed.crt');
    const ca = path.join(dir, 'ca.crt');
    writeFileSync(cert, data['tls.crt']!);
    writeFileSync(ca, caPem);
    expect(run('openssl', ['verify', '-purpose', 'sslclient', '-CAfile', ca, cert]).ok).toBe(true);
    const text = run('openssl', ['x509', '-in', cert, '-noout', '-subject', '-enddate', '-text']).out;
    expect(text).toContain(`CN=serviceuser:${ns.name}:managed`.replace('CN=', 'CN = '));
    expect(text).toContain('TLS Web Client Authentication');
    expect(text).toContain('Public-Key: (2048 bit)');
    // Clipped to the end date.
    const notAfter = Date.parse((su.status as { certificate: { notAfter: string } }).certificate.notAfter);
    expect(notAfter).toBeLessThanOrEqual(Date.parse(`${endDate}T23:59:59Z`));
    expect(notAfter).toBeGreaterThan(Date.parse(`${endDate}T23:59:59Z`) - 2 * 3_600_000);
    const cmCert = await running.client.get(`/apis/cert-manager.io/v1/namespaces/${ns.name}/certificates/managed-client`);
    expect(cmCert.spec).toMatchObject({ usages: ['client auth', 'digital signature'], issuerRef: { name: 'ca-issuer', kind: 'Issuer' } });

    const raw = (await k().secret('managed-credentials'))!.data as Record<string, string>;
    const p12 = path.join(dir, 'managed.p12');
    writeFileSync(p12, Buffer.from(raw['client.p12']!, 'base64'));
    expect(run('openssl', ['pkcs12', '-in', p12, '-info', '-noout', '-passin', `pass:${data['client.p12.password']}`]).ok).toBe(true);
    const keytool = run('keytool', ['-list', '-keystore', p12, '-storetype', 'PKCS12', '-storepass', data['client.p12.password']!]);
    expect(keytool.ok, keytool.out).toBe(true);
  });

  it('reports a missing issuer with what to do', async () => {
    await k().createServiceUser('orphan', { ...base, credentials: { clientCertificate: { issuerRef: { name: 'nobody', kind: 'Issuer' } } } });
    const su = await k().waitFor('orphan', 'IssuerNotFound', (o) => ready(o)?.reason === 'IssuerNotFound');
    expect(ready(su)!.message).toBe(`Issuer nobody does not exist in namespace ${ns.name}: create it or fix spec.credentials.clientCertificate.issuerRef`);
    expect((su.status as { phase: string }).phase).toBe('Pending');
    await eventually('the event', async () => ((await k().events('orphan')).some((e) => e.reason === 'IssuerNotFound') ? true : undefined));
  });

  it('reports an issuer that is not ready, with its own reason', async () => {
    await k().createServiceUser('waiting', { ...base, credentials: { clientCertificate: { issuerRef: { name: 'broken-issuer', kind: 'Issuer' } } } });
    const su = await k().waitFor('waiting', 'IssuerNotReady', (o) => ready(o)?.reason === 'IssuerNotReady', 30_000);
    expect(ready(su)!.message).toMatch(/^Issuer broken-issuer is not ready: .*no-such-secret/);
  });
});
