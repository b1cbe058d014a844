// The token ledger of one ServiceUser: which tokens status records and in which state, which
// token the Secret holds, and how the Secret describes it. Pure: the clock, the Secret and a
// token issuer are handed in, so every rule is testable without a cluster.
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
//
// Integrity. Every record and the Secret's self-description carry the operator's MAC
// (ledger-macs.ts). A record without a valid one is dropped and reported, never re-applied;
// a token in the Secret whose self-description has no valid one is never recorded (a tenant
// who may write their own Secret cannot plant a token under someone else's id).
import { parseDuration } from '../api/duration.ts';
import type { ServiceUserSpec, TokenStatus } from '../api/serviceuser.ts';
import { parseToken, tokenSha256, type IssuedToken } from '../credentials/token.ts';
import type { EventRecord, ObservedSecret } from './desired.ts';
import { describeSecretToken, rotationRequestAnnotation, secretTokenHonoured, signToken, tokenHonoured, tokenMacAnnotation, type LedgerTrust } from '../authority/ledger-macs.ts';

export const tokenAnnotations = {
  tokenCreatedAt: 'serviceusers.dev/token-created-at',
  tokenReplaces: 'serviceusers.dev/token-replaces',
  tokenRotationRequest: rotationRequestAnnotation,
  tokenMac: tokenMacAnnotation,
} as const;

export type RevocationReason = 'Rotated' | 'GracePeriodEnded' | 'RevokedBySpec' | 'Expired' | 'SecretDeleted' | 'SecretTampered' | 'TokenDisabled' | 'Deleted' | 'NotCurrent' | 'GraceCapped';

export const iso = (ms: number) => new Date(ms).toISOString().replace(/\.000Z$/, 'Z');

/** How many revoked records status keeps (the latest), beside every live one. */
const keptRevoked = 20;

/**
 * The least time between two acted-on requests of one kind (rotationRequest here,
 * renewalRequest in certificate.ts), measured from the current credential's issue: a newer
 * request within it waits, and the latest one then is acted on (coalesced), never dropped.
 */
export const requestIntervalMs = 60_000;

/**
 * How many rotated-out tokens stay valid at once. Scheduled rotation alone keeps at most one
 * (gracePeriod < rotateEvery); each requested rotation adds one for gracePeriod. Past the cap
 * the oldest is revoked (GraceCapped): every token in grace is a live credential, and status
 * (at most 512 records) must never refuse a write that records a new one.
 */
export const maxGraceTokens = 8;

/**
 * When a request asked at `now` may be acted on, given when the credential it replaces was
 * issued; undefined: at once. An issue time far ahead of this clock (more than the interval:
 * not a replica's skew) does not hold anything back.
 */
export function requestWaitsUntil(issuedAt: number, now: number, intervalMs: number): number | undefined {
  const opens = issuedAt + intervalMs;
  return now < opens && issuedAt <= now + intervalMs ? opens : undefined;
}

export interface TokenLedgerInput {
  now: number;
  spec: ServiceUserSpec['credentials']['token'];
  /** The end date passed: every live token is revoked and none issued. */
  expired: boolean;
  expires: number | undefined;
  /** The records status holds. */
  recorded: TokenStatus[];
  secret: ObservedSecret | undefined;
  secretName: string;
  issue: () => IssuedToken;
  /** The ServiceUser's uid, which every MAC is bound to. */
  uid: string;
  trust: LedgerTrust & { ring: NonNullable<LedgerTrust['ring']> };
  /** The last rotation request handled (status). */
  lastRotationRequest: string | undefined;
}

export interface TokenLedger {
  tokens: TokenStatus[];
  /** The token the Secret is to hold, if any. */
  current: { text: string; id: string; createdAt: number } | undefined;
  /** The Secret's self-description of `current` (empty without one). */
  annotations: Record<string, string>;
  events: EventRecord[];
  /** Every token revoked in this pass, and why (the metric). Those revoked by the end date have no event of their own: the Expired event names them. */
  revocations: { id: string; reason: RevocationReason }[];
  /** The next instant the ledger changes by itself: a scheduled rotation, a grace period's end. */
  nextChange: number | undefined;
  /** The rotation request now handled. */
  lastRotationRequest: string | undefined;
  /** A newer rotationRequest waits for the interval: when it is acted on. */
  rotationWaits: number | undefined;
  /** What was read without a valid MAC and not honoured, said for a person; undefined when nothing. */
  forged: string | undefined;
}

/** The Secret's token and its self-description, as far as they parse. */
/**
 * The Secret's token and its self-description, as far as they parse. `honoured`: the
 * description carries the operator's MAC for this ServiceUser; only then does the reconcile
 * act on it.
 */
export function readSecretToken(secret: ObservedSecret | undefined, trust: LedgerTrust, uid: string | undefined) {
  if (!secret) return undefined;
  const text = secret.data.token ?? secret.data.SM_API_KEY;
  if (!text) return undefined;
  const parsed = parseToken(text);
  const a = secret.annotations;
  const replaces = /^([a-z2-7]{16}):(\w+)$/.exec(a[tokenAnnotations.tokenReplaces] ?? '');
  const createdAt = Date.parse(a[tokenAnnotations.tokenCreatedAt] ?? '');
  const sha256 = tokenSha256(text);
  const honoured =
    parsed.ok &&
    secretTokenHonoured(
      trust,
      uid,
      { id: parsed.id, sha256, createdAt: a[tokenAnnotations.tokenCreatedAt], replaces: a[tokenAnnotations.tokenReplaces], rotationRequest: a[tokenAnnotations.tokenRotationRequest] },
      a[tokenAnnotations.tokenMac],
    );
  return {
    text,
    valid: parsed.ok,
    id: parsed.ok ? parsed.id : undefined,
    sha256,
    honoured,
    createdAt: Number.isNaN(createdAt) ? undefined : createdAt,
    replaces: replaces ? { id: replaces[1]!, reason: replaces[2] as RevocationReason } : undefined,
    rotationRequest: a[tokenAnnotations.tokenRotationRequest],
  };
}

/** The records status holds that carry a valid MAC, and those that do not. */
export function honouredRecords(recorded: TokenStatus[], trust: LedgerTrust, uid: string | undefined) {
  const honoured: TokenStatus[] = [];
  const forged: TokenStatus[] = [];
  for (const t of recorded) (tokenHonoured(trust, uid, t) ? honoured : forged).push(t);
  return { honoured, forged };
}

export function tokenLedger(input: TokenLedgerInput): TokenLedger {
  const w = startLedger(input);
  endLives(w);
  const inSecret = readSecretToken(input.secret, input.trust, input.uid);
  if (!input.expired && input.spec.enabled) matchSecret(w, inSecret);
  // One token is Active: the one the Secret holds. Another Active record can only be an old
  // one of this user put back into status (its MAC is genuine, but it was superseded).
  for (const t of live(w)) if (t.state === 'Active' && t.id !== w.current?.id) revoke(w, t, 'NotCurrent', input.now);
  const { handled, rotationWaits, every } = rotate(w, inSecret);
  const issuedNow = issueIfNeeded(w);
  bound(w);
  const { trust, uid, now } = input;
  const upcoming = [
    w.current && every !== undefined ? w.current.createdAt + every : undefined,
    ...w.tokens.filter((t) => t.state === 'Grace' && t.validUntil).map((t) => Date.parse(t.validUntil!)),
    rotationWaits,
  ].filter((t): t is number => t !== undefined && t > now);
  return {
    tokens: w.tokens.map((t) => signToken(trust.ring, uid, t)),
    current: w.current,
    annotations: selfDescription(w, inSecret, handled, issuedNow),
    events: w.events,
    revocations: w.revocations,
    nextChange: upcoming.length ? Math.min(...upcoming) : undefined,
    lastRotationRequest: handled,
    rotationWaits,
    forged: w.problems.length ? w.problems.join('; ') : undefined,
  };
}

/** One pass over the ledger: the records being changed and what the changes say. */
interface Work {
  input: TokenLedgerInput;
  tokens: TokenStatus[];
  events: EventRecord[];
  revocations: TokenLedger['revocations'];
  problems: string[];
  /** The token the Secret is to hold. */
  current: TokenLedger['current'];
  /** The token `current` replaces, and why (the Secret's self-description). */
  replaces: { id: string; reason: RevocationReason } | undefined;
}

/** 0. Only what the operator MAC'd is the ledger; anything else is reported and dropped. */
function startLedger(input: TokenLedgerInput): Work {
  const { honoured, forged } = honouredRecords(input.recorded, input.trust, input.uid);
  const problems: string[] = [];
  if (forged.length) problems.push(`status.tokens held ${forged.map((t) => `${t.id} (${t.state})`).join(', ')} without a valid MAC`);
  return { input, tokens: honoured.map(({ mac: _, ...t }) => ({ ...t })), events: [], revocations: [], problems, current: undefined, replaces: undefined };
}

const live = (w: Work) => w.tokens.filter((t) => t.state === 'Active' || t.state === 'Grace');

function revoke(w: Work, t: TokenStatus, reason: RevocationReason, at: number): void {
  t.state = 'Revoked';
  t.revokedAt = iso(at);
  t.reason = reason;
  delete t.validUntil;
  w.revocations.push({ id: t.id, reason });
  // The end date's revocations are told by one Expired event (phase.ts), not one each.
  const why = reason === 'GraceCapped' ? ` (at most ${maxGraceTokens} rotated-out tokens stay valid at once; the oldest goes first)` : '';
  if (reason !== 'Expired') w.events.push({ type: reason === 'Rotated' || reason === 'GracePeriodEnded' ? 'Normal' : 'Warning', reason: 'TokenRevoked', message: `token ${t.id} revoked: ${reason}${why}` });
}

/** 1. Grace periods that ended, tokens revoked by spec, and the end date. */
function endLives(w: Work): void {
  const { now, spec, expired, expires } = w.input;
  for (const t of w.tokens) {
    if (t.state === 'Grace' && t.validUntil && Date.parse(t.validUntil) <= now) revoke(w, t, 'GracePeriodEnded', Date.parse(t.validUntil));
  }
  const revokedIds = new Set(spec.revokedTokenIds ?? []);
  for (const t of live(w)) if (revokedIds.has(t.id)) revoke(w, t, 'RevokedBySpec', now);
  if (expired) for (const t of live(w)) revoke(w, t, 'Expired', expires!);
  if (!spec.enabled) for (const t of live(w)) revoke(w, t, 'TokenDisabled', now);
}

/** 2. The Secret's token against the record (crash safety: see the header). */
function matchSecret(w: Work, inSecret: ReturnType<typeof readSecretToken>): void {
  const { now, secret, secretName } = w.input;
  const recorded = inSecret && w.tokens.find((t) => t.sha256 === inSecret.sha256);
  if (inSecret?.valid && recorded?.state === 'Active') {
    w.current = { text: inSecret.text, id: recorded.id, createdAt: Date.parse(recorded.createdAt) };
  } else if (inSecret?.valid && !recorded && !inSecret.honoured) {
    w.problems.push(`Secret ${secretName} holds token ${inSecret.id}, which status does not record, without a valid serviceusers.dev/token-mac`);
  } else if (inSecret?.valid && !recorded) {
    finishFromSecret(w, inSecret);
  }
  if (w.current) return;
  // The Active tokens' plaintext is gone from the Secret: nobody should hold them.
  const reason: RevocationReason = !secret || !inSecret ? 'SecretDeleted' : 'SecretTampered';
  const lost = live(w).filter((t) => t.state === 'Active');
  for (const t of lost) revoke(w, t, reason, now);
  if (lost.length) w.events.push({ type: 'Warning', reason: reason === 'SecretDeleted' ? 'SecretRepaired' : 'SecretTampered', message: `Secret ${secretName} no longer holds token ${lost.map((t) => t.id).join(', ')}; revoked and replaced` });
  if (lost[0]) w.replaces = { id: lost[0].id, reason };
}

/** Finish what a crash interrupted, or record what a lost status forgot: the Secret's honoured token that status does not know. */
function finishFromSecret(w: Work, inSecret: NonNullable<ReturnType<typeof readSecretToken>>): void {
  const { now, secretName } = w.input;
  const grace = parseDuration(w.input.spec.gracePeriod) ?? 0;
  const replaced = inSecret.replaces && w.tokens.find((t) => t.id === inSecret.replaces!.id && t.state === 'Active');
  const createdAt = inSecret.createdAt ?? now;
  if (!replaced && !live(w).every((t) => t.state !== 'Active')) return;
  if (replaced) {
    if (inSecret.replaces!.reason === 'Rotated') {
      replaced.state = 'Grace';
      replaced.validUntil = iso(createdAt + grace);
    } else {
      revoke(w, replaced, inSecret.replaces!.reason, createdAt);
    }
  }
  w.tokens.push({ id: inSecret.id!, sha256: inSecret.sha256, createdAt: iso(createdAt), state: 'Active' });
  w.current = { text: inSecret.text, id: inSecret.id!, createdAt };
  w.events.push({ type: 'Normal', reason: 'TokenRecorded', message: `token ${inSecret.id} found in Secret ${secretName} and recorded` });
}

/**
 * 3. Rotation: on schedule, or asked for by a new spec.rotationRequest. A request is handled
 * once: status records it, and so does the Secret's self-description of the token issued
 * while it was current (a crash, or a stale read, before status records it does not rotate
 * twice). A request already there when the first token is issued is recorded without a
 * rotation.
 */
function rotate(w: Work, inSecret: ReturnType<typeof readSecretToken>): { handled: string | undefined; rotationWaits: number | undefined; every: number | undefined } {
  const { now, spec } = w.input;
  const { current } = w;
  const requested = spec.rotationRequest;
  let handled = w.input.lastRotationRequest;
  if (current && inSecret?.honoured && inSecret.id === current.id && requested !== undefined && inSecret.rotationRequest === requested) handled = requested;
  const every = spec.rotateEvery ? parseDuration(spec.rotateEvery) : undefined;
  const due = current && every !== undefined && current.createdAt + every <= now;
  let asked = requested !== undefined && requested !== handled;
  // At most one requested rotation an interval: a newer request waits (not recorded as
  // handled), and whatever value spec holds when the interval ends is the one acted on.
  const rotationWaits = current && asked && !due ? requestWaitsUntil(current.createdAt, now, requestIntervalMs) : undefined;
  if (rotationWaits !== undefined) asked = false;
  if (current && (due || asked)) {
    const old = w.tokens.find((t) => t.id === current.id)!;
    old.state = 'Grace';
    old.validUntil = iso(now + (parseDuration(spec.gracePeriod) ?? 0));
    w.replaces = { id: old.id, reason: 'Rotated' };
    const why = asked ? `rotation requested (rotationRequest ${JSON.stringify(requested)})` : 'rotated on schedule';
    w.events.push({ type: 'Normal', reason: 'TokenRotated', message: `token ${old.id} ${why}; it stays valid until ${old.validUntil}` });
    w.current = undefined;
  }
  if (asked) handled = requested;
  return { handled, rotationWaits, every };
}

/** 4. Issue when needed; whether a token was. */
function issueIfNeeded(w: Work): boolean {
  const { now, expired, spec, secretName } = w.input;
  if (w.current || expired || !spec.enabled) return false;
  const fresh = w.input.issue();
  w.tokens.push({ id: fresh.id, sha256: fresh.sha256, createdAt: iso(now), state: 'Active' });
  w.current = { text: fresh.token, id: fresh.id, createdAt: now };
  w.events.push({ type: 'Normal', reason: 'TokenIssued', message: `token ${fresh.id} issued into Secret ${secretName}` });
  return true;
}

/** 5. Keep the ledger bounded: at most maxGraceTokens in grace (the oldest revoked first), the live tokens and the latest revocations. */
function bound(w: Work): void {
  const inGrace = w.tokens.filter((t) => t.state === 'Grace').sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id));
  for (const t of inGrace.slice(0, Math.max(0, inGrace.length - maxGraceTokens))) revoke(w, t, 'GraceCapped', w.input.now);
  const revoked = w.tokens.filter((t) => t.state === 'Revoked').sort((a, b) => (b.revokedAt ?? '').localeCompare(a.revokedAt ?? ''));
  const keep = new Set([...live(w), ...revoked.slice(0, keptRevoked)]);
  w.tokens = w.tokens.filter((t) => keep.has(t));
}

/**
 * The Secret's self-description, so that a crash before status is written can be finished;
 * MAC'd, so that only the operator can write one the reconcile acts on. A token issued in
 * this pass carries the rotation request handled then.
 */
function selfDescription(w: Work, inSecret: ReturnType<typeof readSecretToken>, handled: string | undefined, issuedNow: boolean): Record<string, string> {
  const { current } = w;
  const annotations: Record<string, string> = {};
  if (!current) return annotations;
  const same = inSecret?.honoured && inSecret.id === current.id;
  const carried = w.replaces ?? (same ? inSecret.replaces : undefined);
  const request = issuedNow ? handled : same ? inSecret.rotationRequest : undefined;
  const description = {
    id: current.id,
    sha256: tokenSha256(current.text),
    createdAt: iso(current.createdAt),
    replaces: carried ? `${carried.id}:${carried.reason}` : undefined,
    rotationRequest: request,
  };
  annotations[tokenAnnotations.tokenCreatedAt] = description.createdAt;
  if (description.replaces) annotations[tokenAnnotations.tokenReplaces] = description.replaces;
  if (request !== undefined) annotations[tokenAnnotations.tokenRotationRequest] = request;
  annotations[tokenAnnotations.tokenMac] = describeSecretToken(w.input.trust.ring, w.input.uid, description);
  return annotations;
}
