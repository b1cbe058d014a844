// The certificate revocation list of the built-in CA. Revoked certificates stay listed until
// they expire; certificates on hold (a disabled ServiceUser) are listed with reason
// certificateHold and dropped from the next CRL when released.
//
// The CRL is DER-encoded here rather than by @peculiar/x509: its generator takes ~23 s for
// 10,000 entries (and grows faster than linearly), while a ledger of 100,000 entries is
// re-signed on every batch of revocations. Each entry's DER is built once and remembered
// with the entry, so a re-signature costs a concatenation, a hash and one signature.
import type { Ca } from './ca.ts';
import { integerFromHex, oid, sequence, time, tlv, tlvOf } from './der.ts';
import { signatureAlgorithmDer, signingParams, subtle, x509 } from './x509.ts';

export type RevocationReason = 'superseded' | 'cessationOfOperation' | 'certificateHold' | 'keyCompromise' | 'unspecified';

/** RFC 5280 CRLReason codes. */
export const reasonCodes: Record<RevocationReason, number> = { unspecified: 0, keyCompromise: 1, superseded: 4, cessationOfOperation: 5, certificateHold: 6 };

export interface Revocation {
  serialNumber: string;
  revokedAt: string;
  reason: RevocationReason;
  /** When the certificate expires; after that it need not be listed. */
  notAfter: string;
  /** Whose it was, for people reading the ledger. */
  identity: string;
}

/**
 * Entries still worth listing at `now`. An expired certificate is refused anyway, but it stays
 * listed for a week past its expiry so that a revocation at the end date is visible on the CRL.
 */
export const keepAfterExpiryMs = 7 * 86_400_000;
export function liveRevocations<T extends Revocation>(entries: T[], now: number): T[] {
  return entries.filter((e) => isLive(e, now));
}
export const isLive = (e: Pick<Revocation, 'notAfter'>, now: number) => Date.parse(e.notAfter) + keepAfterExpiryMs > now;

/** A certificate serial as this CA writes it: hexadecimal, at most 20 octets (RFC 5280). */
export const serialPattern = /^[0-9a-f]{1,40}$/;

/**
 * Signs a CRL listing `entries` in the order given (`number` is its cRLNumber; thisUpdate is
 * `now`, nextUpdate `now + validity`). Returns PEM with the RFC 7468 label "X509 CRL".
 */
export async function buildCrl(ca: Ca, entries: readonly Revocation[], options: { number: number; now: Date; validity: number }): Promise<string> {
  return pem(await buildCrlDer(ca, entries, options));
}

export async function buildCrlDer(ca: Ca, entries: readonly Revocation[], options: { number: number; now: Date; validity: number }): Promise<Buffer> {
  const fixed = await caParts(ca);
  const list = entries.map(entryDer);
  const tbs = sequence(
    integerFromHex('01'), // v2
    fixed.algorithm,
    fixed.issuer,
    time(options.now),
    time(new Date(options.now.getTime() + options.validity)),
    // RFC 5280: when nothing is revoked the list is absent, not empty.
    ...(list.length ? [tlvOf(0x30, list)] : []),
    tlv(0xa0, sequence(fixed.authorityKeyIdentifier, sequence(oid('2.5.29.20'), tlv(0x04, integerFromHex(options.number.toString(16)))))),
  );
  const signature = Buffer.from(await subtle.sign(signingParams(ca.key), ca.key, new Uint8Array(tbs)));
  return sequence(tbs, fixed.algorithm, tlv(0x03, Buffer.from([0]), fixed.ecdsa ? ecdsaSignatureDer(signature) : signature));
}

/** OpenSSL only reads the RFC 7468 label "X509 CRL". */
function pem(der: Buffer): string {
  const b64 = der.toString('base64');
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += 64) lines.push(b64.slice(i, i + 64));
  return `-----BEGIN X509 CRL-----\n${lines.join('\n')}\n-----END X509 CRL-----\n`;
}

// --- what is fixed per CA ---------------------------------------------------------------

interface CaParts {
  algorithm: Buffer;
  issuer: Buffer;
  authorityKeyIdentifier: Buffer;
  ecdsa: boolean;
}
const partsOf = new WeakMap<Ca, Promise<CaParts>>();

function caParts(ca: Ca): Promise<CaParts> {
  let parts = partsOf.get(ca);
  if (!parts) {
    parts = (async () => {
      return {
        algorithm: signatureAlgorithmDer(ca.key),
        issuer: Buffer.from(ca.certificate.subjectName.toArrayBuffer()),
        authorityKeyIdentifier: Buffer.from((await x509.AuthorityKeyIdentifierExtension.create(ca.certificate)).rawData),
        ecdsa: ca.key.algorithm.name === 'ECDSA',
      };
    })();
    partsOf.set(ca, parts);
  }
  return parts;
}

// --- entries --------------------------------------------------------------------------------

// An entry's DER, remembered per entry object: a ledger keeps its entry objects while they
// are unchanged, so each is encoded once however often the CRL is re-signed.
const encoded = new WeakMap<Revocation, Buffer>();
const reasonExtensions = new Map<number, Buffer>();

function entryDer(e: Revocation): Buffer {
  let der = encoded.get(e);
  if (der) return der;
  const serial = e.serialNumber.toLowerCase();
  if (!serialPattern.test(serial)) throw new Error(`revocation of ${e.identity}: serialNumber must be hexadecimal, at most 20 octets, not ${JSON.stringify(e.serialNumber)}`);
  const at = Date.parse(e.revokedAt);
  if (!Number.isFinite(at)) throw new Error(`revocation of ${e.identity}: revokedAt must be an RFC 3339 time, not ${JSON.stringify(e.revokedAt)}`);
  const code = Object.hasOwn(reasonCodes, e.reason) ? reasonCodes[e.reason] : undefined;
  if (code === undefined) throw new Error(`revocation of ${e.identity}: reason must be one of ${Object.keys(reasonCodes).join(', ')}, not ${JSON.stringify(e.reason)}`);
  // One allocation per entry: SEQUENCE { INTEGER serial, UTCTime/GeneralizedTime, [reason] }.
  // RFC 5280 5.3.1: reason code unspecified SHOULD be absent.
  const serialDer = integerFromHex(serial);
  const timeDer = time(new Date(at));
  const ext = code ? reasonExtension(code) : undefined;
  const length = serialDer.length + timeDer.length + (ext?.length ?? 0);
  der = Buffer.allocUnsafe(2 + length);
  der[0] = 0x30;
  der[1] = length; // < 0x80: serial ≤ 23, time ≤ 17, reason 15 bytes
  serialDer.copy(der, 2);
  timeDer.copy(der, 2 + serialDer.length);
  ext?.copy(der, 2 + serialDer.length + timeDer.length);
  encoded.set(e, der);
  return der;
}

function reasonExtension(code: number): Buffer {
  let ext = reasonExtensions.get(code);
  if (!ext) {
    ext = sequence(sequence(oid('2.5.29.21'), tlv(0x04, tlv(0x0a, Buffer.from([code])))));
    reasonExtensions.set(code, ext);
  }
  return ext;
}

// --- DER ---------------------------------------------------------------------------------------

/** WebCrypto's ECDSA signature (r ‖ s, fixed width) as the DER SEQUENCE X.509 carries. */
function ecdsaSignatureDer(raw: Buffer): Buffer {
  const half = raw.length / 2;
  return sequence(integerFromHex(raw.subarray(0, half).toString('hex')), integerFromHex(raw.subarray(half).toString('hex')));
}
