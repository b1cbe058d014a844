// The certificate revocation list of the built-in CA. Revoked certificates stay listed until
// they expire; certificates on hold (a disabled ServiceUser) are listed with reason
// certificateHold and dropped from the next CRL when released.
import type { Ca } from './ca.ts';
import { signingParams, x509 } from './x509.ts';

export type RevocationReason = 'superseded' | 'cessationOfOperation' | 'certificateHold' | 'keyCompromise' | 'unspecified';

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
export function liveRevocations(entries: Revocation[], now: number): Revocation[] {
  return entries.filter((e) => Date.parse(e.notAfter) + keepAfterExpiryMs > now);
}

export async function buildCrl(ca: Ca, entries: Revocation[], options: { number: number; now: Date; validity: number }): Promise<string> {
  const crl = await x509.X509CrlGenerator.create({
    issuer: ca.certificate.subject,
    thisUpdate: options.now,
    nextUpdate: new Date(options.now.getTime() + options.validity),
    signingKey: ca.key,
    signingAlgorithm: signingParams(ca.key),
    extensions: [await x509.AuthorityKeyIdentifierExtension.create(ca.certificate), new x509.Extension('2.5.29.20', false, crlNumber(options.number))],
    entries: entries.map((e) => ({ serialNumber: e.serialNumber, revocationDate: new Date(e.revokedAt), reason: x509.X509CrlReason[e.reason] })),
  });
  // OpenSSL only reads the RFC 7468 label "X509 CRL".
  return x509.PemConverter.encode(crl.rawData, 'X509 CRL');
}

/** DER INTEGER for the cRLNumber extension. */
function crlNumber(n: number): ArrayBuffer {
  let hex = n.toString(16);
  if (hex.length % 2) hex = `0${hex}`;
  if (parseInt(hex.slice(0, 2), 16) & 0x80) hex = `00${hex}`;
  const body = Buffer.from(hex, 'hex');
  return Uint8Array.from([0x02, body.length, ...body]).buffer;
}

/** Whether `pem` is a CRL this CA signed (a CRL left by another CA must be replaced). */
export async function signedBy(pem: string, ca: Ca): Promise<boolean> {
  try {
    const crl = new x509.X509Crl(pem.replaceAll('X509 CRL', 'CRL'));
    return crl.issuer === ca.certificate.subject && (await crl.verify({ publicKey: ca.certificate.publicKey }));
  } catch {
    return false;
  }
}
