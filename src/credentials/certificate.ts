// Client authentication certificates from the built-in CA. The subject carries the identity
// (CN=serviceuser:<ns>:<name>, the username a kube-apiserver reports for it) and the
// friendly name; the identity is also a URI SAN for consumers that match on SANs.
//
// Client certificates, one per ServiceUser and renewal, are the hot path: their keys are made
// with node:crypto on the threadpool, their TBSCertificate by tbs.ts and their signature by
// node:crypto. Serving certificates (a few per start) still go through @peculiar/x509.
import { createHash, generateKeyPair, KeyObject, sign } from 'node:crypto';
import { promisify } from 'node:util';
import type { Ca } from './ca.ts';
import { sequence, tlv } from './der.ts';
import { clientTbs, issuerParts } from './tbs.ts';
import { ecCurve, generateKeys, privateKeyPem, randomSerial, signingHash, signingParams, x509, type KeyAlgorithm } from './x509.ts';

export interface ClientCertificateRequest {
  identity: string;
  friendlyName: string;
  namespace: string;
  algorithm: KeyAlgorithm;
  size?: number;
  notBefore: Date;
  notAfter: Date;
}

export interface IssuedCertificate {
  certPem: string;
  keyPem: string;
  serialNumber: string;
  notBefore: Date;
  notAfter: Date;
  sha256: string;
}

/** The SHA-256 fingerprint of a certificate's DER, lowercase hex (what `openssl x509 -fingerprint -sha256` shows, without colons). */
export const fingerprintOf = (cert: x509.X509Certificate) => createHash('sha256').update(Buffer.from(cert.rawData)).digest('hex');

/** Attribute values are escaped per RFC 4514 so a name cannot inject attributes (serving certificates' DN strings). */
const escape = (v: string) => v.replace(/([,+"\\<>;=#])/g, '\\$1');

const newKeyPair = promisify(generateKeyPair);

/** A key pair made natively: generateKeyPair runs on libuv's threadpool, not the event loop. */
function clientKeys(algorithm: KeyAlgorithm, size?: number) {
  switch (algorithm) {
    case 'RSA':
      return newKeyPair('rsa', { modulusLength: size ?? 2048, publicExponent: 0x10001 });
    case 'Ed25519':
      return newKeyPair('ed25519');
    case 'ECDSA':
      return newKeyPair('ec', { namedCurve: ecCurve(size) });
  }
}

const caKeys = new WeakMap<Ca, KeyObject>();
function caKeyObject(ca: Ca): KeyObject {
  let key = caKeys.get(ca);
  if (!key) {
    key = KeyObject.from(ca.key);
    caKeys.set(ca, key);
  }
  return key;
}

/**
 * A client certificate signed by the CA. The TBSCertificate is built by tbs.ts and signed
 * with node:crypto (ECDSA signatures come out DER-encoded, as X.509 carries them).
 */
export async function issueClientCertificate(ca: Ca, request: ClientCertificateRequest): Promise<IssuedCertificate> {
  const keys = await clientKeys(request.algorithm, request.size);
  const issuer = issuerParts(ca);
  const serialNumber = randomSerial();
  // The certificate carries whole seconds; report the dates it carries.
  const notBefore = wholeSeconds(request.notBefore);
  const notAfter = wholeSeconds(request.notAfter);
  const tbs = clientTbs({
    issuer, serialNumber, notBefore, notAfter,
    identity: request.identity, namespace: request.namespace, friendlyName: request.friendlyName,
    spki: keys.publicKey.export({ type: 'spki', format: 'der' }),
    keyEncipherment: request.algorithm === 'RSA',
  });
  const signature = sign(signingHash(ca.key), tbs, caKeyObject(ca));
  const der = sequence(tbs, issuer.signatureAlgorithm, tlv(0x03, Buffer.from([0]), signature));
  return {
    certPem: x509.PemConverter.encode(new Uint8Array(der), 'CERTIFICATE'),
    keyPem: keys.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    serialNumber, notBefore, notAfter,
    sha256: createHash('sha256').update(der).digest('hex'),
  };
}

const wholeSeconds = (d: Date) => new Date(Math.floor(d.getTime() / 1000) * 1000);

/** The facts status and renewal need, read from a PEM certificate. */
export function describeCertificate(pem: string) {
  const cert = new x509.X509Certificate(pem);
  return { serialNumber: cert.serialNumber.toLowerCase(), notBefore: cert.notBefore, notAfter: cert.notAfter, issuer: cert.issuer, subject: cert.subject, commonName: cert.subjectName.getField('CN')[0], sha256: fingerprintOf(cert) };
}

/** A TLS server certificate from the CA for the verification service. */
export async function issueServingCertificate(ca: Ca, names: string[], now: Date, days = 365): Promise<{ certPem: string; keyPem: string }> {
  const keys = await generateKeys('ECDSA', 256);
  const ip = /^[0-9.]+$|:/;
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: `CN=${escape(names[0] ?? 'service-user-operator')}`,
    issuer: ca.certificate.subjectName,
    notBefore: new Date(now.getTime() - 60_000),
    notAfter: new Date(now.getTime() + days * 86_400_000),
    publicKey: keys.publicKey,
    signingKey: ca.key,
    signingAlgorithm: signingParams(ca.key),
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(names.map((n) => (ip.test(n) ? { type: 'ip' as const, value: n } : { type: 'dns' as const, value: n }))),
      await x509.AuthorityKeyIdentifierExtension.create(ca.certificate),
    ],
  });
  return { certPem: cert.toString('pem'), keyPem: await privateKeyPem(keys.privateKey) };
}
