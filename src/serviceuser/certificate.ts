// Whether a ServiceUser's client certificate is kept, issued or renewed, and which serials
// go on the CRL. Pure: the reconcile observes the Secret's certificate (checking it against
// the CA) and issues what this decides.
//
// Only the operator holds the CA key, so a certificate in the Secret that chains to the CA,
// names this ServiceUser and matches its key is one the operator issued: it is kept (and
// recorded, if a crash or a lost status forgot it), and a different serial that status still
// records is revoked as superseded. Anything else in the Secret is replaced — and so is a
// certificate the CA issued that the ledger already lists as revoked (a Secret restored from
// a backup): it stays revoked, and a fresh one is issued.
//
// A kept certificate must still be one this spec would issue: never past the end date (an
// end date added or moved earlier) and never longer than the duration (a duration lowered).
// A kube-apiserver reads no CRL, so the only bound that holds everywhere is notAfter.
import { parseDuration } from '../api/duration.ts';
import type { ServiceUser } from '../api/serviceuser.ts';
import type { RevocationReason } from '../credentials/crl.ts';
import { requestIntervalMs, requestWaitsUntil } from './tokens.ts';

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
  /** SHA-256 of the DER, hex. */
  sha256: string;
  /** Chains to the issuing CA, names this identity, and the key belongs to the certificate. */
  trusted: boolean;
  /** Key algorithm and size as the spec asks, and issued by the issuer the spec names. */
  matchesSpec: boolean;
  /** The revocation ledger lists it as revoked (not merely on hold). */
  revoked?: boolean;
}

export interface RecordedCertificate {
  serialNumber: string;
  notAfter: string;
}

/**
 * The recorded certificate (status.certificate, already known to carry the operator's seal)
 * when it is one the built-in CA issued to this ServiceUser: the only kind whose serial this
 * operator ever puts on its CRL. The issuer name proves nothing — anyone can make a
 * certificate that names the CA as its issuer and carries another user's serial, and a
 * cert-manager issuer's certificate was placed, not issued, here. A record from before
 * issuedBy existed counts only when the Secret holds that very certificate, signed by the CA
 * for this identity; the first reconcile then records it as BuiltInCA.
 */
export function builtInRecorded(
  recorded: { serialNumber: string; notAfter: string; issuedBy?: 'BuiltInCA' | 'CertManager' | undefined } | undefined,
  observed: Pick<ObservedCertificate, 'serialNumber' | 'trusted'> | undefined,
): RecordedCertificate | undefined {
  if (!recorded) return undefined;
  const ours = recorded.issuedBy === 'BuiltInCA' || (recorded.issuedBy === undefined && !!observed?.trusted && observed.serialNumber === recorded.serialNumber);
  return ours ? { serialNumber: recorded.serialNumber, notAfter: recorded.notAfter } : undefined;
}

export interface CertificateRevocation {
  serialNumber: string;
  reason: RevocationReason;
  notAfter: string;
}

export type CertificateDecision =
  | { kind: 'none' }
  | { kind: 'keep'; certificate: ObservedCertificate; renewalTime: number | undefined; renewalWaits?: number }
  | { kind: 'issue'; reason: 'Missing' | 'Renewal' | 'RenewalRequested' | 'SpecChanged' | 'Replaced' | 'EndDate' | 'Duration' | 'Revoked'; notBefore: number; notAfter: number };

/** Issued certificates start a minute early (clock skew); X.509 times drop the milliseconds. */
const backdateMs = 60_000;
const lastMinuteMs = 60_000;
const encodingSlackMs = 1000;

const iso = (ms: number) => new Date(ms).toISOString();

/** When to renew: renewBefore ahead of notAfter, unless the certificate already ends at the end date. */
export function renewalTimeOf(notAfter: number, renewBefore: string, endDate: number | undefined): number | undefined {
  if (endDate !== undefined && notAfter >= endDate - 1000) return undefined;
  return notAfter - (parseDuration(renewBefore) ?? 0);
}

/**
 * How often a renewalRequest is acted on: once an interval (requestIntervalMs), or once an hour
 * while the user's entries on the CRL are over their budget (reconcile.ts judges that).
 */
export interface RenewalPace {
  intervalMs: number;
  /** Why not the usual interval, for a person. */
  why?: string;
}

/** Serials one ServiceUser may have on the CRL (--crl-owner-budget) before its renewals slow down. */
export const defaultCrlOwnerBudget = 100;
const overBudgetIntervalMs = 3_600_000;

/**
 * The pace of a user's renewal requests from its entries on the CRL. Over budget they are
 * slowed, never refused: a renewal is also how a holder answers a leaked key.
 */
export function renewalPace(entries: number, budget: number): RenewalPace {
  if (entries <= budget) return { intervalMs: requestIntervalMs };
  return { intervalMs: overBudgetIntervalMs, why: `this ServiceUser has ${entries} serials on the CRL, over the budget of ${budget} a user: one renewal an hour until they expire` };
}

export function decideCertificate(
  su: ServiceUser,
  observed: ObservedCertificate | undefined,
  recorded: RecordedCertificate | undefined,
  now: number,
  endDate: number | undefined,
  pace: RenewalPace = { intervalMs: requestIntervalMs },
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
    decision: { kind: 'issue' as const, reason, notBefore: now - backdateMs, notAfter },
    revoke,
  });

  if (observed?.trusted && observed.revoked) {
    revokeRecorded('superseded');
    // In the last minute before the end date a revocation is the end date's own (its timer
    // runs on the wall clock; this reconcile's `now` may be a moment behind): a replacement
    // would hardly live, so none is issued and the end date wipes what is left.
    if (endDate !== undefined && endDate - now < lastMinuteMs) return { decision: { kind: 'none' }, revoke };
    return issue('Revoked');
  }
  if (observed?.trusted && observed.matchesSpec) {
    // Outlives what the spec now promises (an end date added or moved earlier, a duration
    // lowered): reissued within it, the old one superseded.
    const pastEnd = endDate !== undefined && observed.notAfter - endDate >= encodingSlackMs;
    const tooLong = observed.notAfter - observed.notBefore > (parseDuration(spec.duration) ?? 0) + backdateMs + encodingSlackMs;
    const renewalTime = renewalTimeOf(observed.notAfter, spec.renewBefore, endDate);
    revokeRecorded('superseded');
    // A new renewalRequest renews once: not when the Secret already holds another certificate
    // than status records (a crash after the renewal), nor for the first certificate.
    const asked = spec.renewalRequest !== undefined && spec.renewalRequest !== su.status?.lastRenewalRequest && recorded?.serialNumber === observed.serialNumber;
    const needed = pastEnd || tooLong || now >= observed.notAfter || (renewalTime !== undefined && now >= renewalTime);
    // Each renewal puts a serial on the CRL every consumer downloads: at most one requested
    // renewal an interval, measured from this certificate's issue (its notBefore, backdated
    // and cut to the second: the later bound of it). A newer request waits, and the value spec
    // holds then is the one acted on.
    const renewalWaits = asked && !needed ? requestWaitsUntil(observed.notBefore + backdateMs + encodingSlackMs, now, pace.intervalMs) : undefined;
    const requested = asked && renewalWaits === undefined;
    if (requested || needed) {
      revokeObserved('superseded');
      return issue(requested ? 'RenewalRequested' : pastEnd ? 'EndDate' : tooLong ? 'Duration' : 'Renewal');
    }
    return { decision: { kind: 'keep', certificate: observed, renewalTime, ...(renewalWaits !== undefined ? { renewalWaits } : {}) }, revoke };
  }
  revokeRecorded('superseded');
  revokeObserved('superseded');
  return issue(observed ? (observed.trusted ? 'SpecChanged' : 'Replaced') : 'Missing');
}
