// cert-manager issuer mode against a real cert-manager (built from its Go modules, run out of
// cluster) with a CA Issuer: the ServiceUser's Secret is assembled from cert-manager's
// output, PKCS#12 included; a missing or unready issuer is reported with what to do.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { connect } from 'node:tls';
import { createCa } from '../../src/credentials/ca.ts';
import { certificateClaiming } from '../forge.ts';
import { startCertManager, type CertManager } from '../certmanager/certmanager.ts';
import { isNotFound, type KubeObject } from '../../src/controller/kube.ts';
import { eventually, useNamespace, run } from '../kube.ts';
import { api, decodeSecret, useOperator } from '../operator.ts';

const ns = useNamespace('cm');
// Another tenant's namespace, for the forgery attack: its users are the victims.
const victims = useNamespace('cm-victim');
const running = useOperator(ns, { namespaces: [ns.name, victims.name], verification: { address: '127.0.0.1:0' } });
const k = () => api(running.client, ns.name);
const dir = mkdtempSync(path.join(tmpdir(), 'cm-'));
const base = { email: 'ops@example.com', accounts: ['acme'] };
let certManager: CertManager;
let caPem = '';

type Condition = { type: string; status: string; reason: string; message: string };
const ready = (o: object) => ((o as { status?: { conditions?: Condition[] } }).status?.conditions ?? []).find((c) => c.type === 'Ready');
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
    expect((await run('openssl', ['verify', '-purpose', 'sslclient', '-CAfile', ca, cert])).ok).toBe(true);
    const text = (await run('openssl', ['x509', '-in', cert, '-noout', '-subject', '-enddate', '-text'])).output;
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
    expect((await run('openssl', ['pkcs12', '-in', p12, '-info', '-noout', '-passin', `pass:${data['client.p12.password']}`])).ok).toBe(true);
    const keytool = await run('keytool', ['-list', '-keystore', p12, '-storetype', 'PKCS12', '-storepass', data['client.p12.password']!]);
    expect(keytool.ok, keytool.output).toBe(true);
  });

  it('reports a missing issuer with what to do', async () => {
    await k().createServiceUser('orphan', { ...base, credentials: { clientCertificate: { issuerRef: { name: 'nobody', kind: 'Issuer' } } } });
    const su = await k().waitFor('orphan', 'IssuerNotFound', (o) => ready(o)?.reason === 'IssuerNotFound');
    expect(ready(su)!.message).toBe(`Issuer nobody does not exist in namespace ${ns.name}: create it or fix spec.credentials.clientCertificate.issuerRef`);
    expect((su.status as { phase: string }).phase).toBe('Pending');
    await eventually('the event', async () => ((await k().events('orphan')).some((e) => e.reason === 'IssuerNotFound') ? true : undefined));
  });

  it('reports an issuer that is not ready; the issuer\'s own message (which may name what the tenant may not read) goes to the log only', async () => {
    await k().createServiceUser('waiting', { ...base, credentials: { clientCertificate: { issuerRef: { name: 'broken-issuer', kind: 'Issuer' } } } });
    const su = await k().waitFor('waiting', 'IssuerNotReady', (o) => ready(o)?.reason === 'IssuerNotReady', 30_000);
    expect(ready(su)!.message).toBe('Issuer broken-issuer is not ready; ask whoever runs it (its own status says why)');
    expect(JSON.stringify(su.status)).not.toContain('no-such-secret');
    await eventually('the issuer\'s message in the operator\'s log', async () => (running.logs.some((l) => l.includes('Issuer broken-issuer:') && l.includes('no-such-secret')) ? true : undefined));
  });
});

const issuerRef = { name: 'ca-issuer', kind: 'Issuer', group: 'cert-manager.io' };
type CertStatus = { serialNumber: string; notBefore: string; notAfter: string; issuer: string; sha256?: string };
const certificateOf = (o: object) => (o as { status?: { certificate?: CertStatus } }).status?.certificate;
const phaseOf = (o: object) => (o as { status?: { phase?: string } }).status?.phase;
const getIfPresent = (p: string) => running.client.get(p).catch((err: unknown) => (isNotFound(err) ? undefined : Promise.reject(err)));
const certificatePath = (name: string) => `/apis/cert-manager.io/v1/namespaces/${ns.name}/certificates/${name}`;
const secretPath = (name: string) => `/api/v1/namespaces/${ns.name}/secrets/${name}`;
const crlText = async () => {
  // The CRL the operator publishes (at /v1/crl): every replica signs it from the ledger.
  const file = path.join(dir, `crl-${Date.now()}-${Math.random()}.pem`);
  writeFileSync(file, running.operator.authority.ledger.crlPem);
  return (await run('openssl', ['crl', '-in', file, '-noout', '-text'])).output;
};
/** The CRL's entry for a serial (its lines up to the next entry), or undefined. */
const crlEntry = (text: string, serial: string) => {
  const at = text.indexOf(`Serial Number: ${serial.toUpperCase()}`);
  if (at < 0) return undefined;
  const next = text.indexOf('Serial Number:', at + 1);
  return text.slice(at, next < 0 ? undefined : next);
};
const issuedSecretIsEmpty = (s: KubeObject | undefined) => !s || Object.values((s.data as Record<string, string> | undefined) ?? {}).every((v) => !v);
const activeFromCertManager = (name: string) => k().waitFor(name, `${name} Active from cert-manager`, (o) => ready(o)?.status === 'True' && !!certificateOf(o), 60_000);

describe('cert-manager issuer mode at the edges', () => {
  it('an end date moved into the last hour deletes the Certificate and drops the longer certificate; at the end date its Secret is wiped', async () => {
    const end = Date.now() + 3 * 3_600_000;
    await k().createServiceUser('ends', { ...base, endDate: new Date(end).toISOString(), credentials: { clientCertificate: { issuerRef } } });
    const su = await activeFromCertManager('ends');
    const first = certificateOf(su)!;
    expect(Date.parse(first.notAfter)).toBeLessThanOrEqual(end);
    const data = decodeSecret((await k().secret('ends-credentials'))!);
    const file = path.join(dir, 'ends.crt');
    writeFileSync(file, data['tls.crt']!);
    expect(first.sha256).toBe((await run('openssl', ['x509', '-in', file, '-noout', '-fingerprint', '-sha256'])).output.split('=')[1]!.trim().replaceAll(':', '').toLowerCase());
    // The Secret cert-manager writes was created by the operator, and is the ServiceUser's.
    const issued = (await getIfPresent(secretPath('ends-client-tls')))!;
    expect(issued.metadata.ownerReferences?.map((r) => r.uid)).toContain(su.metadata.uid);

    const newEnd = new Date(Date.now() + 8000).toISOString();
    await k().patchServiceUser('ends', { endDate: newEnd });
    // Less than an hour left: nothing more is asked of cert-manager, and what it issued ends too late to be kept.
    await eventually('the Certificate deleted', async () => ((await getIfPresent(certificatePath('ends-client'))) ? undefined : true), 20_000);
    const dropped = await k().waitFor('ends', 'no certificate past the new end date', (o) => !certificateOf(o) || Date.parse(certificateOf(o)!.notAfter) <= Date.parse(newEnd));
    expect(certificateOf(dropped)).toBeUndefined();
    expect(decodeSecret((await k().secret('ends-credentials'))!)['tls.crt']).toBeUndefined();
    await k().waitFor('ends', 'Expired', (o) => phaseOf(o) === 'Expired', 30_000);
    await eventually('cert-manager\'s Secret wiped', async () => (issuedSecretIsEmpty(await getIfPresent(secretPath('ends-client-tls'))) ? true : undefined));
    expect(await getIfPresent(certificatePath('ends-client'))).toBeUndefined();
    // Its serial is the issuer's to revoke: the built-in CRL does not list it.
    expect(crlEntry(await crlText(), first.serialNumber)).toBeUndefined();
  });

  it('less than an hour before the end date nothing is requested: cert-manager cannot issue shorter, and nothing goes past the end date', async () => {
    await k().createServiceUser('brief', { ...base, endDate: new Date(Date.now() + 30 * 60_000).toISOString(), credentials: { clientCertificate: { issuerRef } } });
    const su = await k().waitFor('brief', 'EndDateTooNear', (o) => ready(o)?.reason === 'EndDateTooNear');
    expect(ready(su)!.message).toContain('extend spec.endDate, or use the built-in CA');
    expect(await getIfPresent(certificatePath('brief-client'))).toBeUndefined();
  });

  it('switching back to the built-in CA deletes the Certificate and wipes the Secret cert-manager wrote', async () => {
    await k().createServiceUser('back', { ...base, credentials: { clientCertificate: { issuerRef } } });
    const managed = certificateOf(await activeFromCertManager('back'))!;
    await k().patchServiceUser('back', { credentials: { clientCertificate: { issuerRef: null } } });
    const builtIn = running.operator.authority.ca.certificate.subject;
    await k().waitFor('back', 'a built-in certificate', (o) => certificateOf(o)?.issuer === builtIn);
    await eventually('the Certificate deleted', async () => ((await getIfPresent(certificatePath('back-client'))) ? undefined : true));
    await eventually('cert-manager\'s Secret wiped', async () => (issuedSecretIsEmpty(await getIfPresent(secretPath('back-client-tls'))) ? true : undefined));
    expect(crlEntry(await crlText(), managed.serialNumber)).toBeUndefined();
  });

  it('switching from the built-in CA to cert-manager revokes the built-in certificate as superseded, its hold settled', async () => {
    await k().createServiceUser('switch', { ...base, disabled: true });
    const builtIn = running.operator.authority.ca.certificate.subject;
    const held = certificateOf(await k().waitFor('switch', 'a built-in certificate', (o) => certificateOf(o)?.issuer === builtIn))!;
    await eventually('the hold', async () => (crlEntry(await crlText(), held.serialNumber)?.includes('Certificate Hold') ? true : undefined));
    await k().patchServiceUser('switch', { credentials: { clientCertificate: { issuerRef } } });
    await k().waitFor('switch', 'a certificate from cert-manager', (o) => !!certificateOf(o) && certificateOf(o)!.issuer !== builtIn, 60_000);
    const entry = crlEntry(await crlText(), held.serialNumber);
    expect(entry).toContain('Superseded');
    expect(entry).not.toContain('Certificate Hold');
  });

  it('a <name>-client-tls Secret the operator did not create is never overwritten; the condition names its owner', async () => {
    const theirs = { 'tls.crt': Buffer.from('theirs').toString('base64'), 'tls.key': Buffer.from('their key').toString('base64') };
    await running.client.request('POST', `/api/v1/namespaces/${ns.name}/secrets?fieldManager=kubectl-create`, { apiVersion: 'v1', kind: 'Secret', type: 'kubernetes.io/tls', metadata: { name: 'taken-client-tls' }, data: theirs });
    await k().createServiceUser('taken', { ...base, credentials: { clientCertificate: { issuerRef } } });
    const su = await k().waitFor('taken', 'CertificateSecretNotOwned', (o) => ready(o)?.reason === 'CertificateSecretNotOwned');
    expect(ready(su)!.message).toContain('Secret taken-client-tls exists and belongs to field manager "kubectl-create"');
    expect(await getIfPresent(certificatePath('taken-client'))).toBeUndefined();
    await running.client.request('DELETE', `/apis/serviceusers.dev/v1alpha1/namespaces/${ns.name}/serviceusers/taken`);
    await eventually('the ServiceUser gone', async () => ((await k().serviceUser('taken').catch(() => undefined)) ? undefined : true));
    const after = (await getIfPresent(secretPath('taken-client-tls')))!;
    expect(after.data).toEqual(theirs);
    expect(after.metadata.ownerReferences ?? []).toEqual([]);
  });

  it('a <name>-client Certificate the operator did not create is neither applied over nor deleted; the condition names its owner', async () => {
    const spec = { secretName: 'foreign-own-tls', commonName: 'someone else', issuerRef };
    await running.client.request('POST', `/apis/cert-manager.io/v1/namespaces/${ns.name}/certificates?fieldManager=someone`, { apiVersion: 'cert-manager.io/v1', kind: 'Certificate', metadata: { name: 'foreign-client' }, spec });
    await k().createServiceUser('foreign', { ...base, credentials: { clientCertificate: { issuerRef } } });
    const su = await k().waitFor('foreign', 'CertificateNotOwned', (o) => ready(o)?.reason === 'CertificateNotOwned');
    expect(ready(su)!.message).toContain('cert-manager Certificate foreign-client exists and belongs to field manager "someone"');
    await k().patchServiceUser('foreign', { credentials: { clientCertificate: { issuerRef: null } } });
    await k().waitFor('foreign', 'Active from the built-in CA', (o) => phaseOf(o) === 'Active');
    await running.client.request('DELETE', `/apis/serviceusers.dev/v1alpha1/namespaces/${ns.name}/serviceusers/foreign`);
    await eventually('the ServiceUser gone', async () => ((await k().serviceUser('foreign').catch(() => undefined)) ? undefined : true));
    const after = (await getIfPresent(certificatePath('foreign-client')))!;
    expect(after.spec).toMatchObject(spec);
  });

  it('a field of its own Certificate that another manager changed is not forced back; the condition names that manager', async () => {
    await k().createServiceUser('edited', { ...base, credentials: { clientCertificate: { issuerRef } } });
    await activeFromCertManager('edited');
    await running.client.mergePatch(`${certificatePath('edited-client')}?fieldManager=kubectl-edit`, { spec: { duration: '2h' } });
    const su = await k().waitFor('edited', 'CertificateNotOwned', (o) => ready(o)?.reason === 'CertificateNotOwned', 60_000);
    expect(ready(su)!.message).toContain('has fields set by field manager "kubectl-edit"');
    expect(((await getIfPresent(certificatePath('edited-client')))!.spec as { duration: string }).duration).toBe('2h');
  });

  it('deletion wipes the Secret cert-manager wrote and puts no cert-manager serial on the built-in CRL', async () => {
    await k().createServiceUser('gone', { ...base, credentials: { clientCertificate: { issuerRef } } });
    const managed = certificateOf(await activeFromCertManager('gone'))!;
    expect(issuedSecretIsEmpty(await getIfPresent(secretPath('gone-client-tls')))).toBe(false);
    await running.client.request('DELETE', `/apis/serviceusers.dev/v1alpha1/namespaces/${ns.name}/serviceusers/gone`);
    await eventually('the ServiceUser gone', async () => ((await k().serviceUser('gone').catch(() => undefined)) ? undefined : true));
    await eventually('cert-manager\'s Secret wiped or gone', async () => (issuedSecretIsEmpty(await getIfPresent(secretPath('gone-client-tls'))) ? true : undefined), 10_000);
    expect(crlEntry(await crlText(), managed.serialNumber)).toBeUndefined();
  });
});

/** A tenant: kubectl impersonating a user with the cluster's `edit` role in the test namespace (they may write its Secrets). */
const tenant = ['--as', 'mallory'];
const kubectl = (args: string[], input = '') => {
  const r = spawnSync('kubectl', ['--kubeconfig', inject('kubeconfig'), ...args], { encoding: 'utf8', input });
  return { ok: r.status === 0, out: `${r.stdout}${r.stderr}` };
};
/** The serial of the verification service's own serving certificate, as any TLS client sees it. */
const servingSerial = () =>
  new Promise<string>((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port: running.operator.verificationPort()!, rejectUnauthorized: false }, () => {
      resolve(socket.getPeerCertificate().serialNumber.toLowerCase());
      socket.end();
    });
    socket.on('error', reject);
  });

describe('attack: a forged certificate in the Secret cert-manager fills (issue 22, item 1)', () => {
  it('a tenant cannot get another user\'s or the serving certificate\'s serial onto the built-in CRL', async () => {
    await running.client.request('POST', `/apis/rbac.authorization.k8s.io/v1/namespaces/${ns.name}/rolebindings`, {
      apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'RoleBinding', metadata: { name: 'mallory-edit' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'edit' },
      subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: 'mallory' }],
    });
    // The victims: another tenant's user of the built-in CA, and the verification service.
    await api(running.client, victims.name).createServiceUser('victim', { ...base });
    const victim = certificateOf(await api(running.client, victims.name).waitFor('victim', 'victim Active', (o) => phaseOf(o) === 'Active' && !!certificateOf(o), 60_000))!;
    const serving = await servingSerial();
    const caIssuer = victim.issuer;

    // The attacker's ServiceUsers name an issuer that does not exist: the operator still makes
    // their <name>-client-tls Secret, which the tenant may write.
    const absent = { name: 'no-such-issuer', kind: 'ClusterIssuer', group: 'cert-manager.io' };
    const forgers = [['forger-a', victim.serialNumber], ['forger-b', serving]] as const;
    for (const [name, serialNumber] of forgers) {
      await k().createServiceUser(name, { ...base, credentials: { clientCertificate: { issuerRef: absent } } });
      await eventually(`${name}-client-tls created`, async () => getIfPresent(secretPath(`${name}-client-tls`)), 30_000);
      const forged = await certificateClaiming({ issuer: caIssuer, serialNumber, commonName: `serviceuser:${ns.name}:${name}` });
      const patch = JSON.stringify({ data: { 'tls.crt': Buffer.from(forged.certPem).toString('base64'), 'tls.key': Buffer.from(forged.keyPem).toString('base64') } });
      const written = kubectl(['patch', 'secret', `${name}-client-tls`, '-n', ns.name, '--type=merge', '-p', patch, ...tenant]);
      expect(written.out).toContain('patched');
    }
    // Refused, and said why; never recorded (so never "superseded" at the next pass).
    for (const [name] of forgers) {
      const su = await k().waitFor(name, `${name} refuses the forged certificate`, (o) => ready(o)?.reason === 'CertificateNotIssuedForUser', 60_000);
      expect(ready(su)!.message).toContain(`is not one cert-manager issued for Certificate ${name}-client from ClusterIssuer no-such-issuer`);
      expect(certificateOf(su)).toBeUndefined();
      // More passes (a spec change) and the deletion: what else would revoke it.
      await k().patchServiceUser(name, { friendlyName: `${name} again` });
      await k().waitFor(name, `${name} passes again`, (o) => (o.status as { observedGeneration?: number }).observedGeneration === o.metadata.generation && ready(o)?.reason === 'CertificateNotIssuedForUser', 60_000);
      await running.client.request('DELETE', `/apis/serviceusers.dev/v1alpha1/namespaces/${ns.name}/serviceusers/${name}`);
      await eventually(`${name} gone`, async () => ((await k().serviceUser(name).catch(() => undefined)) ? undefined : true), 30_000);
    }
    const crl = await crlText();
    expect(crlEntry(crl, victim.serialNumber)).toBeUndefined();
    expect(crlEntry(crl, serving)).toBeUndefined();
    // The victim's certificate still verifies against the published CRL, as any consumer checks it.
    const data = decodeSecret((await api(running.client, victims.name).secret('victim-credentials'))!);
    const files = { cert: path.join(dir, 'victim.crt'), ca: path.join(dir, 'victim-ca.crt'), crl: path.join(dir, 'victim.crl') };
    writeFileSync(files.cert, data['tls.crt']!);
    writeFileSync(files.ca, data['ca.crt']!);
    writeFileSync(files.crl, running.operator.authority.ledger.crlPem);
    expect((await run('openssl', ['verify', '-crl_check', '-CAfile', files.ca, '-CRLfile', files.crl, files.cert])).output).toContain(': OK');
  });
});
