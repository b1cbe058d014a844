// The certificate and ledger part of a ServiceUser's plan: what to do about its client
// certificate (keep, issue, place from cert-manager, refuse, or wait for the CA) and what the
// revocation ledger must record around it. Pure: it decides from what observe.ts saw — the
// certificate in the Secret judged against the CA, the ledger's facts about it, status's
// sealed record — and execute.ts carries it out. Nothing is revoked, held or issued anywhere
// else.
//
// The order is the plan's, not the executor's: `before` runs before the certificate is
// placed, `after` once it is. Revocations come first, so they reach the CRL before the
// Secret loses the certificate; a hold names the certificate placed, so it comes after.
import type { CertificateStatus, ServiceUser } from '../api/serviceuser.ts';
import { builtInRecorded, decideCertificate, renewalPace, type CertificateDecision, type CertificateRevocation, type ObservedCertificate } from './certificate.ts';
import type { CertificateProblem } from './cert-manager.ts';
import { hadCertManagerCertificate } from './cert-manager.ts';
import { expiresAt, isExpired } from '../api/expiry.ts';

/** What was observed that bears on the certificate (observe.ts). */
export interface CertificateFacts {
  /** The built-in CA and its ledger: loaded (with the CA's subject), or why not. */
  authority: { ready: true; caSubject: string } | { ready: false; reason: string };
  /** The certificate in the user's own Secret, judged against the CA; `revoked` as the ledger lists it. Judged only with the CA loaded. */
  inSecret: ObservedCertificate | undefined;
  /** The user's own Secret holds a tls.crt (what a user waiting for the CA must not lose). */
  secretHoldsCertificate: boolean;
  /** status.certificate under the operator's seal; anything else is no evidence. */
  sealed: CertificateStatus | undefined;
  /** Serials the ledger lists for this user, and how many it may have before renewals slow. */
  crl: { entries: number; budget: number };
}

/** A ledger or cleanup step around the certificate, in the order given. */
export type CertificateStep =
  | { kind: 'revoke'; entries: CertificateRevocation[] }
  /** The user's only held serials: none, or the certificate placed (a disabled user's). */
  | { kind: 'setHolds'; hold: 'none' | 'placed' }
  /** Delete our cert-manager Certificate and wipe the Secret it filled. */
  | { kind: 'removeCertManager' };

export type CertificateIntent =
  /** The CA is not loaded and only it can judge what this user holds: the pass stops here. */
  | { kind: 'wait' }
  | { kind: 'none' }
  | { kind: 'refuse'; problem: { reason: 'CAUnavailable'; message: string } }
  | { kind: 'keep'; certificate: ObservedCertificate; renewalTime: number | undefined; renewalWaits?: { until: number; why?: string } }
  | { kind: 'issue'; reason: Extract<CertificateDecision, { kind: 'issue' }>['reason']; notBefore: number; notAfter: number }
  /** From cert-manager (cert-manager.ts: its own reads and writes), `recorded` as evidence. */
  | { kind: 'placeFromCertManager'; recorded: CertificateStatus | undefined };

export interface CertificatePlan {
  before: CertificateStep[];
  certificate: CertificateIntent;
  after: CertificateStep[];
}

export type { CertificateProblem };

const only = (certificate: CertificateIntent): CertificatePlan => ({ before: [], certificate, after: [] });

/** The plan for a user's certificate at `now`; `blocked`: stopped by a rule only the operator judges (desired.ts blocker). */
export function planCertificate(su: ServiceUser, facts: CertificateFacts, now: number, blocked: boolean): CertificatePlan {
  const expired = isExpired(expiresAt(su.spec.endDate), now);
  if (!facts.authority.ready) return withoutCa(su, facts, expired, facts.authority.reason, blocked);
  // A stalled user issues nothing, but its end date still revokes: planning the certificate
  // of an expired user only revokes (what status recorded, and what our own Secret holds).
  if (blocked && !expired) return only({ kind: 'none' });
  const spec = su.spec.credentials.clientCertificate;
  if (spec.enabled && spec.issuerRef && !expired) return toCertManager(facts);
  return builtIn(su, facts, now, facts.authority.caSubject);
}

/**
 * From the built-in CA to cert-manager: what the built-in CA issued to this user is
 * superseded (a revocation replaces any hold), whether status recorded it or only the Secret
 * holds it. Nothing cert-manager's issuers issued ever goes on this CRL.
 */
function toCertManager(facts: CertificateFacts): CertificatePlan {
  const { inSecret, sealed } = facts;
  const recorded = builtInRecorded(sealed, inSecret);
  const revoke: CertificateRevocation[] = [
    ...(recorded ? [{ ...recorded, reason: 'superseded' as const }] : []),
    ...(inSecret?.trusted && inSecret.serialNumber !== recorded?.serialNumber ? [{ serialNumber: inSecret.serialNumber, reason: 'superseded' as const, notAfter: new Date(inSecret.notAfter).toISOString() }] : []),
  ];
  const before: CertificateStep[] = revoke.length ? [{ kind: 'revoke', entries: revoke }, { kind: 'setHolds', hold: 'none' }] : [];
  return { before, certificate: { kind: 'placeFromCertManager', recorded: sealed }, after: [] };
}

/**
 * The built-in CA's certificate: the Secret's own when the CA issued it, it is not revoked
 * and not due, else a new one (certificate.ts decides). Back from cert-manager, certificates
 * turned off, or expired: our Certificate would go on issuing (even one still waiting for an
 * issuer that appears later) into a Secret nobody wipes — it goes first. An expired (or
 * certificate-disabled) user that still names an issuer is checked at every pass: they are
 * rare, and cert-manager may have finished a write after the last wipe.
 */
function builtIn(su: ServiceUser, facts: CertificateFacts, now: number, caSubject: string): CertificatePlan {
  const before: CertificateStep[] = [];
  if (hadCertManagerCertificate(su, caSubject) || su.spec.credentials.clientCertificate.issuerRef) before.push({ kind: 'removeCertManager' });
  // Only serials the built-in CA issued to this user go on its CRL: a cert-manager
  // certificate status still records is the issuer's, whatever issuer name it carries.
  const recorded = builtInRecorded(facts.sealed, facts.inSecret);
  const pace = renewalPace(facts.crl.entries, facts.crl.budget);
  const { decision, revoke } = decideCertificate(su, facts.inSecret, recorded, now, expiresAt(su.spec.endDate), pace);
  before.push({ kind: 'revoke', entries: revoke });
  const after: CertificateStep[] = [{ kind: 'setHolds', hold: su.spec.disabled ? 'placed' : 'none' }];
  if (decision.kind === 'none') return { before, certificate: { kind: 'none' }, after };
  if (decision.kind === 'issue') return { before, certificate: { kind: 'issue', reason: decision.reason, notBefore: decision.notBefore, notAfter: decision.notAfter }, after };
  const waits = decision.renewalWaits !== undefined ? { renewalWaits: { until: decision.renewalWaits, ...(pace.why ? { why: pace.why } : {}) } } : {};
  return { before, certificate: { kind: 'keep', certificate: decision.certificate, renewalTime: decision.renewalTime, ...waits }, after };
}

/**
 * The certificate while the built-in CA is not loaded: a cert-manager issuer does not need
 * it; a user with no certificate anywhere is issued its token and told its certificate waits;
 * one with a certificate recorded or in its Secret waits whole, since only the CA can judge
 * that certificate, and wiping or keeping it blind could destroy a working one.
 */
function withoutCa(su: ServiceUser, facts: CertificateFacts, expired: boolean, reason: string, blocked: boolean): CertificatePlan {
  const spec = su.spec.credentials.clientCertificate;
  if (spec.enabled && spec.issuerRef && !expired && !blocked) return only({ kind: 'placeFromCertManager', recorded: facts.sealed });
  if (su.status?.certificate || facts.secretHoldsCertificate) return only({ kind: 'wait' });
  if (!spec.enabled || spec.issuerRef || expired || blocked) return only({ kind: 'none' });
  return only({ kind: 'refuse', problem: { reason: 'CAUnavailable', message: `the client certificate waits for the built-in CA: ${reason}. The token is issued meanwhile` } });
}
