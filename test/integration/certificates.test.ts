// Client certificates from the built-in CA, against the real API server, read by openssl
// and keytool; revocation and holds checked with `openssl verify -crl_check`.

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { describe, expect, inject, it } from 'vitest';
import { createCa } from '../../src/credentials/ca.ts';
import { testLogger } from '../logs.ts';
import { createMetrics } from '../../src/observability/metrics.ts';
import { startOperator } from '../../src/operator.ts';
import { isNotFound, KubeClient, type KubeObject } from '../../src/controller/kube.ts';
import { typedServiceUser, type ServiceUserEntry } from '../../src/api/stores.ts';
import { newLedgerKey } from '../../src/credentials/mac.ts';
import { issueToken } from '../../src/credentials/token.ts';
import { EventRecorder } from '../../src/controller/events.ts';
import { serviceUserReconciler } from '../../src/serviceuser/reconcile.ts';
import { eventually, kubeConfig, run, useNamespace, type Ran } from '../kube.ts';
import { api, decodeSecret, useOperator, statusOf } from '../operator.ts';

const ns = useNamespace('certs');
const running = useOperator(ns);
const dir = mkdtempSync(path.join(tmpdir(), 'certs-'));
const k = () => api(running.client, ns.name);
const base = { email: 'ops@example.com', accounts: ['acme'] };


/** The CRL the operator publishes (what /v1/crl serves), in a file for openssl. */
async function crl(): Promise<string> {
  const file = path.join(dir, `crl-${Date.now()}-${Math.random()}.pem`);
  writeFileSync(file, running.operator.authority.ledger.crlPem);
  return file;
}

/** openssl verify -crl_check of the Secret's certificate against its ca.crt and the published CRL. */
async function verify(data: Record<string, string>): Promise<Ran> {
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
    const text = (await run('openssl', ['x509', '-in', certFile, '-noout', '-subject', '-enddate', '-serial', '-ext', 'extendedKeyUsage'])).output;
    expect(text).toContain(`CN = serviceuser:${ns.name}:signer`);
    expect(text).toContain('OU = Release signer');
    expect(text).toContain('TLS Web Client Authentication');
    // Never past the end date, though duration asks for a year.
    const su = await k().serviceUser('signer');
    expect(statusOf(su).certificate!.notAfter).toBe(`${endDate}T23:59:59Z`);
    expect(statusOf(su).certificate!.renewalTime).toBeUndefined();
    expect(text).toContain(`serial=${statusOf(su).certificate!.serialNumber.toUpperCase()}`);
    // The fingerprint status records is the one openssl computes.
    const fingerprint = (await run('openssl', ['x509', '-in', certFile, '-noout', '-fingerprint', '-sha256'])).output.split('=')[1]!.trim().replaceAll(':', '').toLowerCase();
    expect(statusOf(su).certificate!.sha256).toBe(fingerprint);

    const p12 = path.join(dir, 'signer.p12');
    writeFileSync(p12, Buffer.from((raw.data as Record<string, string>)['client.p12']!, 'base64'));
    const password = data['client.p12.password']!;
    const info = await run('openssl', ['pkcs12', '-in', p12, '-info', '-noout', '-passin', `pass:${password}`]);
    expect(info.ok, info.output).toBe(true);
    expect(info.output).toContain('MAC: sha256');
    const keytool = await run('keytool', ['-list', '-keystore', p12, '-storetype', 'PKCS12', '-storepass', password]);
    expect(keytool.ok, keytool.output).toBe(true);
    expect(keytool.output).toContain('PrivateKeyEntry');
    expect((await verify(data)).ok).toBe(true);
  });

  it('disable puts the certificate on hold; enable releases it', async () => {
    await k().createServiceUser('pausable', base);
    const { data } = await activeSecret('pausable');
    expect((await verify(data)).ok).toBe(true);
    await k().patchServiceUser('pausable', { disabled: true });
    await eventually('the hold on the CRL', async () => ((await verify(data)).output.includes('certificate revoked') ? true : undefined));
    expect((await run('openssl', ['crl', '-in', await crl(), '-noout', '-text'])).output).toContain('Certificate Hold');
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
    expect(after.output).toMatch(/certificate revoked|certificate has expired/);
    const listed = (await run('openssl', ['crl', '-in', await crl(), '-noout', '-text'])).output;
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
    expect(old.output).toContain('certificate revoked');
    expect((await run('openssl', ['crl', '-in', await crl(), '-noout', '-text'])).output).toContain('Superseded');
  });

  it('deletion puts the serial on the CRL before the Secret goes', async () => {
    await k().createServiceUser('doomed', base);
    const { data } = await activeSecret('doomed');
    await running.client.request('DELETE', `/apis/serviceusers.dev/v1alpha1/namespaces/${ns.name}/serviceusers/doomed`);
    await eventually('revocation', async () => ((await verify(data)).output.includes('certificate revoked') ? true : undefined));
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

/** The certificate's notAfter as openssl reads it from the Secret. */
const notAfterOf = async (pem: string) => {
  const file = path.join(dir, `na-${Date.now()}-${Math.random()}.pem`);
  writeFileSync(file, pem);
  return Date.parse((await run('openssl', ['x509', '-in', file, '-noout', '-enddate'])).output.split('=')[1]!.trim());
};

describe('at the edges: no certificate outlives its promise', () => {
  it('an end date added later reissues within it, the old certificate revoked as superseded', async () => {
    await k().createServiceUser('late-end', base);
    const first = await activeSecret('late-end');
    const before = statusOf(await k().serviceUser('late-end')).certificate!;
    expect(Date.parse(before.notAfter)).toBeGreaterThan(Date.now() + 80 * 86_400_000);
    const end = new Date(Date.now() + 2 * 86_400_000).toISOString();
    await k().patchServiceUser('late-end', { endDate: end });
    const su = await k().waitFor('late-end', 'a certificate ending by the end date', (o) => !!statusOf(o).certificate && Date.parse(statusOf(o).certificate!.notAfter) <= Date.parse(end));
    expect(statusOf(su).certificate!.serialNumber).not.toBe(before.serialNumber);
    const data = decodeSecret((await k().secret('late-end-credentials'))!);
    expect(await notAfterOf(data['tls.crt']!)).toBeLessThanOrEqual(Date.parse(end));
    expect((await verify(data)).ok).toBe(true);
    await eventually('the old one revoked', async () => ((await verify(first.data)).output.includes('certificate revoked') ? true : undefined));
    expect((await run('openssl', ['crl', '-in', await crl(), '-noout', '-text'])).output).toContain('Superseded');
  });

  it('a lowered duration reissues with it, the old certificate revoked as superseded', async () => {
    await k().createServiceUser('shorter', base);
    const first = await activeSecret('shorter');
    const before = statusOf(await k().serviceUser('shorter')).certificate!;
    await k().patchServiceUser('shorter', { credentials: { clientCertificate: { duration: '24h', renewBefore: '1h' } } });
    const su = await k().waitFor('shorter', 'a certificate of 24h', (o) => !!statusOf(o).certificate && statusOf(o).certificate!.serialNumber !== before.serialNumber);
    const c = statusOf(su).certificate!;
    expect(Date.parse(c.notAfter) - Date.parse(c.notBefore)).toBeLessThanOrEqual(24 * 3_600_000 + 61_000);
    const data = decodeSecret((await k().secret('shorter-credentials'))!);
    expect(await notAfterOf(data['tls.crt']!)).toBe(Date.parse(c.notAfter));
    await eventually('the old one revoked', async () => ((await verify(first.data)).output.includes('certificate revoked') ? true : undefined));
  });

  it('a Secret restored from a backup with a revoked certificate: it is not kept or recorded, a fresh one is issued and the old stays revoked', async () => {
    await k().createServiceUser('restored', { ...base, credentials: { clientCertificate: { duration: '2h', renewBefore: '30m' } } });
    const backup = await activeSecret('restored');
    const old = statusOf(await k().serviceUser('restored')).certificate!;
    running.clock.offsetMs += 91 * 60_000;
    running.operator.controllers.serviceUsers.enqueue(`${ns.name}/restored`);
    const renewed = statusOf(await k().waitFor('restored', 'the renewal', (o) => statusOf(o).certificate?.serialNumber !== old.serialNumber)).certificate!;
    running.clock.offsetMs -= 91 * 60_000;
    expect((await verify(backup.data)).output).toContain('certificate revoked');
    // The backup goes back into the Secret, as a restore (or a tenant keeping the old file) would do.
    await running.client.mergePatch(`/api/v1/namespaces/${ns.name}/secrets/restored-credentials`, { data: backup.raw.data });
    const su = await k().waitFor('restored', 'a fresh certificate', (o) => ![old.serialNumber, renewed.serialNumber, undefined].includes(statusOf(o).certificate?.serialNumber));
    const data = await eventually('the fresh certificate in the Secret', async () => {
      const d = decodeSecret((await k().secret('restored-credentials'))!);
      return d['tls.crt'] !== backup.data['tls.crt'] ? d : undefined;
    });
    expect(statusOf(su).certificate!.serialNumber).not.toBe(old.serialNumber);
    expect((await verify(data)).ok).toBe(true);
    expect((await verify(backup.data)).output).toContain('certificate revoked');
    // Never recorded again, and its revocation stands.
    expect(statusOf(await k().serviceUser('restored')).certificate!.serialNumber).not.toBe(old.serialNumber);
  });

  it('the certificate status records, revoked at an end date that moved meanwhile, is replaced rather than kept', async () => {
    // The end-date timer revokes from the cache; an extension it had not seen yet leaves a
    // live user holding a revoked certificate unless the reconcile consults the ledger.
    await k().createServiceUser('moved', { ...base, endDate: new Date(Date.now() + 30 * 86_400_000).toISOString() });
    const before = await activeSecret('moved');
    const old = statusOf(await k().serviceUser('moved')).certificate!;
    await running.operator.authority.ledger.revoke(`${ns.name}/moved`, [{ serialNumber: old.serialNumber, reason: 'cessationOfOperation', notAfter: old.notAfter }]);
    running.operator.controllers.serviceUsers.enqueue(`${ns.name}/moved`);
    const su = await k().waitFor('moved', 'a fresh certificate', (o) => ![old.serialNumber, undefined].includes(statusOf(o).certificate?.serialNumber));
    const data = await eventually('the fresh certificate in the Secret', async () => {
      const d = decodeSecret((await k().secret('moved-credentials'))!);
      return d['tls.crt'] !== before.data['tls.crt'] ? d : undefined;
    });
    expect(statusOf(su).phase).toBe('Active');
    expect((await verify(data)).ok).toBe(true);
    expect((await verify(before.data)).output).toContain('certificate revoked');
  });
});

// A reconciler of the operator's own code, run by the test against its own view of one
// ServiceUser: what a real API server cannot be made to produce on demand — a spec this
// version cannot parse (the CRD and the operator at different versions) and a Secret created
// in the instant between the operator's read and its write.
const bare = useNamespace('certs-bare');
const ledgerKey = newLedgerKey();
const trust = { ring: { current: ledgerKey, keys: [ledgerKey] } };
const b = () => api(running.client, bare.name);
function bareReconciler(options: { client?: KubeClient; view?: (o: KubeObject) => KubeObject } = {}) {
  const client = options.client ?? running.client;
  let current: ServiceUserEntry | undefined;
  const none = { get: () => undefined, list: () => [], byIndex: () => [] };
  const reconcile = serviceUserReconciler({
    client, serviceUsers: { get: () => current, list: () => [], byIndex: () => [] }, roleBindings: none, roles: none, accounts: none, namespaces: none, events: new EventRecorder(client, testLogger()), log: testLogger(), metrics: createMetrics(),
    fieldManager: 'service-user-operator', now: Date.now, issue: issueToken, authority: running.operator.authority, trust,
  });
  return async (name: string, signal = new AbortController().signal) => {
    const live = await b().serviceUser(name);
    // Into the cache as its informer would put it: parsed once (a spec that does not parse, with the reason).
    current = typedServiceUser(options.view ? options.view(live) : live);
    return reconcile(`${bare.name}/${name}`, signal);
  };
}

describe('at the edges: deletion and ownership', () => {
  it('deletion when the spec no longer parses revokes what status recorded and wipes the Secret', async () => {
    await b().createServiceUser('skewed', base);
    const reconcile = bareReconciler();
    await reconcile('skewed');
    await reconcile('skewed');
    const su = await b().waitFor('skewed', 'Active', (o) => statusOf(o).phase === 'Active', 5000);
    const serial = statusOf(su).certificate!.serialNumber;
    const data = decodeSecret((await b().secret('skewed-credentials'))!);
    expect((await verify(data)).ok).toBe(true);
    await running.client.request('DELETE', `/apis/serviceusers.dev/v1alpha1/namespaces/${bare.name}/serviceusers/skewed`);
    // What an operator older than its CRD would see: a key algorithm it does not know.
    const skew = (o: KubeObject) => {
      const spec = structuredClone(o.spec) as { credentials: { clientCertificate: { privateKey: { algorithm: string } } } };
      spec.credentials.clientCertificate.privateKey.algorithm = 'ML-DSA-65';
      return { ...o, spec };
    };
    await bareReconciler({ view: skew })('skewed');
    expect((await verify(data)).output).toContain('certificate revoked');
    expect((await run('openssl', ['crl', '-in', await crl(), '-noout', '-text'])).output).toContain(`Serial Number: ${serial.toUpperCase()}`);
    const left = await b().secret('skewed-credentials');
    expect(left ? Object.keys(decodeSecret(left)).filter((key) => ['token', 'tls.key', 'tls.crt'].includes(key)) : []).toEqual([]);
    const events = await b().events('skewed');
    expect(events.some((e) => e.reason === 'TokenRevoked' && e.message.startsWith('ServiceUser deleted: tokens'))).toBe(true);
  });

  it('a replica that stops acting while it observes executes nothing: no Secret, no certificate, no status', async () => {
    const lost = new AbortController();
    class Losing extends KubeClient {
      override async get<T = KubeObject>(p: string, signal?: AbortSignal): Promise<T> {
        // The Lease is lost while the pass reads the Secret (manager.ts aborts the signal).
        if (p.endsWith('/secrets/stopping-credentials')) lost.abort(new Error('this replica lost the leader Lease'));
        return super.get<T>(p, signal);
      }
    }
    await b().createServiceUser('stopping', base);
    const reconcile = bareReconciler({ client: new Losing(kubeConfig()) });
    await expect(reconcile('stopping', lost.signal)).rejects.toThrow('lost the leader Lease');
    expect(await b().secret('stopping-credentials')).toBeUndefined();
    expect((await b().serviceUser('stopping')).status).toBeUndefined();
    // The next leader's pass does it all.
    await reconcile('stopping');
    expect(statusOf(await b().serviceUser('stopping')).phase).toBe('Active');
  });

  it('a Secret someone else creates between the read and the write is never adopted; the condition names its owner', async () => {
    let raced = false;
    const secrets = `/api/v1/namespaces/${bare.name}/secrets`;
    class Racing extends KubeClient {
      override async get<T = KubeObject>(p: string): Promise<T> {
        try {
          return await super.get<T>(p);
        } catch (err) {
          if (!raced && isNotFound(err) && p === `${secrets}/raced-credentials`) {
            raced = true;
            await running.client.request('POST', `${secrets}?fieldManager=kubectl-create`, { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'raced-credentials' }, stringData: { password: 'theirs' } });
          }
          throw err;
        }
      }
    }
    await b().createServiceUser('raced', base);
    const reconcile = bareReconciler({ client: new Racing(kubeConfig()) });
    await expect(reconcile('raced')).rejects.toThrow('Secret raced-credentials was created by field manager "kubectl-create"');
    await reconcile('raced');
    const su = await b().serviceUser('raced');
    const stalled = ((su.status as { conditions?: { type: string; reason: string; message: string }[] }).conditions ?? []).find((c) => c.type === 'Stalled');
    expect(stalled).toMatchObject({ reason: 'SecretNotOwned' });
    expect(stalled!.message).toContain('it belongs to field manager "kubectl-create"');
    const theirs = (await b().secret('raced-credentials'))!;
    expect(decodeSecret(theirs)).toEqual({ password: 'theirs' });
    expect(theirs.metadata.ownerReferences ?? []).toEqual([]);
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
