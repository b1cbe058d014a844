// Client certificates are DER built by hand (src/credentials/tbs.ts) and signed with
// node:crypto. They must be the certificates @peculiar/x509's generator made before, byte for
// byte but for the signature: the same TBSCertificate for the same key, serial and dates, from
// the operator's own CA and from CAs OpenSSL made (multi-valued RDNs, PrintableString, RSA and
// Ed25519 keys). And they must verify: openssl for client auth, node:crypto and @peculiar/x509.

import { createPublicKey, X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCa, loadCa, type Ca, type CaMaterial } from '../../src/credentials/ca.ts';
import { issueClientCertificate, type ClientCertificateRequest } from '../../src/credentials/certificate.ts';
import { child, readElement } from '../../src/credentials/der.ts';
import { signingParams, subtle, x509 } from '../../src/credentials/x509.ts';
import { run } from '../kube.ts';
import { opensslCa, printable } from '../openssl.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'tbs-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, content: string) => {
  const p = path.join(dir, name);
  writeFileSync(p, content);
  return p;
};

/** The certificate issueClientCertificate made with @peculiar/x509 before tbs.ts, as it called the generator. */
async function peculiarCertificate(ca: Ca, r: ClientCertificateRequest, serialNumber: string, spki: Buffer): Promise<Buffer> {
  const escape = (v: string) => v.replace(/([,+"\\<>;=#])/g, '\\$1');
  const params = r.algorithm === 'ECDSA' ? { name: 'ECDSA', namedCurve: `P-${r.size ?? 256}` } : r.algorithm === 'Ed25519' ? { name: 'Ed25519' } : { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
  const publicKey = await subtle.importKey('spki', new Uint8Array(spki), params, true, ['verify']);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber,
    subject: `CN=${escape(r.identity)}, O=serviceusers, O=${escape(`serviceusers:${r.namespace}`)}, OU=${escape(r.friendlyName)}`,
    issuer: ca.certificate.subjectName,
    notBefore: r.notBefore,
    notAfter: r.notAfter,
    publicKey,
    signingKey: ca.key,
    signingAlgorithm: signingParams(ca.key),
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | (r.algorithm === 'RSA' ? x509.KeyUsageFlags.keyEncipherment : 0), true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: `urn:${r.identity}` }]),
      await x509.AuthorityKeyIdentifierExtension.create(ca.certificate),
      await x509.SubjectKeyIdentifierExtension.create(publicKey),
    ],
  });
  return Buffer.from(cert.rawData);
}

const derOf = (pem: string) => Buffer.from(new X509Certificate(pem).raw);
/** The certificate's TBSCertificate and signatureAlgorithm, hex for a readable diff. */
const signedParts = (der: Buffer) => {
  const cert = readElement(der);
  return { tbs: child(cert, 0, 0x30, 'tbs').der.toString('hex'), signatureAlgorithm: child(cert, 1, 0x30, 'algorithm').der.toString('hex') };
};

const cas: [string, () => Promise<CaMaterial>][] = [
  ['createCa()', () => createCa()],
  ['OpenSSL, EC P-256, a multi-valued RDN', () => opensslCa(dir, 'multi', ['-multivalue-rdn', '-subj', '/C=DE/O=Example+OU=Multi/CN=Root'])],
  ['OpenSSL, EC P-384, PrintableString', () => opensslCa(dir, 'printable', ['-subj', '/C=DE/O=Example Platform/CN=Platform Root CA', '-config', printable], ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-384'])],
  ['OpenSSL, RSA 2048', () => opensslCa(dir, 'rsa', ['-subj', '/O=Example Platform/CN=RSA Root'], ['-newkey', 'rsa:2048'])],
  ['OpenSSL, Ed25519', () => opensslCa(dir, 'ed25519', ['-subj', '/O=Example Platform/CN=Ed25519 Root'], ['-newkey', 'ed25519'])],
];

// Friendly names: PrintableString, one that would be extra attributes if it were a DN string,
// and two that must be UTF8String.
const leaves = [
  ['ECDSA', 256, 'release-signer'],
  ['ECDSA', 384, 'a,b+c="d"'],
  ['RSA', 2048, 'release_signer'],
  ['Ed25519', undefined, 'Zoë O\'Brien'],
] as const;

describe.each(cas)('client certificates from a CA made by %s', (slug, make) => {
  let ca: Ca;
  let caFile: string;
  beforeAll(async () => {
    ca = await loadCa(await make());
    caFile = file(`${slug.replace(/\W+/g, '-')}.crt`, ca.certPem);
  }, 60_000);

  it.each(leaves)('%s %s (friendly name %j): the TBSCertificate @peculiar/x509 made, and a signature openssl, node:crypto and @peculiar/x509 verify', { timeout: 60_000 }, async (algorithm, size, friendlyName) => {
    // Milliseconds in both dates (the certificate carries seconds); notAfter past 2049 (GeneralizedTime).
    const request: ClientCertificateRequest = {
      identity: 'serviceuser:ci:release-signer', friendlyName, namespace: 'ci', algorithm, ...(size ? { size } : {}),
      notBefore: new Date(Math.floor(Date.now() / 1000) * 1000 - 60_000 + 123), notAfter: new Date(Date.UTC(2051, 0, 2, 3, 4, 5, 678)),
    };
    const leaf = await issueClientCertificate(ca, request);
    const der = derOf(leaf.certPem);
    const spki = createPublicKey(leaf.keyPem).export({ type: 'spki', format: 'der' });
    expect(leaf.keyPem).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);

    expect(signedParts(der)).toEqual(signedParts(await peculiarCertificate(ca, request, leaf.serialNumber, spki)));

    expect(leaf.notBefore.getTime()).toBe(request.notBefore.getTime() - 123);
    expect(leaf.notAfter.getTime()).toBe(request.notAfter.getTime() - 678);
    const native = new X509Certificate(leaf.certPem);
    expect(native.verify(createPublicKey(ca.certPem))).toBe(true);
    expect(native.checkIssued(new X509Certificate(ca.certPem))).toBe(true);
    expect(native.serialNumber.toLowerCase()).toBe(leaf.serialNumber);
    expect(native.fingerprint256.replaceAll(':', '').toLowerCase()).toBe(leaf.sha256);
    expect(native.publicKey.export({ type: 'spki', format: 'der' })).toEqual(spki);
    const parsed = new x509.X509Certificate(leaf.certPem);
    expect(await parsed.verify({ publicKey: ca.certificate.publicKey, signatureOnly: true })).toBe(true);
    expect([parsed.notBefore, parsed.notAfter]).toEqual([leaf.notBefore, leaf.notAfter]);
    expect(parsed.subjectName.toJSON()).toEqual([{ CN: ['serviceuser:ci:release-signer'] }, { O: ['serviceusers'] }, { O: ['serviceusers:ci'] }, { OU: [friendlyName] }]);
    expect(Buffer.from(parsed.issuerName.toArrayBuffer())).toEqual(Buffer.from(ca.certificate.subjectName.toArrayBuffer()));
    const verified = await run('openssl', ['verify', '-CAfile', caFile, '-purpose', 'sslclient', file(`${leaf.serialNumber}.crt`, leaf.certPem)]);
    expect(verified.ok, verified.output).toBe(true);
  });
});
