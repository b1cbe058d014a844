// The certificate edge of the ServiceUser reconcile: reading the certificate a Secret holds
// (and whether the CA really issued it to this user), issuing from the built-in CA, and
// adding or dropping the PKCS#12 bundle as the spec asks.
import { X509Certificate as NativeCertificate, createHash, createPrivateKey, createPublicKey } from 'node:crypto';
import type { ServiceUser } from '../api/serviceuser.ts';
import type { Ca } from '../credentials/ca.ts';
import { fingerprintOf, issueClientCertificate } from '../credentials/certificate.ts';
import { newPkcs12Password, toPkcs12 } from '../credentials/pkcs12.ts';
import { x509 } from '../credentials/x509.ts';
import type { CertificateMaterial, ObservedCertificate } from './certificate.ts';
import { friendlyNameOf, identityOf } from '../api/names.ts';

const text = (raw: Record<string, string>, key: string) => (raw[key] ? Buffer.from(raw[key], 'base64').toString('utf8') : undefined);

function keyOf(cert: x509.X509Certificate): { algorithm: string; size: number | undefined } {
  const alg = cert.publicKey.algorithm as { name: string; namedCurve?: string; modulusLength?: number };
  if (alg.name === 'ECDSA') return { algorithm: 'ECDSA', size: { 'P-256': 256, 'P-384': 384, 'P-521': 521 }[alg.namedCurve ?? ''] };
  if (alg.name === 'Ed25519') return { algorithm: 'Ed25519', size: undefined };
  return { algorithm: 'RSA', size: alg.modulusLength };
}

/** What a certificate and key pair say, whoever holds them: parsing and verifying costs more than the rest of a reconcile. */
export interface Judged {
  serialNumber: string;
  notBefore: number;
  notAfter: number;
  issuer: string;
  sha256: string;
  commonName: string | undefined;
  key: { algorithm: string; size: number | undefined };
  signedByCa: boolean;
  keyMatches: boolean;
}

// Judgements by SHA-256 of (CA, certificate, key): a converged user's every reconcile (and
// every echo of its own writes) would otherwise parse and verify the same certificate again.
// Bounded; the oldest go first. Only the judgement is kept, never the key.
const judgedMax = 20_000;
const judged = new Map<string, Judged>();

async function judge(certPem: string, keyPem: string, ca: Ca): Promise<Judged | undefined> {
  const id = createHash('sha256').update(ca.certPem).update('\0').update(certPem).update('\0').update(keyPem).digest('base64');
  const known = judged.get(id);
  if (known) return known;
  const result = judgeNatively(certPem, keyPem, ca) ?? (await judgeFully(certPem, keyPem, ca));
  if (!result) return undefined;
  if (judged.size >= judgedMax) judged.delete(judged.keys().next().value!);
  judged.set(id, result);
  return result;
}

// The CA's certificate as OpenSSL holds it, and its subject as one string every judgement
// shares (the library's getter makes a new one a call), for the native path (one CA at a time).
let nativeCa: { pem: string; cert: NativeCertificate; subject: string } | undefined;
const nativeCaOf = (ca: Ca) => (nativeCa?.pem === ca.certPem ? nativeCa : (nativeCa = { pem: ca.certPem, cert: new NativeCertificate(ca.certPem), subject: ca.certificate.subject }));
const curveSizes: Record<string, number> = { prime256v1: 256, secp384r1: 384, secp521r1: 521 };

/**
 * A certificate the CA issued, judged by OpenSSL (Node's X509Certificate): ~0.4 ms where the
 * ASN.1 parse in JavaScript takes ~2 (an ECDSA certificate, this project's 2-core machine),
 * and a restart judges one a user. Anything else — another issuer, a key type or serial form
 * it does not expect — is left to judgeFully; on the CA's certificates both agree
 * (test/unit/certificate-judge.test.ts), except that a tls.key holding a public key is no
 * match here (it matches the certificate's key, but signs nothing).
 */
export function judgeNatively(certPem: string, keyPem: string, ca: Ca): Judged | undefined {
  let cert: NativeCertificate;
  try {
    cert = new NativeCertificate(certPem);
    const issuer = nativeCaOf(ca).cert;
    if (!cert.checkIssued(issuer) || !cert.verify(issuer.publicKey)) return undefined;
  } catch {
    return undefined;
  }
  // randomSerial's form (16 bytes, top bit clear, no leading zero): printed the same by both.
  const serialNumber = cert.serialNumber.toLowerCase();
  if (!/^[1-7][0-9a-f]*$/.test(serialNumber) || serialNumber.length % 2) return undefined;
  const type = cert.publicKey.asymmetricKeyType;
  const details = cert.publicKey.asymmetricKeyDetails ?? {};
  const key = type === 'ec' ? { algorithm: 'ECDSA', size: curveSizes[details.namedCurve ?? ''] } : type === 'rsa' ? { algorithm: 'RSA', size: details.modulusLength } : type === 'ed25519' ? { algorithm: 'Ed25519', size: undefined } : undefined;
  if (!key || (type === 'ec' && key.size === undefined)) return undefined;
  const cn = cert.subject.split('\n').find((n) => n.startsWith('CN='));
  let keyMatches: boolean;
  try {
    keyMatches = cert.checkPrivateKey(createPrivateKey(keyPem));
  } catch {
    keyMatches = false;
  }
  return {
    serialNumber,
    notBefore: cert.validFromDate.getTime(),
    notAfter: cert.validToDate.getTime(),
    issuer: nativeCaOf(ca).subject,
    sha256: createHash('sha256').update(cert.raw).digest('hex'),
    // A copy, not a slice: a slice keeps the whole subject alive as long as the judgement.
    commonName: cn === undefined ? undefined : Buffer.from(cn.slice(3)).toString(),
    key,
    signedByCa: true,
    keyMatches,
  };
}

/** The same judgement by the full parse: any certificate, whoever issued it. */
export async function judgeFully(certPem: string, keyPem: string, ca: Ca): Promise<Judged | undefined> {
  let cert: x509.X509Certificate;
  try {
    cert = new x509.X509Certificate(certPem);
  } catch {
    return undefined;
  }
  let keyMatches: boolean;
  try {
    const spki = createPublicKey(keyPem).export({ type: 'spki', format: 'der' });
    keyMatches = Buffer.from(cert.publicKey.rawData).equals(spki);
  } catch {
    keyMatches = false;
  }
  return {
    serialNumber: cert.serialNumber.toLowerCase(),
    notBefore: cert.notBefore.getTime(),
    notAfter: cert.notAfter.getTime(),
    issuer: cert.issuer,
    sha256: fingerprintOf(cert),
    commonName: cert.subjectName.getField('CN')[0],
    key: keyOf(cert),
    signedByCa: cert.issuer === ca.certificate.subject && (await cert.verify({ publicKey: ca.certificate.publicKey, signatureOnly: true }).catch(() => false)),
    keyMatches,
  };
}

/** The certificate in a Secret's data (base64 as stored), judged against the CA and the spec. */
export async function observeCertificate(raw: Record<string, string>, ca: Ca, su: ServiceUser): Promise<ObservedCertificate | undefined> {
  const certPem = text(raw, 'tls.crt');
  const keyPem = text(raw, 'tls.key');
  if (!certPem || !keyPem) return undefined;
  const cert = await judge(certPem, keyPem, ca);
  if (!cert) return undefined;
  const spec = su.spec.credentials.clientCertificate;
  const wantSize = spec.privateKey.size ?? { ECDSA: 256, RSA: 2048, Ed25519: undefined }[spec.privateKey.algorithm];
  const p12 = raw['client.p12'] ? Buffer.from(raw['client.p12'], 'base64') : undefined;
  const p12Password = text(raw, 'client.p12.password') ?? text(raw, 'SM_CLIENT_CERT_PASSWORD');
  return {
    material: { certPem, keyPem, caPem: ca.certPem, ...(p12 && p12Password ? { p12, p12Password } : {}) },
    serialNumber: cert.serialNumber,
    notBefore: cert.notBefore,
    notAfter: cert.notAfter,
    issuer: cert.issuer,
    sha256: cert.sha256,
    trusted: cert.signedByCa && cert.commonName === identityOf(su) && cert.keyMatches,
    matchesSpec: !spec.issuerRef && cert.key.algorithm === spec.privateKey.algorithm && cert.key.size === wantSize,
  };
}

/**
 * The serial of the certificate in a Secret's data, if the CA signed it for `identity` (a
 * certificate of someone else's, copied in, is not this user's to revoke).
 */
export async function builtInCertificateIn(raw: Record<string, string>, ca: Ca, identity: string): Promise<{ serialNumber: string; notAfter: string } | undefined> {
  const certPem = text(raw, 'tls.crt');
  if (!certPem) return undefined;
  try {
    const cert = new x509.X509Certificate(certPem);
    if (cert.issuer !== ca.certificate.subject || cert.subjectName.getField('CN')[0] !== identity || !(await cert.verify({ publicKey: ca.certificate.publicKey, signatureOnly: true }))) return undefined;
    return { serialNumber: cert.serialNumber.toLowerCase(), notAfter: cert.notAfter.toISOString() };
  } catch {
    return undefined;
  }
}

export async function issueFromCa(ca: Ca, su: ServiceUser, window: { notBefore: number; notAfter: number }) {
  const spec = su.spec.credentials.clientCertificate;
  const issued = await issueClientCertificate(ca, {
    identity: identityOf(su),
    friendlyName: friendlyNameOf(su),
    namespace: su.metadata.namespace!,
    algorithm: spec.privateKey.algorithm,
    ...(spec.privateKey.size ? { size: spec.privateKey.size } : {}),
    notBefore: new Date(window.notBefore),
    notAfter: new Date(window.notAfter),
  });
  return {
    material: { certPem: issued.certPem, keyPem: issued.keyPem, caPem: ca.certPem } as CertificateMaterial,
    serialNumber: issued.serialNumber,
    notBefore: issued.notBefore.getTime(),
    notAfter: issued.notAfter.getTime(),
    issuer: ca.certificate.subject,
    sha256: issued.sha256,
  };
}

/** Adds the PKCS#12 bundle (new password) when the spec wants one and it is missing; drops it otherwise. */
export async function withPkcs12(material: CertificateMaterial, su: ServiceUser): Promise<CertificateMaterial> {
  if (!su.spec.credentials.clientCertificate.pkcs12) {
    const { p12: _p12, p12Password: _pw, ...rest } = material;
    return rest;
  }
  if (material.p12 && material.p12Password) return material;
  const p12Password = newPkcs12Password();
  const p12 = await toPkcs12({ certPem: material.certPem, keyPem: material.keyPem, caPem: material.caPem, password: p12Password, friendlyName: su.metadata.name });
  return { ...material, p12, p12Password };
}
