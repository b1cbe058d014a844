// Client authentication certificates from the built-in CA. The subject carries the identity
// (CN=serviceuser:<ns>:<name>, the username a kube-apiserver reports for it) and the
// friendly name; the identity is also a URI SAN for consumers that match on SANs.
import { createHash } from 'node:crypto';
import type { Ca } from './ca.ts';
import { generateKeys, privateKeyPem, randomSerial, signingParams, x509, type KeyAlgorithm } from './x509.ts';

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

/** Attribute values are escaped per RFC 4514 so a friendly name cannot inject attributes. */
const escape = (v: string) => v.replace(/([,+"\\<>;=#])/g, '\\$1');

export async function issueClientCertificate(ca: Ca, request: ClientCertificateRequest): Promise<IssuedCertificate> {
  const keys = await generateKeys(request.algorithm, request.size);
  const serialNumber = randomSerial();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber,
    subject: `CN=${escape(request.identity)}, O=serviceusers, O=${escape(`serviceusers:${request.namespace}`)}, OU=${escape(request.friendlyName)}`,
    issuer: ca.certificate.subjectName,
    notBefore: request.notBefore,
    notAfter: request.notAfter,
    publicKey: keys.publicKey,
    signingKey: ca.key,
    signingAlgorithm: signingParams(ca.key),
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.digitalSignature | (request.algorithm === 'RSA' ? x509.KeyUsageFlags.keyEncipherment : 0),
        true,
      ),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: `urn:${request.identity}` }]),
      await x509.AuthorityKeyIdentifierExtension.create(ca.certificate),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: cert.toString('pem'), keyPem: await privateKeyPem(keys.privateKey), serialNumber, notBefore: cert.notBefore, notAfter: cert.notAfter, sha256: fingerprintOf(cert) };
}

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
