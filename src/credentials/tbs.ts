// The TBSCertificate (RFC 5280 4.1) of a client certificate, DER-encoded by hand: what
// certificate.ts signs with node:crypto. @peculiar/x509's generator built the same bytes
// through asn1js object trees, then serialized, signed and parsed its own output back, and was
// the operator's largest CPU cost during a rollout; here a certificate is a few concatenations.
//
// Invariants (test/unit/tbs.test.ts holds them against @peculiar/x509's output):
// - the bytes are exactly those @peculiar/x509's X509CertificateGenerator produced for the
//   same key, serial and dates, so consumers see no change;
// - the issuer is the CA certificate's subject DER, copied verbatim: Go matches an issuer to
//   its CA byte for byte (string types, multi-valued RDNs), so it is never re-encoded;
// - subject values are the literal strings: there is no DN string in between to escape, so a
//   friendly name cannot become extra attributes.
import { createHash } from 'node:crypto';
import type { Ca } from './ca.ts';
import { child, explicit, integerFromHex, octets, oid, readElement, sequence, setOf, time, tlv } from './der.ts';
import { signatureAlgorithmDer } from './x509.ts';

/** What every certificate a CA issues carries of the CA, computed once per CA. */
export interface IssuerParts {
  /** The CA certificate's subject, verbatim. */
  name: Buffer;
  /** SHA-1 of the CA's subjectPublicKey bits (RFC 5280 4.2.1.2 method 1), for the authorityKeyIdentifier. */
  keyIdentifier: Buffer;
  /** The AlgorithmIdentifier the CA's key signs with. */
  signatureAlgorithm: Buffer;
}

export interface ClientTbsRequest {
  issuer: IssuerParts;
  /** Hexadecimal, positive (randomSerial()). */
  serialNumber: string;
  notBefore: Date;
  notAfter: Date;
  identity: string;
  namespace: string;
  friendlyName: string;
  /** The new key's SubjectPublicKeyInfo, DER. */
  spki: Buffer;
  /** RSA keys may also encipher (TLS 1.2 RSA key exchange); other keys only sign. */
  keyEncipherment: boolean;
}

const partsOf = new WeakMap<Ca, IssuerParts>();

export function issuerParts(ca: Ca): IssuerParts {
  let parts = partsOf.get(ca);
  if (!parts) {
    const { subject, spki } = caFields(Buffer.from(ca.certificate.rawData));
    // The key identifier is derived from the CA's key, not read from its subjectKeyIdentifier
    // extension: that is what @peculiar/x509 did, and for the CAs people make (createCa,
    // OpenSSL, cert-manager) the two are the same SHA-1.
    parts = { name: subject.der, keyIdentifier: keyIdentifier(spki.der), signatureAlgorithm: signatureAlgorithmDer(ca.key) };
    partsOf.set(ca, parts);
  }
  return parts;
}

/** The subject and subjectPublicKeyInfo elements of a certificate's DER. */
function caFields(der: Buffer) {
  const tbs = child(readElement(der), 0, 0x30, 'CA certificate');
  // version [0] is absent from a v1 certificate; the fields after it move up by one.
  const first = readElement(tbs.content).tag === 0xa0 ? 1 : 0;
  return { subject: child(tbs, first + 4, 0x30, 'CA subject'), spki: child(tbs, first + 5, 0x30, 'CA subjectPublicKeyInfo') };
}

export function clientTbs(r: ClientTbsRequest): Buffer {
  return sequence(
    explicit(0, integerFromHex('02')), // v3
    integerFromHex(r.serialNumber),
    r.issuer.signatureAlgorithm,
    r.issuer.name,
    sequence(time(r.notBefore), time(r.notAfter)),
    clientSubject(r),
    r.spki,
    explicit(3, sequence(...clientExtensions(r))),
  );
}

/** CN=<identity>, O=serviceusers, O=serviceusers:<namespace>, OU=<friendly name>: one attribute per RDN, in this order. */
function clientSubject(r: ClientTbsRequest): Buffer {
  const rdn = (type: string, value: string) => setOf(sequence(oid(type), directoryString(value)));
  return sequence(rdn('2.5.4.3', r.identity), rdn('2.5.4.10', 'serviceusers'), rdn('2.5.4.10', `serviceusers:${r.namespace}`), rdn('2.5.4.11', r.friendlyName));
}

// PrintableString's alphabet (X.680 41.4). Values within it are PrintableString, others
// UTF8String: the choice @peculiar/x509 made, kept so that subjects do not change type.
const printable = /^[A-Za-z0-9 '()+,\-./:=?]*$/;
const directoryString = (v: string) => (printable.test(v) ? tlv(0x13, Buffer.from(v, 'ascii')) : tlv(0x0c, Buffer.from(v, 'utf8')));

// Extensions in the order and with the criticality the operator has always issued them.
const basicConstraints = extension('2.5.29.19', true, sequence()); // CA:FALSE, the default, is absent (DER)
const clientAuth = extension('2.5.29.37', false, sequence(oid('1.3.6.1.5.5.7.3.2')));
// keyUsage as a BIT STRING, trailing zero bits dropped: digitalSignature (bit 0) alone is
// 0x80 with 7 unused bits; with keyEncipherment (bit 2) it is 0xa0 with 5.
const signOnly = extension('2.5.29.15', true, tlv(0x03, Buffer.from([7, 0x80])));
const signAndEncipher = extension('2.5.29.15', true, tlv(0x03, Buffer.from([5, 0xa0])));

function clientExtensions(r: ClientTbsRequest): Buffer[] {
  return [
    basicConstraints,
    r.keyEncipherment ? signAndEncipher : signOnly,
    clientAuth,
    extension('2.5.29.17', false, sequence(tlv(0x86, Buffer.from(`urn:${r.identity}`, 'ascii')))), // GeneralName uniformResourceIdentifier [6] IA5String
    extension('2.5.29.35', false, sequence(tlv(0x80, r.issuer.keyIdentifier))), // authorityKeyIdentifier: keyIdentifier [0] only
    extension('2.5.29.14', false, octets(keyIdentifier(r.spki))),
  ];
}

function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return sequence(oid(id), ...(critical ? [Buffer.from([0x01, 0x01, 0xff])] : []), octets(value));
}

/** SHA-1 of a SubjectPublicKeyInfo's subjectPublicKey bits, without the unused-bits octet (RFC 5280 4.2.1.2, method 1). */
function keyIdentifier(spki: Buffer): Buffer {
  const bits = child(readElement(spki), 1, 0x03, 'subjectPublicKeyInfo').content.subarray(1);
  return createHash('sha1').update(bits).digest();
}
