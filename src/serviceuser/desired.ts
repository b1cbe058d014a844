// The desired state of one ServiceUser: its Secret, its status, the events to record and
// when to look again — computed from the spec and what was observed. Pure: no Kubernetes
// client, no clock, no randomness of its own, so every rule is testable without a cluster.
//
// Crash safety. The Secret is written before the status, and the Secret describes itself:
// its token, when it was created and which token it replaced and why. Whatever point a
// crash interrupts, the next reconcile finishes the same transition from the Secret:
//   - a token in the Secret that status does not know, replacing the Active one: the
//     replacement is completed (the old one to Grace or Revoked, as the Secret says);
//   - a token in the Secret with no Active token in status (first issue, status lost): it is
//     recorded;
//   - any other unknown token (someone edited the Secret): it is never honoured; the
//     recorded tokens whose plaintext is gone are revoked and a new one is issued.
// Verification honours only tokens recorded Active or Grace in status, so a token written
// to the Secret but not yet recorded is never valid.
import type { ServiceUser, ServiceUserStatus, TokenStatus } from '../api/serviceuser.ts';
import { parseDuration } from '../api/duration.ts';
import { setConditions, type Condition, type ConditionInput } from '../controller/conditions.ts';
import { parseToken, tokenSha256, type IssuedToken } from '../credentials/token.ts';
import type { Grant } from '../rolebinding/resolve.ts';
import { accountsCondition, type AccountsVerdict } from '../account/admission.ts';
import { expiresAt as endOf, isExpired, warnAt as warnOf } from './expiry.ts';
import type { CertificateMaterial } from './certificate.ts';
import { secretKeys, type Profile } from './secret.ts';

export const managedBy = 'service-user-operator';
export const labels = { managedBy: 'app.kubernetes.io/managed-by', name: 'serviceusers.dev/name' } as const;
export const annotations = {
  tokenCreatedAt: 'serviceusers.dev/token-created-at',
  tokenReplaces: 'serviceusers.dev/token-replaces',
} as const;

/** The Secret as observed: `data` decoded from base64 as text, `raw` as stored. */
export interface ObservedSecret {
  data: Record<string, string>;
  raw?: Record<string, string>;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  ownerUids: string[];
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
}

export interface PlacedCertificate {
  material: CertificateMaterial;
  serialNumber: string;
  notBefore: number;
  notAfter: number;
  issuer: string;
  renewalTime: number | undefined;
  /** Issued in this reconcile (for the event), and why. */
  issued?: string;
}

export interface DesiredSecret {
  name: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  data: Record<string, string | Buffer>;
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
  requeueAfterMs: number | undefined;
}

type Reason = 'Rotated' | 'GracePeriodEnded' | 'RevokedBySpec' | 'Expired' | 'SecretDeleted' | 'SecretTampered' | 'TokenDisabled' | 'Deleted';

const iso = (ms: number) => new Date(ms).toISOString().replace(/\.000Z$/, 'Z');
const keptRevoked = 20;

export const identityOf = (su: Pick<ServiceUser, 'metadata'>) => `serviceuser:${su.metadata.namespace}:${su.metadata.name}`;
export const friendlyNameOf = (su: Pick<ServiceUser, 'metadata'> & { spec: Pick<ServiceUser['spec'], 'friendlyName'> }) => su.spec.friendlyName ?? su.metadata.name;
export const secretNameOf = (su: ServiceUser) => su.spec.credentials.secretName ?? `${su.metadata.name}-credentials`;

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
      message: `Secret ${secretNameOf(su)} exists and does not belong to this ServiceUser; it is left untouched: delete it or set a different spec.credentials.secretName`,
    };
  }
  return undefined;
}

function readSecretToken(secret: ObservedSecret | undefined) {
  if (!secret) return undefined;
  const text = secret.data.token ?? secret.data.SM_API_KEY;
  if (!text) return undefined;
  const parsed = parseToken(text);
  const replaces = /^([a-z2-7]{16}):(\w+)$/.exec(secret.annotations[annotations.tokenReplaces] ?? '');
  const createdAt = Date.parse(secret.annotations[annotations.tokenCreatedAt] ?? '');
  return {
    text,
    valid: parsed.ok,
    id: parsed.ok ? parsed.id : undefined,
    sha256: tokenSha256(text),
    createdAt: Number.isNaN(createdAt) ? undefined : createdAt,
    replaces: replaces ? { id: replaces[1]!, reason: replaces[2] as Reason } : undefined,
  };
}

export function desired(su: ServiceUser, observed: Observed, issue: () => IssuedToken): Desired {
  const { now } = observed;
  const spec = su.spec;
  const previous = su.status ?? {};
  const events: EventRecord[] = [];
  const identity = identityOf(su);
  const friendlyName = friendlyNameOf(su);
  const secretName = secretNameOf(su);
  const expires = endOf(spec.endDate);
  const expired = isExpired(expires, now);
  const warnAt = warnOf(expires, spec.expiryWarning);
  const profile = spec.credentials.profile as Profile;
  const tokenSpec = spec.credentials.token;
  const grace = parseDuration(tokenSpec.gracePeriod) ?? 0;
  const prevConditions = previous.conditions as Condition[] | undefined;
  const wasTrue = (type: string) => prevConditions?.some((c) => c.type === type && c.status === 'True') ?? false;

  const base: ServiceUserStatus = {
    identity,
    friendlyName,
    secretName,
    ...(expires !== undefined ? { expiresAt: iso(expires) } : {}),
    permissions: observed.permissions,
    accounts: observed.accounts?.admitted ?? [],
    observedGeneration: su.metadata.generation,
  };

  // Rules only the operator can judge stop everything else, and never destroy anything.
  const stalled = (reason: string, message: string): Desired => {
    if (!(wasTrue('Stalled') && prevConditions?.find((c) => c.type === 'Stalled')?.reason === reason)) {
      events.push({ type: 'Warning', reason, message });
    }
    return {
      secret: undefined,
      events,
      requeueAfterMs: undefined,
      status: {
        ...base,
        phase: 'Failed',
        tokens: previous.tokens ?? [],
        conditions: setConditions(
          prevConditions,
          [
            { type: 'Ready', status: 'False', reason, message },
            { type: 'Reconciling', status: 'False', reason, message: 'waiting for the spec to change' },
            { type: 'Stalled', status: 'True', reason, message },
          ],
          su.metadata.generation,
          now,
        ),
      },
    };
  };
  const blocked = blocker(su, observed);
  if (blocked) return stalled(blocked.reason, blocked.message);

  let tokens: TokenStatus[] = (previous.tokens ?? []).map((t) => ({ ...t }));
  const revoke = (t: TokenStatus, reason: Reason, at: number) => {
    t.state = 'Revoked';
    t.revokedAt = iso(at);
    t.reason = reason;
    delete t.validUntil;
    events.push({ type: reason === 'Rotated' || reason === 'GracePeriodEnded' ? 'Normal' : 'Warning', reason: 'TokenRevoked', message: `token ${t.id} revoked: ${reason}` });
  };
  const live = () => tokens.filter((t) => t.state === 'Active' || t.state === 'Grace');

  // 1. Grace periods that ended, tokens revoked by spec, and the end date.
  for (const t of tokens) {
    if (t.state === 'Grace' && t.validUntil && Date.parse(t.validUntil) <= now) revoke(t, 'GracePeriodEnded', Date.parse(t.validUntil));
  }
  const revokedIds = new Set(tokenSpec.revokedTokenIds ?? []);
  for (const t of live()) if (revokedIds.has(t.id)) revoke(t, 'RevokedBySpec', now);
  if (expired) for (const t of live()) revoke(t, 'Expired', expires!);
  if (!tokenSpec.enabled) for (const t of live()) revoke(t, 'TokenDisabled', now);

  // 2. The Secret's token against the record.
  let current: { text: string; id: string; createdAt: number } | undefined;
  let replaces: { id: string; reason: Reason } | undefined;
  const inSecret = readSecretToken(observed.secret);
  if (!expired && tokenSpec.enabled) {
    const recorded = inSecret && tokens.find((t) => t.sha256 === inSecret.sha256);
    if (inSecret?.valid && recorded?.state === 'Active') {
      current = { text: inSecret.text, id: recorded.id, createdAt: Date.parse(recorded.createdAt) };
    } else if (inSecret?.valid && !recorded) {
      const replaced = inSecret.replaces && tokens.find((t) => t.id === inSecret.replaces!.id && t.state === 'Active');
      const createdAt = inSecret.createdAt ?? now;
      if (replaced || live().every((t) => t.state !== 'Active')) {
        // Finish what a crash interrupted, or record what a lost status forgot.
        if (replaced) {
          if (inSecret.replaces!.reason === 'Rotated') {
            replaced.state = 'Grace';
            replaced.validUntil = iso(createdAt + grace);
          } else {
            revoke(replaced, inSecret.replaces!.reason, createdAt);
          }
        }
        tokens.push({ id: inSecret.id!, sha256: inSecret.sha256, createdAt: iso(createdAt), state: 'Active' });
        current = { text: inSecret.text, id: inSecret.id!, createdAt };
        events.push({ type: 'Normal', reason: 'TokenRecorded', message: `token ${inSecret.id} found in Secret ${secretName} and recorded` });
      }
    }
    if (!current) {
      // The Active tokens' plaintext is gone from the Secret: nobody should hold them.
      const reason: Reason = !observed.secret || !inSecret ? 'SecretDeleted' : 'SecretTampered';
      const lost = live().filter((t) => t.state === 'Active');
      for (const t of lost) revoke(t, reason, now);
      if (lost.length) events.push({ type: 'Warning', reason: reason === 'SecretDeleted' ? 'SecretRepaired' : 'SecretTampered', message: `Secret ${secretName} no longer holds token ${lost.map((t) => t.id).join(', ')}; revoked and replaced` });
      if (lost[0]) replaces = { id: lost[0].id, reason };
    }
  }

  // 3. Scheduled rotation.
  const every = tokenSpec.rotateEvery ? parseDuration(tokenSpec.rotateEvery) : undefined;
  if (current && every !== undefined && current.createdAt + every <= now) {
    const old = tokens.find((t) => t.id === current!.id)!;
    old.state = 'Grace';
    old.validUntil = iso(now + grace);
    replaces = { id: old.id, reason: 'Rotated' };
    events.push({ type: 'Normal', reason: 'TokenRotated', message: `token ${old.id} rotated; it stays valid until ${old.validUntil}` });
    current = undefined;
  }

  // 4. Issue when needed.
  if (!current && !expired && tokenSpec.enabled) {
    const fresh = issue();
    tokens.push({ id: fresh.id, sha256: fresh.sha256, createdAt: iso(now), state: 'Active' });
    current = { text: fresh.token, id: fresh.id, createdAt: now };
    events.push({ type: 'Normal', reason: 'TokenIssued', message: `token ${fresh.id} issued into Secret ${secretName}` });
  }

  // 5. Keep the ledger bounded: live tokens and the latest revocations.
  const revoked = tokens.filter((t) => t.state === 'Revoked').sort((a, b) => (b.revokedAt ?? '').localeCompare(a.revokedAt ?? ''));
  const keep = new Set([...live(), ...revoked.slice(0, keptRevoked)]);
  tokens = tokens.filter((t) => keep.has(t));

  // The Secret: credentials while not expired; identity and end date always.
  const certificate = observed.certificate;
  const data = secretKeys(profile, { identity, expiresAt: expires !== undefined ? iso(expires) : undefined, token: current?.text, certificate: certificate?.material });
  if (certificate?.issued) {
    events.push({ type: 'Normal', reason: 'CertificateIssued', message: `client certificate ${certificate.serialNumber} issued into Secret ${secretName} (${certificate.issued}), valid until ${iso(certificate.notAfter)}` });
  }
  const secretAnnotations: Record<string, string> = { ...(spec.credentials.secretTemplate?.annotations ?? {}) };
  if (current) {
    secretAnnotations[annotations.tokenCreatedAt] = iso(current.createdAt);
    const carried = replaces ?? (inSecret?.id === current.id ? inSecret.replaces : undefined);
    if (carried) secretAnnotations[annotations.tokenReplaces] = `${carried.id}:${carried.reason}`;
  }
  const secret: DesiredSecret = {
    name: secretName,
    labels: { ...(spec.credentials.secretTemplate?.labels ?? {}), [labels.managedBy]: managedBy, [labels.name]: su.metadata.name },
    annotations: secretAnnotations,
    data,
  };

  // Phase and conditions.
  const disabled = spec.disabled;
  const expiringSoon = !expired && warnAt !== undefined && now >= warnAt;
  const certificateEnabled = spec.credentials.clientCertificate.enabled;
  const complete = (tokenSpec.enabled ? !!current : true) && (certificateEnabled ? !!certificate : true) && (tokenSpec.enabled || certificateEnabled);
  const phase = expired ? 'Expired' : disabled ? 'Disabled' : complete ? 'Active' : 'Pending';
  if (expired && !wasTrue('Expired')) events.push({ type: 'Warning', reason: 'Expired', message: `end date ${iso(expires!)} passed: credentials revoked and removed from Secret ${secretName}` });
  if (expiringSoon && !wasTrue('ExpiringSoon')) events.push({ type: 'Warning', reason: 'ExpiringSoon', message: `credentials expire at ${iso(expires!)}; extend spec.endDate or plan the replacement` });
  if (disabled && !wasTrue('Disabled')) events.push({ type: 'Normal', reason: 'Disabled', message: 'disabled: verification refuses its credentials until enabled' });
  if (!disabled && wasTrue('Disabled')) events.push({ type: 'Normal', reason: 'Enabled', message: 'enabled: its credentials are accepted again' });

  const readyMessage = {
    Expired: `expired at ${expires !== undefined ? iso(expires) : ''}; extend spec.endDate to issue new credentials`,
    Disabled: 'disabled by spec.disabled',
    Active: `credentials issued into Secret ${secretName}`,
    Pending: observed.certificateProblem?.message ?? (certificateEnabled && !certificate ? 'waiting for the client certificate' : 'waiting for the credentials'),
  }[phase];
  const problem = observed.certificateProblem;
  const previousReady = prevConditions?.find((c) => c.type === 'Ready');
  if (problem && !expired && (previousReady?.reason !== problem.reason || previousReady.message !== problem.message)) {
    events.push({ type: problem.reason === 'CertificateIssuing' ? 'Normal' : 'Warning', reason: problem.reason, message: problem.message });
  }
  const accountsAdmitted = accountsCondition(observed.accounts ?? { admitted: [], problems: spec.accounts.map((account) => ({ account, reason: 'AccountNotFound' as const, message: `account ${account}: not looked up` })) });
  const previousAccounts = prevConditions?.find((c) => c.type === 'AccountsAdmitted');
  if (accountsAdmitted.status === 'False' && (previousAccounts?.status !== 'False' || previousAccounts.message !== accountsAdmitted.message)) {
    events.push({ type: 'Warning', reason: accountsAdmitted.reason, message: accountsAdmitted.message });
  } else if (accountsAdmitted.status === 'True' && previousAccounts?.status === 'False') {
    events.push({ type: 'Normal', reason: 'AccountsAdmitted', message: accountsAdmitted.message });
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
        [current ? `token ${current.id}` : undefined, certificate ? `certificate ${certificate.serialNumber}` : undefined].filter(Boolean).join(' and ') +
          (current || certificate ? ` in Secret ${secretName}` : 'no live credential'),
    },
    {
      type: 'ExpiringSoon',
      status: expiringSoon ? 'True' : 'False',
      reason: expiringSoon ? 'EndDateNear' : 'NotNear',
      message: expiringSoon ? `expires at ${iso(expires!)}` : expires === undefined ? 'no end date' : `warning from ${iso(warnAt!)}`,
    },
    { type: 'Expired', status: expired ? 'True' : 'False', reason: expired ? 'EndDatePassed' : 'Valid', message: expires === undefined ? 'no end date' : `end date ${iso(expires)}` },
    { type: 'Disabled', status: disabled ? 'True' : 'False', reason: disabled ? 'DisabledBySpec' : 'Enabled', message: disabled ? 'spec.disabled is true' : 'spec.disabled is false' },
    accountsAdmitted,
  ];

  // The next instant anything changes by itself.
  const upcoming = [
    expired ? undefined : expires,
    expiringSoon ? undefined : warnAt,
    current && every !== undefined ? current.createdAt + every : undefined,
    certificate?.renewalTime,
    certificate && !expired ? certificate.notAfter : undefined,
    ...tokens.filter((t) => t.state === 'Grace' && t.validUntil).map((t) => Date.parse(t.validUntil!)),
  ].filter((t): t is number => t !== undefined && t > now);
  // An external issuer that is behind is looked at again soon: its progress does not wake us.
  if (problem && !expired) upcoming.push(now + (problem.reason === 'CertManagerMissing' ? 30_000 : 3_000));
  const next = upcoming.length ? Math.min(...upcoming) : undefined;

  return {
    secret,
    events,
    requeueAfterMs: next === undefined ? undefined : next - now,
    status: {
      ...base,
      phase,
      tokens,
      ...(certificate
        ? {
            certificate: {
              serialNumber: certificate.serialNumber,
              notBefore: iso(certificate.notBefore),
              notAfter: iso(certificate.notAfter),
              ...(certificate.renewalTime !== undefined ? { renewalTime: iso(certificate.renewalTime) } : {}),
              issuer: certificate.issuer,
            },
          }
        : {}),
      conditions: setConditions(prevConditions, conditions, su.metadata.generation, now),
    },
  };
}
