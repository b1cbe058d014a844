// The desired state of one ServiceUser: its Secret, its status, the events to record and
// when to look again — computed from the spec and what was observed. Pure: no Kubernetes
// client, no clock, no randomness of its own, so every rule is testable without a cluster.
// A composition of one module per concern, as cert-manager splits its controllers:
//   tokens.ts       the token ledger and the Secret's self-description (crash safety)
//   certificate.ts  keep, issue or renew the client certificate (decided before, placed here)
//   phase.ts        phase, conditions and the events their changes announce
//   template-keys.ts which secretTemplate keys were left off the Secret, as a condition
//   and what it holds itself: the rules that stop everything (blocker) and the Secret's layout.
import { maxPermissions, maxRolesPerPermission, type CertificateSource, type ServiceUser, type ServiceUserStatus, type TokenStatus } from '../api/serviceuser.ts';
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
import { honouredRecords, iso, tokenAnnotations, tokenLedger, type RevocationReason, type TokenLedger } from './tokens.ts';
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
  const context = contextOf(su, observed, now);
  // Rules only the operator can judge stop everything else, and never destroy anything —
  // except what the end date promises: a stalled user expires like any other.
  const blocked = blocker(su, observed);
  return blocked ? stalled(context, blocked) : converging(context, issue);
}

/** What every part of one plan reads: the spec and the previous status, as derived once. */
interface Context {
  su: ServiceUser;
  observed: Observed;
  now: number;
  previous: ServiceUserStatus;
  prevConditions: Condition[] | undefined;
  identity: string;
  secretName: string;
  expires: number | undefined;
  expired: boolean;
  uid: string;
  trust: Observed['trust'];
  /** The Secret is this user's (not someone else's under its name). */
  ours: boolean;
  template: ReturnType<typeof admittedTemplate>;
  permissions: ReturnType<typeof recordablePermissions>;
  /** What every status holds. */
  base: ServiceUserStatus;
}

function contextOf(su: ServiceUser, observed: Observed, now: number): Context {
  const expires = endOf(su.spec.endDate);
  const permissions = recordablePermissions(observed.permissions);
  const secretName = secretNameOf(su);
  return {
    su,
    observed,
    now,
    previous: su.status ?? {},
    prevConditions: su.status?.conditions as Condition[] | undefined,
    identity: identityOf(su),
    secretName,
    expires,
    expired: isExpired(expires, now),
    uid: su.metadata.uid ?? '',
    trust: observed.trust,
    ours: !!observed.secret && !!su.metadata.uid && observed.secret.ownerUids.includes(su.metadata.uid),
    // Keys that would have another controller copy the Secret never reach it, whatever admission let through.
    template: admittedTemplate(observed.templateKeys ?? defaultTemplateKeyPolicy, su.spec.credentials.secretTemplate),
    permissions,
    base: {
      identity: identityOf(su),
      friendlyName: friendlyNameOf(su),
      secretName,
      ...(expires !== undefined ? { expiresAt: iso(expires) } : {}),
      permissions: permissions.recorded,
      accounts: observed.accounts?.admitted ?? [],
      observedGeneration: su.metadata.generation,
    },
  };
}

const wasTrue = (c: Context, type: string) => c.prevConditions?.some((p) => p.type === type && p.status === 'True') ?? false;

/**
 * status.permissions, status.accounts (where written) and status.certificate are sealed by
 * one MAC, over the status as finally written.
 */
const sealed = (c: Context, status: ServiceUserStatus): ServiceUserStatus => ({ ...status, seal: sealOf(c.trust.ring, c.uid, status) });

/** The Secret: the template's admitted keys, ours, and `data`; refused template keys named for removal. */
function secretOf(c: Context, ownAnnotations: Record<string, string>, data: DesiredSecret['data']): DesiredSecret {
  const { template } = c;
  const withheld = template.refused.length
    ? { withheld: { labels: template.refused.filter((r) => r.field === 'labels').map((r) => r.key), annotations: template.refused.filter((r) => r.field === 'annotations').map((r) => r.key) } }
    : {};
  return {
    name: c.secretName,
    labels: { ...template.labels, [labels.managedBy]: managedBy, [labels.name]: c.su.metadata.name },
    annotations: { ...template.annotations, ...ownAnnotations },
    ...withheld,
    data,
  };
}

/**
 * A stalled user: its tokens are revoked at the end date, its certificate too (the
 * certificate plan revokes the recorded serial before this runs) and its Secret's
 * credentials wiped, when the Secret is ours: a Secret another owner holds (SecretNotOwned)
 * is never written. Nothing is issued while stalled, and nothing unsigned is kept either.
 */
function stalled(c: Context, blocked: { reason: string; message: string }): Desired {
  const { reason, message } = blocked;
  const events: EventRecord[] = [];
  const stalledBefore = c.prevConditions?.find((p) => p.type === 'Stalled');
  if (!(stalledBefore?.status === 'True' && stalledBefore.reason === reason)) events.push({ type: 'Warning', reason, message });
  const tokens = honouredRecords(c.previous.tokens ?? [], c.trust, c.uid).honoured.map((t) => ({ ...t }));
  const revocations = c.expired ? expireTokens(tokens, c.expires!) : [];
  let secret: DesiredSecret | undefined;
  if (c.expired) {
    const held = { credentials: heldCredentials(c.previous), createdAt: c.su.metadata.creationTimestamp as string | undefined };
    events.push(...expiryEvents(c.expires!, wasTrue(c, 'Expired'), revocations.map((r) => r.id), c.ours ? c.secretName : undefined, held));
    if (c.ours) secret = secretOf(c, {}, secretKeys(c.su.spec.credentials.profile as Profile, { identity: c.identity, expiresAt: iso(c.expires!), token: undefined }));
  }
  return {
    secret,
    events,
    revocations,
    // The end date is a timer for a stalled user too.
    requeueAfterMs: !c.expired && c.expires !== undefined ? c.expires - c.now : undefined,
    status: stalledStatus(c, blocked, tokens),
  };
}

/** The live tokens revoked at the end date (in place), and the revocations. */
function expireTokens(tokens: TokenStatus[], expires: number): Desired['revocations'] {
  const revocations: Desired['revocations'] = [];
  for (const t of tokens.filter((t) => t.state === 'Active' || t.state === 'Grace')) {
    t.state = 'Revoked';
    t.revokedAt = iso(expires);
    t.reason = 'Expired';
    delete t.validUntil;
    revocations.push({ id: t.id, reason: 'Expired' });
  }
  return revocations;
}

function stalledStatus(c: Context, { reason, message }: { reason: string; message: string }, tokens: TokenStatus[]): ServiceUserStatus {
  const { previous, expired, expires } = c;
  const endMessage = expires === undefined ? 'no end date' : `end date ${iso(expires)}`;
  return {
    // Kept while stalled (sealed with the rest, and only if it was sealed before: a claim
    // written by someone else is not laundered), so that the end date, a deletion or the
    // fix can still revoke it.
    ...sealed(c, { ...c.base, ...(previous.certificate && !expired && sealHonoured(c.trust, c.uid, previous) ? { certificate: previous.certificate } : {}) }),
    ...(previous.lastRotationRequest !== undefined ? { lastRotationRequest: previous.lastRotationRequest } : {}),
    ...(previous.lastRenewalRequest !== undefined ? { lastRenewalRequest: previous.lastRenewalRequest } : {}),
    phase: expired ? 'Expired' : 'Failed',
    tokens: tokens.map((t) => signToken(c.trust.ring, c.uid, t)),
    conditions: setConditions(
      c.prevConditions,
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
      c.su.metadata.generation,
      c.now,
    ),
  };
}

/** A user nothing stops: its token ledger, certificate, phase and conditions. */
function converging(c: Context, issue: () => IssuedToken): Desired {
  const { su, now, expires, expired, previous, secretName } = c;
  const spec = su.spec;
  const ledger = tokenLedger({ now, spec: spec.credentials.token, expired, expires, recorded: previous.tokens ?? [], secret: c.observed.secret, secretName, issue, uid: c.uid, trust: c.trust, lastRotationRequest: previous.lastRotationRequest });
  const events: EventRecord[] = [];
  const forged = forgedRecords(c, ledger);
  if (forged) events.push({ type: 'Warning', reason: 'RecordForged', message: `${forged}: not honoured, dropped and rebuilt from what the operator signed` });
  // The Secret: credentials while not expired; identity and end date always.
  const certificate = c.observed.certificate;
  events.push(...credentialEvents(c, ledger));
  const secret = secretOf(c, ledger.annotations, secretKeys(spec.credentials.profile as Profile, { identity: c.identity, expiresAt: expires !== undefined ? iso(expires) : undefined, token: ledger.current?.text, certificate: certificate?.material }));
  const throttled = requestsThrottled(spec.credentials, { rotation: ledger.rotationWaits, renewal: certificate?.renewalWaits }, c.prevConditions);
  const permissions = permissionsTruncated(c);
  events.push(...permissions.events);
  const warnAt = warnOf(expires, spec.expiryWarning);
  const problem = c.observed.certificateProblem;
  const expiredTokens = ledger.revocations.filter((r) => r.reason === 'Expired').map((r) => r.id);
  const state = phaseOf({ su, now, expires, warnAt, tokenId: ledger.current?.id, certificate, certificateProblem: problem, secretName, previous: c.prevConditions, forged: forged || undefined, expiredTokens });
  events.push(...state.events);
  const accounts = accountsAdmission(c.observed.accounts, spec.accounts, c.prevConditions);
  events.push(...accounts.events, ...throttled.events);
  const templateKeys = templateAdmission(c.template.refused, c.prevConditions);
  events.push(...templateKeys.events);
  const next = nextChange(c, [state.expiringSoon ? undefined : warnAt, ledger.nextChange]);
  return {
    secret,
    events,
    revocations: ledger.revocations,
    requeueAfterMs: next === undefined ? undefined : next - now,
    status: sealed(c, {
      ...c.base,
      phase: state.phase,
      tokens: ledger.tokens,
      ...(ledger.lastRotationRequest !== undefined ? { lastRotationRequest: ledger.lastRotationRequest } : {}),
      ...lastRenewalRequestOf(c),
      ...(certificate ? { certificate: certificateRecord(certificate) } : {}),
      conditions: setConditions(c.prevConditions, [...state.conditions, accounts.condition, templateKeys.condition, permissions.condition, ...(throttled.condition ? [throttled.condition] : [])], su.metadata.generation, now),
    }),
  };
}

/** What status held without the operator's MAC: never honoured, said once as a Warning. */
function forgedRecords(c: Context, ledger: TokenLedger): string {
  const { previous } = c;
  const previousSealed = previous.seal !== undefined || (previous.permissions?.length ?? 0) > 0 || (previous as { accounts?: unknown[] }).accounts?.length || previous.certificate;
  return [
    ledger.forged,
    previousSealed && !sealHonoured(c.trust, c.uid, previous) ? 'status.permissions, accounts and certificate without a valid status.seal' : undefined,
  ].filter(Boolean).join('; ');
}

/**
 * The token ledger's events and the certificate's. A user's first credentials are one event,
 * not one each: the story a person reads, and an Event object less a user for the API server
 * (thousands in a rollout).
 */
function credentialEvents(c: Context, ledger: TokenLedger): EventRecord[] {
  const certificate = c.observed.certificate;
  const firstToken = !c.previous.tokens?.length && certificate?.issued === 'Missing' ? ledger.events.findIndex((e) => e.reason === 'TokenIssued') : -1;
  if (certificate && firstToken >= 0 && ledger.current) {
    return [
      ...ledger.events.filter((_, i) => i !== firstToken),
      { type: 'Normal', reason: 'CredentialsIssued', message: `token ${ledger.current.id} and client certificate ${certificate.serialNumber} (valid until ${iso(certificate.notAfter)}) issued into Secret ${c.secretName}` },
    ];
  }
  return [
    ...ledger.events,
    ...(certificate?.issued ? [{ type: 'Normal' as const, reason: 'CertificateIssued', message: `client certificate ${certificate.serialNumber} issued into Secret ${c.secretName} (${certificate.issued}), valid until ${iso(certificate.notAfter)}` }] : []),
  ];
}

/**
 * The renewal request handled: the certificate plan renewed for a new renewalRequest (or there
 * was nothing to renew yet). cert-manager renews its own certificates (cmctl renew): not
 * recorded there; nor is one that waits for its interval.
 */
function lastRenewalRequestOf(c: Context): Pick<ServiceUserStatus, 'lastRenewalRequest'> {
  const spec = c.su.spec.credentials.clientCertificate;
  const last = spec.issuerRef || c.observed.certificate?.renewalWaits ? c.previous.lastRenewalRequest : (spec.renewalRequest ?? c.previous.lastRenewalRequest);
  return last !== undefined ? { lastRenewalRequest: last } : {};
}

const certificateRecord = (certificate: PlacedCertificate): NonNullable<ServiceUserStatus['certificate']> => ({
  serialNumber: certificate.serialNumber,
  notBefore: iso(certificate.notBefore),
  notAfter: iso(certificate.notAfter),
  ...(certificate.renewalTime !== undefined ? { renewalTime: iso(certificate.renewalTime) } : {}),
  issuer: certificate.issuer,
  sha256: certificate.sha256,
  issuedBy: certificate.issuedBy,
});

/** The PermissionsTruncated condition, and its Warning when the cut changes. */
function permissionsTruncated(c: Context): { condition: ConditionInput; events: EventRecord[] } {
  const { permissions } = c;
  const truncated = permissions.cut > 0;
  const message = `RoleBindings grant ${c.observed.permissions.length} permissions; status records ${permissions.recorded.length} (at most ${maxPermissions}, the first by account, manager and permission) and verification grants only those: the other ${permissions.cut} are refused. Bind fewer roles or accounts, or split this service user`;
  const before = c.prevConditions?.find((p) => p.type === 'PermissionsTruncated');
  const events: EventRecord[] = truncated && !(before?.status === 'True' && before.message === message) ? [{ type: 'Warning', reason: 'PermissionsTruncated', message }] : [];
  const condition: ConditionInput = {
    type: 'PermissionsTruncated',
    status: truncated ? 'True' : 'False',
    reason: truncated ? 'TooManyPermissions' : 'AllRecorded',
    message: truncated ? message : `${permissions.recorded.length} permissions recorded (at most ${maxPermissions})`,
  };
  return { condition, events };
}

/** The next instant anything changes by itself: the end date, `more` (the warning, the ledger's), the certificate's times. */
function nextChange(c: Context, more: (number | undefined)[]): number | undefined {
  const { now, expired } = c;
  const certificate = c.observed.certificate;
  const problem = c.observed.certificateProblem;
  const upcoming = [
    expired ? undefined : c.expires,
    ...more,
    certificate?.renewalTime,
    certificate && !expired ? certificate.notAfter : undefined,
    certificate?.renewalWaits?.until,
  ].filter((t): t is number => t !== undefined && t > now);
  // An external issuer that is behind is looked at again soon: its progress does not wake us.
  // The built-in CA wakes its waiters itself when it loads; 30 s is only a fallback.
  if (problem && !expired) upcoming.push(now + (problem.reason === 'CertManagerMissing' || problem.reason === 'CAUnavailable' ? 30_000 : 3_000));
  return upcoming.length ? Math.min(...upcoming) : undefined;
}
