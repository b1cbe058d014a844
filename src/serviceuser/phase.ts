// The phase and conditions of one ServiceUser, and the events their changes announce. Pure:
// computed from the spec, the end date, what the token ledger and the certificate placed, and
// the conditions status held before (an event is announced once, when its condition turns).
import type { ServiceUser, ServiceUserStatus } from '../api/serviceuser.ts';
import type { Condition, ConditionInput } from '../controller/conditions.ts';
import type { EventRecord, PlacedCertificate } from './desired.ts';
import { iso } from './tokens.ts';

export interface PhaseInput {
  su: ServiceUser;
  now: number;
  expires: number | undefined;
  warnAt: number | undefined;
  /** The token the Secret holds, if any. */
  tokenId: string | undefined;
  certificate: PlacedCertificate | undefined;
  certificateProblem: { reason: string; message: string } | undefined;
  secretName: string;
  previous: Condition[] | undefined;
  /** What this reconcile found without a valid MAC, if anything. */
  forged: string | undefined;
  /** Tokens the end date revoked in this pass (named by the Expired event). */
  expiredTokens?: string[];
}

/**
 * What the end date says, once: one Expired event naming the tokens it revoked — an expiry is
 * one event, not one per token beside it (at thousands of end dates in a minute, every
 * request counts). Tokens revoked by an end date already announced get their own event.
 * A user that never held a credential (created with an end date already past: GitOps
 * re-applies old objects, so admission lets it in) is told so, not that something was revoked.
 */
export function expiryEvents(
  expires: number,
  wasExpired: boolean,
  expiredTokens: string[],
  secretName: string | undefined,
  held: { credentials: boolean; createdAt?: string | undefined },
): EventRecord[] {
  if (wasExpired) return expiredTokens.map((id) => ({ type: 'Warning' as const, reason: 'TokenRevoked', message: `token ${id} revoked: Expired` }));
  if (!held.credentials && !expiredTokens.length) {
    const created = held.createdAt ? Date.parse(held.createdAt) : NaN;
    const when = created >= expires ? `had already passed when it was created (${iso(created)})` : 'passed before any credential was issued';
    return [{ type: 'Warning', reason: 'Expired', message: `end date ${iso(expires)} ${when}: no credentials were issued; extend spec.endDate to issue them` }];
  }
  const tokens = expiredTokens.length ? ` (token${expiredTokens.length > 1 ? 's' : ''} ${expiredTokens.join(', ')})` : '';
  return [{ type: 'Warning', reason: 'Expired', message: `end date ${iso(expires)} passed: credentials revoked${tokens}${secretName ? ` and removed from Secret ${secretName}` : ''}` }];
}

/** Whether status records a credential the end date takes away: a live token or a certificate. */
export function heldCredentials(status: ServiceUserStatus | undefined): boolean {
  return (status?.tokens ?? []).some((t) => t.state !== 'Revoked') || status?.certificate !== undefined;
}

export interface PhaseOutcome {
  phase: NonNullable<ServiceUserStatus['phase']>;
  conditions: ConditionInput[];
  events: EventRecord[];
  expiringSoon: boolean;
}

export function phaseOf(input: PhaseInput): PhaseOutcome {
  const { su, now, expires, warnAt, tokenId, certificate, secretName, previous } = input;
  const spec = su.spec;
  const events: EventRecord[] = [];
  const wasTrue = (type: string) => previous?.some((c) => c.type === type && c.status === 'True') ?? false;
  const expired = expires !== undefined && now >= expires;
  const disabled = spec.disabled;
  const expiringSoon = !expired && warnAt !== undefined && now >= warnAt;
  const tokenEnabled = spec.credentials.token.enabled;
  const certificateEnabled = spec.credentials.clientCertificate.enabled;
  const complete = (tokenEnabled ? !!tokenId : true) && (certificateEnabled ? !!certificate : true) && (tokenEnabled || certificateEnabled);
  const phase = expired ? 'Expired' : disabled ? 'Disabled' : complete ? 'Active' : 'Pending';
  if (expired) {
    const held = { credentials: heldCredentials(su.status), createdAt: su.metadata.creationTimestamp as string | undefined };
    events.push(...expiryEvents(expires, wasTrue('Expired'), input.expiredTokens ?? [], secretName, held));
  }
  if (expiringSoon && !wasTrue('ExpiringSoon')) events.push({ type: 'Warning', reason: 'ExpiringSoon', message: `credentials expire at ${iso(expires!)}; extend spec.endDate or plan the replacement` });
  if (disabled && !wasTrue('Disabled')) events.push({ type: 'Normal', reason: 'Disabled', message: 'disabled: verification refuses its credentials until enabled' });
  if (!disabled && wasTrue('Disabled')) events.push({ type: 'Normal', reason: 'Enabled', message: 'enabled: its credentials are accepted again' });

  const problem = input.certificateProblem;
  const readyMessage = {
    Expired: `expired at ${expires !== undefined ? iso(expires) : ''}; extend spec.endDate to issue new credentials`,
    Disabled: 'disabled by spec.disabled',
    Active: `credentials issued into Secret ${secretName}`,
    Pending: problem?.message ?? (certificateEnabled && !certificate ? 'waiting for the client certificate' : 'waiting for the credentials'),
  }[phase];
  const previousReady = previous?.find((c) => c.type === 'Ready');
  if (problem && !expired && (previousReady?.reason !== problem.reason || previousReady.message !== problem.message)) {
    events.push({ type: problem.reason === 'CertificateIssuing' ? 'Normal' : 'Warning', reason: problem.reason, message: problem.message });
  }
  const conditions: ConditionInput[] = [
    { type: 'Ready', status: phase === 'Active' ? 'True' : 'False', reason: phase === 'Pending' && problem ? problem.reason : phase, message: readyMessage },
    { type: 'Reconciling', status: 'False', reason: 'Reconciled', message: 'desired state applied' },
    { type: 'Stalled', status: 'False', reason: 'Reconciled', message: 'no problem found' },
    {
      type: 'CredentialsIssued',
      status: complete && !expired ? 'True' : 'False',
      reason: complete && !expired ? 'Issued' : expired ? 'Expired' : 'NotIssued',
      message:
        [tokenId ? `token ${tokenId}` : undefined, certificate ? `certificate ${certificate.serialNumber}` : undefined].filter(Boolean).join(' and ') +
          (tokenId || certificate ? ` in Secret ${secretName}` : 'no live credential'),
    },
    {
      type: 'ExpiringSoon',
      status: expiringSoon ? 'True' : 'False',
      reason: expiringSoon ? 'EndDateNear' : 'NotNear',
      message: expiringSoon ? `expires at ${iso(expires!)}` : expires === undefined ? 'no end date' : `warning from ${iso(warnAt!)}`,
    },
    { type: 'Expired', status: expired ? 'True' : 'False', reason: expired ? 'EndDatePassed' : 'Valid', message: expires === undefined ? 'no end date' : `end date ${iso(expires)}` },
    ledgerIntact(input),
    { type: 'Disabled', status: disabled ? 'True' : 'False', reason: disabled ? 'DisabledBySpec' : 'Enabled', message: disabled ? 'spec.disabled is true' : 'spec.disabled is false' },
  ];
  return { phase, conditions, events, expiringSoon };
}

/**
 * LedgerIntact: False from the reconcile that found an unsigned record until the spec next
 * changes, so that one forgery stays visible after the record is dropped.
 */
function ledgerIntact({ forged, previous, su }: PhaseInput): ConditionInput {
  if (forged) return { type: 'LedgerIntact', status: 'False', reason: 'RecordForged', message: forged };
  const before = previous?.find((c) => c.type === 'LedgerIntact');
  if (before?.status === 'False' && before.observedGeneration === su.metadata.generation) return { type: 'LedgerIntact', status: 'False', reason: before.reason, message: before.message };
  return { type: 'LedgerIntact', status: 'True', reason: 'Verified', message: 'every record in status and the Secret carries a valid MAC' };
}
