// Whether a ServiceUser's client certificate is kept, issued or renewed, and which serials
// go on the CRL. Pure: the reconcile observes the Secret's certificate (checking it against
// the CA) and issues what this decides.
//
// Only the operator holds the CA key, so a certificate in the Secret that chains to the CA,
// names this ServiceUser and matches its key is one the operator issued: it is kept (and
// recorded, if a crash or a lost status forgot it), and a different serial that status still
// records is revoked as superseded. Anything else in the Secret is replaced.
import { parseDuration } from '../api/duration.ts';
import type { ServiceUser } from '../api/serviceuser.ts';
import type { RevocationReason } from '../credentials/crl.ts';

export interface CertificateMaterial {
  certPem: string;
  keyPem: string;
  caPem: string;
  p12?: Buffer;
  p12Password?: string;
}

export interface ObservedCertificate {
  material: CertificateMaterial;
  serialNumber: string;
  notBefore: number;
  notAfter: number;
  issuer: string;
  /** Chains to the issuing CA, names this identity, and the key belongs to the certificate. */
  trusted: boolean;
  /** Key algorithm and size as the spec asks, and issued by the issuer the spec names. */
  matchesSpec: boolean;
}

export interface RecordedCertificate {
  serialNumber: string;
  notAfter: string;
}

export interface CertificateRevocation {
  serialNumber: string;
  reason: RevocationReason;
  notAfter: string;
}

export type CertificateDecision =
  | { kind: 'none' }
  | { kind: 'keep'; certificate: ObservedCertificate; renewalTime: number | undefined }
  | { kind: 'issue'; reason: 'Missing' | 'Renewal' | 'RenewalRequested' | 'SpecChanged' | 'Replaced'; notBefore: number; notAfter: number };

const iso = (ms: number) => new Date(ms).toISOString();

/** When to renew: renewBefore ahead of notAfter, unless the certificate already ends at the end date. */
export function renewalTimeOf(notAfter: number, renewBefore: string, endDate: number | undefined): number | undefined {
  if (endDate !== undefined && notAfter >= endDate - 1000) return undefined;
  return notAfter - (parseDuration(renewBefore) ?? 0);
}

export function decideCertificate(
  su: ServiceUser,
  observed: ObservedCertificate | undefined,
  recorded: RecordedCertificate | undefined,
  now: number,
  endDate: number | undefined,
): { decision: CertificateDecision; revoke: CertificateRevocation[] } {
  const spec = su.spec.credentials.clientCertificate;
  const revoke: CertificateRevocation[] = [];
  const revokeRecorded = (reason: RevocationReason) => {
    if (recorded && recorded.serialNumber !== observed?.serialNumber) revoke.push({ serialNumber: recorded.serialNumber, reason, notAfter: recorded.notAfter });
  };
  const revokeObserved = (reason: RevocationReason) => {
    if (observed?.trusted) revoke.push({ serialNumber: observed.serialNumber, reason, notAfter: iso(observed.notAfter) });
  };

  const expired = endDate !== undefined && now >= endDate;
  if (!spec.enabled || expired) {
    revokeRecorded('cessationOfOperation');
    revokeObserved('cessationOfOperation');
    return { decision: { kind: 'none' }, revoke };
  }

  const notAfter = Math.min(now + (parseDuration(spec.duration) ?? 0), endDate ?? Infinity);
  const issue = (reason: Extract<CertificateDecision, { kind: 'issue' }>['reason']) => ({
    decision: { kind: 'issue' as const, reason, notBefore: now - 60_000, notAfter },
    revoke,
  });

  if (observed?.trusted && observed.matchesSpec) {
    const renewalTime = renewalTimeOf(observed.notAfter, spec.renewBefore, endDate);
    revokeRecorded('superseded');
    // A new renewalRequest renews once: not when the Secret already holds another certificate
    // than status records (a crash after the renewal), nor for the first certificate.
    const requested = spec.renewalRequest !== undefined && spec.renewalRequest !== su.status?.lastRenewalRequest && recorded?.serialNumber === observed.serialNumber;
    if (requested || now >= observed.notAfter || (renewalTime !== undefined && now >= renewalTime)) {
      revokeObserved('superseded');
      return issue(requested ? 'RenewalRequested' : 'Renewal');
    }
    return { decision: { kind: 'keep', certificate: observed, renewalTime }, revoke };
  }
  revokeRecorded('superseded');
  revokeObserved('superseded');
  return issue(observed ? (observed.trusted ? 'SpecChanged' : 'Replaced') : 'Missing');
}
