// The desired state of one ServiceUser: its Secret, its status, the events to record and
// when to look again — computed from the spec and what was observed. Pure: no Kubernetes
// client, no clock, no randomness of its own, so every rule is testable without a cluster.
// A composition of one module per concern, as cert-manager splits its controllers:
//   tokens.ts       the token ledger and the Secret's self-description (crash safety)
//   certificate.ts  keep, issue or renew the client certificate (decided before, placed here)
//   phase.ts        phase, conditions and the events their changes announce
//   template-keys.ts which secretTemplate keys were left off the Secret, as a condition
//   and what it holds itself: the rules that stop everything (blocker) and the Secret's layout.
import { maxPermissions, maxRolesPerPermission, type CertificateSource, type ServiceUser, type ServiceUserStatus } from '../api/serviceuser.ts';
import { setConditions, type Condition, type ConditionInput } from '../controller/conditions.ts';
import type { IssuedToken } from '../credentials/token.ts';
import type { Grant } from '../rolebinding/resolve.ts';
import { accountsAdmission, type AccountsVerdict } from '../account/admission.ts';
import { admittedTemplate, defaultTemplateKeyPolicy, type TemplateKeyPolicy } from '../api/secret-template.ts';
import { templateAdmission } from './template-keys.ts';
import { expiresAt as endOf, isExpired, warnAt as warnOf } from '../api/expiry.ts';
import { friendlyNameOf, identityOf, labels, managedBy, secretNameOf } from '../api/names.ts';
import type { CertificateMaterial } from './certificate.ts';
import { secretKeys, type Profile } from './secret.ts';
import { expiryEvents, heldCredentials, phaseOf } from './phase.ts';
import { honouredRecords, iso, tokenAnnotations, tokenLedger, type RevocationReason } from './tokens.ts';
import { sealHonoured, sealOf, signToken, type LedgerTrust } from '../authority/ledger-macs.ts';
import type { KeyRing } from '../credentials/mac.ts';

/** The annotations the operator owns on the Secret (its self-description). */
export const annotations = tokenAnnotations;

/** The Secret as observed: `data` decoded from base64 as text, `raw` as stored. */
export interface ObservedSecret {
  data: Record<string, string>;
  raw?: Record<string, string>;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  ownerUids: string[];
  /** Whose it is, for a person (its owner or the managers that wrote it). */
  owner?: string;
}

export interface Observed {
  now: number;
  secret: ObservedSecret | undefined;
  /** Other ServiceUsers of the namespace, for friendly-name uniqueness. */
  peers: ServiceUser[];
  permissions: Grant[];
  /** Which of spec.accounts exist and admit the namespace (account/admission.ts); absent: none. */
  accounts?: AccountsVerdict;
  /** The client certificate to hold, kept or just issued (see certificate.ts). */
  certificate?: PlacedCertificate | undefined;
  /** Why there is no certificate yet, when an external issuer is behind (cert-manager.ts). */
  certificateProblem?: { reason: string; message: string } | undefined;
  /** The ledger key: what status and the Secret hold is honoured only with its MAC. */
  trust: LedgerTrust & { ring: KeyRing };
  /** Which secretTemplate keys may reach the Secret; absent: the default (copiers' keys refused). */
  templateKeys?: TemplateKeyPolicy;
}

export interface PlacedCertificate {
  material: CertificateMaterial;
  serialNumber: string;
  notBefore: number;
  notAfter: number;
  issuer: string;
  /** SHA-256 of the DER, hex. */
  sha256: string;
  renewalTime: number | undefined;
  /** Who issued it: only the built-in CA's ever go on its CRL (recorded, sealed, as status.certificate.issuedBy). */
  issuedBy: CertificateSource;
  /** Issued in this reconcile (for the event), and why. */
  issued?: string;
  /** A new renewalRequest waits for its interval (certificate.ts): until when, and why if not the usual interval. */
  renewalWaits?: { until: number; why?: string };
}

export interface DesiredSecret {
  name: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  data: Record<string, string | Buffer>;
  /** secretTemplate keys refused (api/secret-template.ts): removed from the Secret whoever set them. */
  withheld?: { labels: string[]; annotations: string[] };
}

export interface EventRecord {
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
}

export interface Desired {
  /** The Secret to apply, or undefined to leave it as it is. */
  secret: DesiredSecret | undefined;
  status: ServiceUserStatus;
  events: EventRecord[];
  /** Tokens revoked by this pass, and why (the tokens-revoked metric). */
  revocations: { id: string; reason: RevocationReason }[];
  requeueAfterMs: number | undefined;
}


/** The JSON size status.permissions may take: with the tokens and conditions, far below etcd's object limit. */
export const maxPermissionsBytes = 512 * 1024;

/**
 * What of the effective permissions status can record: the first ones in their sorted order
 * (account, manager, permission), at most maxPermissions and maxPermissionsBytes, each naming
 * at most maxRolesPerPermission roles. Status is what verification grants from, so what is cut
 * is refused — never granted unrecorded — and the status write never fails on its size.
 */
export function recordablePermissions(grants: Grant[]): { recorded: Grant[]; cut: number } {
  const recorded: Grant[] = [];
  let bytes = 2;
  for (const g of grants) {
    const grant = g.roles.length > maxRolesPerPermission ? { ...g, roles: g.roles.slice(0, maxRolesPerPermission) } : g;
    bytes += JSON.stringify(grant).length + 1;
    if (recorded.length >= maxPermissions || bytes > maxPermissionsBytes) break;
    recorded.push(grant);
  }
  return { recorded, cut: grants.length - recorded.length };
}

/**
 * The RequestsThrottled condition, present only while a request waits (certificate.ts and
 * tokens.ts bound them to one an interval), and its event when one starts waiting.
 */
export function requestsThrottled(
  spec: ServiceUser['spec']['credentials'],
  waits: { rotation: number | undefined; renewal: PlacedCertificate['renewalWaits'] },
  previous: Condition[] | undefined,
): { condition?: ConditionInput; events: EventRecord[] } {
  const parts = [
    waits.rotation !== undefined ? `rotationRequest ${JSON.stringify(spec.token.rotationRequest)} is acted on at ${iso(waits.rotation)}` : undefined,
    waits.renewal ? `renewalRequest ${JSON.stringify(spec.clientCertificate.renewalRequest)} is acted on at ${iso(waits.renewal.until)}${waits.renewal.why ? ` (${waits.renewal.why})` : ''}` : undefined,
  ].filter(Boolean);
  if (!parts.length) return { events: [] };
  const message = `${parts.join('; ')}: at most one rotation and one renewal a minute are acted on, counted from the current credential's issue; a newer value set meanwhile replaces the waiting one`;
  const reason = waits.renewal?.why ? 'CrlBudgetExceeded' : 'RequestInterval';
  const condition: ConditionInput = { type: 'RequestsThrottled', status: 'True', reason, message };
  const before = previous?.find((c) => c.type === 'RequestsThrottled');
  return { condition, events: before?.status === 'True' && before.reason === reason ? [] : [{ type: reason === 'CrlBudgetExceeded' ? 'Warning' : 'Normal', reason: 'RequestThrottled', message }] };
}

/**
 * The ServiceUser that holds this friendly name, if not `su`: one that already holds it
 * (status says so and it is not Failed) keeps it; otherwise the older wins, then the name
 * (creation times have one-second resolution).
 */
export function friendlyNameHolder(su: ServiceUser, peers: ServiceUser[]): ServiceUser | undefined {
  const name = friendlyNameOf(su);
  const holds = (u: ServiceUser) => (u.status?.friendlyName === name && !!u.status.phase && u.status.phase !== 'Failed' ? '0' : '1');
  const rank = (u: ServiceUser) => `${holds(u)}\u0000${(u.metadata as { creationTimestamp?: string }).creationTimestamp ?? ''}\u0000${u.metadata.name}`;
  return peers
    .filter((p) => p.metadata.name !== su.metadata.name && friendlyNameOf(p) === name && !p.metadata.deletionTimestamp)
    .filter((p) => rank(p) < rank(su))
    .sort((a, b) => rank(a).localeCompare(rank(b)))[0];
}

/** What stops a ServiceUser before anything is issued: rules only the operator can judge. */
export function blocker(su: ServiceUser, observed: Pick<Observed, 'peers' | 'secret'>): { reason: string; message: string } | undefined {
  const holder = friendlyNameHolder(su, observed.peers);
  if (holder) {
    return {
      reason: 'FriendlyNameConflict',
      message: `friendly name "${friendlyNameOf(su)}" is already used by ServiceUser ${holder.metadata.name} in this namespace; set a different spec.friendlyName`,
    };
  }
  if (observed.secret && su.metadata.uid && !observed.secret.ownerUids.includes(su.metadata.uid)) {
    return {
      reason: 'SecretNotOwned',
      message: `Secret ${secretNameOf(su)} exists and does not belong to this ServiceUser${observed.secret.owner ? ` (it belongs to ${observed.secret.owner})` : ''}; it is left untouched: delete it or set a different spec.credentials.secretName`,
    };
  }
  return undefined;
}

export function desired(su: ServiceUser, observed: Observed, issue: () => IssuedToken): Desired {
  const { now } = observed;
  const spec = su.spec;
  const previous = su.status ?? {};
  const events: EventRecord[] = [];
  const identity = identityOf(su);
  const secretName = secretNameOf(su);
  const expires = endOf(spec.endDate);
  const expired = isExpired(expires, now);
  const prevConditions = previous.conditions as Condition[] | undefined;
  const uid = su.metadata.uid ?? '';
  const { trust } = observed;
  const wasTrue = (type: string) => prevConditions?.some((c) => c.type === type && c.status === 'True') ?? false;
  const ours = (secret: ObservedSecret | undefined) => !!secret && !!su.metadata.uid && secret.ownerUids.includes(su.metadata.uid);

  const permissions = recordablePermissions(observed.permissions);
  // Keys that would have another controller copy the Secret never reach it, whatever admission let through.
  const template = admittedTemplate(observed.templateKeys ?? defaultTemplateKeyPolicy, spec.credentials.secretTemplate);
  const withheld = template.refused.length
    ? { withheld: { labels: template.refused.filter((r) => r.field === 'labels').map((r) => r.key), annotations: template.refused.filter((r) => r.field === 'annotations').map((r) => r.key) } }
    : {};
  const base: ServiceUserStatus = {
    identity,
    friendlyName: friendlyNameOf(su),
    secretName,
    ...(expires !== undefined ? { expiresAt: iso(expires) } : {}),
    permissions: permissions.recorded,
    accounts: observed.accounts?.admitted ?? [],
    observedGeneration: su.metadata.generation,
  };

  // status.permissions, status.accounts (where written) and status.certificate are sealed by
  // one MAC, over the status as finally written.
  const sealed = (status: ServiceUserStatus): ServiceUserStatus => ({ ...status, seal: sealOf(trust.ring, uid, status) });

  // Rules only the operator can judge stop everything else, and never destroy anything —
  // except what the end date promises: a stalled user expires like any other. Its tokens are
  // revoked, its certificate too (the reconcile puts the recorded serial on the CRL before
  // this runs) and its Secret's credentials wiped, when the Secret is ours: a Secret another
  // owner holds (SecretNotOwned) is never written.
  const blocked = blocker(su, observed);
  if (blocked) {
    const { reason, message } = blocked;
    const stalledBefore = prevConditions?.find((c) => c.type === 'Stalled');
    if (!(stalledBefore?.status === 'True' && stalledBefore.reason === reason)) events.push({ type: 'Warning', reason, message });
    // Nothing is issued while stalled, and nothing unsigned is kept either.
    const tokens = honouredRecords(previous.tokens ?? [], trust, uid).honoured.map((t) => ({ ...t }));
    let secret: DesiredSecret | undefined;
    const revocations: Desired['revocations'] = [];
    if (expired) {
      for (const t of tokens.filter((t) => t.state === 'Active' || t.state === 'Grace')) {
        t.state = 'Revoked';
        t.revokedAt = iso(expires!);
        t.reason = 'Expired';
        delete t.validUntil;
        revocations.push({ id: t.id, reason: 'Expired' });
      }
      const held = { credentials: heldCredentials(previous), createdAt: su.metadata.creationTimestamp as string | undefined };
      events.push(...expiryEvents(expires!, wasTrue('Expired'), revocations.map((r) => r.id), ours(observed.secret) ? secretName : undefined, held));
      if (ours(observed.secret)) {
        secret = {
          name: secretName,
          labels: { ...template.labels, [labels.managedBy]: managedBy, [labels.name]: su.metadata.name },
          annotations: { ...template.annotations },
          ...withheld,
          data: secretKeys(spec.credentials.profile as Profile, { identity, expiresAt: iso(expires!), token: undefined }),
        };
      }
    }
    const endMessage = expires === undefined ? 'no end date' : `end date ${iso(expires)}`;
    return {
      secret,
      events,
      revocations,
      // The end date is a timer for a stalled user too.
      requeueAfterMs: !expired && expires !== undefined ? expires - now : undefined,
      status: {
        // Kept while stalled (sealed with the rest, and only if it was sealed before: a claim
        // written by someone else is not laundered), so that the end date, a deletion or the
        // fix can still revoke it.
        ...sealed({ ...base, ...(previous.certificate && !expired && sealHonoured(trust, uid, previous) ? { certificate: previous.certificate } : {}) }),
        ...(previous.lastRotationRequest !== undefined ? { lastRotationRequest: previous.lastRotationRequest } : {}),
        ...(previous.lastRenewalRequest !== undefined ? { lastRenewalRequest: previous.lastRenewalRequest } : {}),
        phase: expired ? 'Expired' : 'Failed',
        tokens: tokens.map((t) => signToken(trust.ring, uid, t)),
        conditions: setConditions(
          prevConditions,
          [
            {
              type: 'Ready',
              status: 'False',
              reason: expired ? 'Expired' : reason,
              message: expired ? `expired at ${iso(expires!)}; credentials revoked. Still stalled: ${message}` : message,
            },
            { type: 'Reconciling', status: 'False', reason, message: 'waiting for the spec to change' },
            { type: 'Stalled', status: 'True', reason, message },
            ...(expired
              ? [
                  { type: 'CredentialsIssued', status: 'False' as const, reason: 'Expired', message: 'no live credential' },
                  { type: 'Expired', status: 'True' as const, reason: 'EndDatePassed', message: endMessage },
                ]
              : []),
          ],
          su.metadata.generation,
          now,
        ),
      },
    };
  }

  const ledger = tokenLedger({
    now,
    spec: spec.credentials.token,
    expired,
    expires,
    recorded: previous.tokens ?? [],
    secret: observed.secret,
    secretName,
    issue,
    uid,
    trust,
    lastRotationRequest: previous.lastRotationRequest,
  });
  // What status held without the operator's MAC is never honoured: said once, as a Warning.
  const previousSealed = previous.seal !== undefined || (previous.permissions?.length ?? 0) > 0 || (previous as { accounts?: unknown[] }).accounts?.length || previous.certificate;
  const forged = [
    ledger.forged,
    previousSealed && !sealHonoured(trust, uid, previous) ? 'status.permissions, accounts and certificate without a valid status.seal' : undefined,
  ].filter(Boolean).join('; ');
  if (forged) events.push({ type: 'Warning', reason: 'RecordForged', message: `${forged}: not honoured, dropped and rebuilt from what the operator signed` });
  // The Secret: credentials while not expired; identity and end date always.
  const certificate = observed.certificate;
  // A user's first credentials are one event, not one each: the story a person reads, and an
  // Event object less a user for the API server (thousands in a rollout).
  const firstToken = !previous.tokens?.length && certificate?.issued === 'Missing' ? ledger.events.findIndex((e) => e.reason === 'TokenIssued') : -1;
  if (certificate && firstToken >= 0 && ledger.current) {
    events.push(...ledger.events.filter((_, i) => i !== firstToken));
    events.push({ type: 'Normal', reason: 'CredentialsIssued', message: `token ${ledger.current.id} and client certificate ${certificate.serialNumber} (valid until ${iso(certificate.notAfter)}) issued into Secret ${secretName}` });
  } else {
    events.push(...ledger.events);
    if (certificate?.issued) events.push({ type: 'Normal', reason: 'CertificateIssued', message: `client certificate ${certificate.serialNumber} issued into Secret ${secretName} (${certificate.issued}), valid until ${iso(certificate.notAfter)}` });
  }
  const secret: DesiredSecret = {
    name: secretName,
    labels: { ...template.labels, [labels.managedBy]: managedBy, [labels.name]: su.metadata.name },
    annotations: { ...template.annotations, ...ledger.annotations },
    ...withheld,
    data: secretKeys(spec.credentials.profile as Profile, { identity, expiresAt: expires !== undefined ? iso(expires) : undefined, token: ledger.current?.text, certificate: certificate?.material }),
  };

  // certificate.ts renewed for a new renewalRequest (or there was nothing to renew yet): it
  // is handled. cert-manager renews its own certificates (cmctl renew): not recorded there.
  const certificateSpec = spec.credentials.clientCertificate;
  const lastRenewalRequest = certificateSpec.issuerRef || certificate?.renewalWaits ? previous.lastRenewalRequest : (certificateSpec.renewalRequest ?? previous.lastRenewalRequest);
  const throttled = requestsThrottled(spec.credentials, { rotation: ledger.rotationWaits, renewal: certificate?.renewalWaits }, prevConditions);
  const truncated = permissions.cut > 0;
  const truncatedMessage = `RoleBindings grant ${observed.permissions.length} permissions; status records ${permissions.recorded.length} (at most ${maxPermissions}, the first by account, manager and permission) and verification grants only those: the other ${permissions.cut} are refused. Bind fewer roles or accounts, or split this service user`;
  const previousTruncated = prevConditions?.find((c) => c.type === 'PermissionsTruncated');
  if (truncated && !(previousTruncated?.status === 'True' && previousTruncated.message === truncatedMessage)) {
    events.push({ type: 'Warning', reason: 'PermissionsTruncated', message: truncatedMessage });
  }
  const permissionsCondition: ConditionInput = {
    type: 'PermissionsTruncated',
    status: truncated ? 'True' : 'False',
    reason: truncated ? 'TooManyPermissions' : 'AllRecorded',
    message: truncated ? truncatedMessage : `${permissions.recorded.length} permissions recorded (at most ${maxPermissions})`,
  };

  const warnAt = warnOf(expires, spec.expiryWarning);
  const problem = observed.certificateProblem;
  const expiredTokens = ledger.revocations.filter((r) => r.reason === 'Expired').map((r) => r.id);
  const state = phaseOf({ su, now, expires, warnAt, tokenId: ledger.current?.id, certificate, certificateProblem: problem, secretName, previous: prevConditions, forged: forged || undefined, expiredTokens });
  events.push(...state.events);
  const accounts = accountsAdmission(observed.accounts, spec.accounts, prevConditions);
  events.push(...accounts.events, ...throttled.events);
  const templateKeys = templateAdmission(template.refused, prevConditions);
  events.push(...templateKeys.events);

  // The next instant anything changes by itself.
  const upcoming = [
    expired ? undefined : expires,
    state.expiringSoon ? undefined : warnAt,
    ledger.nextChange,
    certificate?.renewalTime,
    certificate && !expired ? certificate.notAfter : undefined,
    certificate?.renewalWaits?.until,
  ].filter((t): t is number => t !== undefined && t > now);
  // An external issuer that is behind is looked at again soon: its progress does not wake us.
  // The built-in CA wakes its waiters itself when it loads; 30 s is only a fallback.
  if (problem && !expired) upcoming.push(now + (problem.reason === 'CertManagerMissing' || problem.reason === 'CAUnavailable' ? 30_000 : 3_000));
  const next = upcoming.length ? Math.min(...upcoming) : undefined;

  return {
    secret,
    events,
    revocations: ledger.revocations,
    requeueAfterMs: next === undefined ? undefined : next - now,
    status: sealed({
      ...base,
      phase: state.phase,
      tokens: ledger.tokens,
      ...(ledger.lastRotationRequest !== undefined ? { lastRotationRequest: ledger.lastRotationRequest } : {}),
      ...(lastRenewalRequest !== undefined ? { lastRenewalRequest } : {}),
      ...(certificate
        ? {
            certificate: {
              serialNumber: certificate.serialNumber,
              notBefore: iso(certificate.notBefore),
              notAfter: iso(certificate.notAfter),
              ...(certificate.renewalTime !== undefined ? { renewalTime: iso(certificate.renewalTime) } : {}),
              issuer: certificate.issuer,
              sha256: certificate.sha256,
              issuedBy: certificate.issuedBy,
            },
          }
        : {}),
      conditions: setConditions(prevConditions, [...state.conditions, accounts.condition, templateKeys.condition, permissionsCondition, ...(throttled.condition ? [throttled.condition] : [])], su.metadata.generation, now),
    }),
  };
}
