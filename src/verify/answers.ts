// The answers verification gives, as functions of the directory, the clock and what the
// caller may see (its scope): what the HTTP layer (server.ts) serialises. A refusal carries a
// reason for the log; callers of introspection get only `active: false`, as RFC 7662 asks.
// An identity outside the caller's accounts is answered exactly as an unknown token or
// identity: the caller cannot tell the two apart.
import type { Verifiable } from './directory.ts';
import { parseToken, tokenSha256 } from '../credentials/token.ts';
import { friendlyNameOf, identityOf } from '../api/names.ts';
import { expiresAt } from '../api/expiry.ts';
import { reportedAccounts, type Directory } from './directory.ts';
import { userActive, verifyToken, type Verdict } from './verdict.ts';
import { covers, sees, visibleAccounts, type Scope } from './scope.ts';

/** What the log says (never the caller) when a target is hidden by the caller's scope. */
const outOfScope = "holder outside the caller's accounts";

export function verifyPresented(directory: Directory, token: string, now: number, clientAddress?: string): { verdict: Verdict; su?: Verifiable } {
  const parsed = parseToken(token);
  if (!parsed.ok) return { verdict: { active: false, reason: parsed.reason } };
  const su = directory.byTokenId(parsed.id, tokenSha256(token));
  return { verdict: verifyToken(su, token, now, clientAddress), ...(su ? { su } : {}) };
}

/**
 * verifyPresented, seen through the caller's scope: a holder outside it gives the verdict of
 * an unknown token (whatever its own state), and `hidden` says so for the log.
 */
export function verifyInScope(directory: Directory, token: string, now: number, scope: Scope, clientAddress?: string): { verdict: Verdict; su?: Verifiable; hidden?: true } {
  const presented = verifyPresented(directory, token, now, clientAddress);
  // Judged as if no one held it: the very verdict an unknown token gets.
  if (presented.su && !sees(scope, presented.su)) return { verdict: verifyToken(undefined, token, now, clientAddress), hidden: true };
  return presented;
}

export function userInfo(su: Verifiable, accounts: string[] = reportedAccounts(su)) {
  return {
    username: identityOf(su),
    uid: su.metadata.uid ?? '',
    groups: ['serviceusers', `serviceusers:${su.metadata.namespace}`],
    extra: {
      'serviceusers.dev/friendly-name': [friendlyNameOf(su)],
      'serviceusers.dev/accounts': accounts,
    },
  };
}

/** Kubernetes webhook token authentication (TokenReview status). */
export function tokenReview(directory: Directory, token: string, now: number, scope: Scope) {
  // The TokenReview API carries no client address: tokens restricted to networks fail closed.
  const { verdict, su, hidden } = verifyInScope(directory, token, now, scope);
  if (!verdict.active || !su) return { status: { authenticated: false, error: 'invalid token' }, reason: hidden ? outOfScope : verdict.active ? 'unknown' : verdict.reason };
  return { status: { authenticated: true, user: userInfo(su, visibleAccounts(scope, su)) }, reason: 'ok', identity: identityOf(su) };
}

/** RFC 7662 introspection; accounts and permissions narrowed to what the caller may see. */
export function introspect(directory: Directory, token: string, now: number, scope: Scope, clientAddress?: string) {
  const { verdict, su, hidden } = verifyInScope(directory, token, now, scope, clientAddress);
  if (!verdict.active || !su) return { body: { active: false }, reason: hidden ? outOfScope : verdict.active ? 'unknown' : verdict.reason };
  const end = expiresAt(su.spec.endDate);
  const graceEnd = verdict.token.state === 'Grace' && verdict.token.validUntil ? Date.parse(verdict.token.validUntil) : undefined;
  const exp = [end, graceEnd].filter((x): x is number => x !== undefined);
  const accounts = visibleAccounts(scope, su);
  return {
    body: {
      active: true,
      sub: identityOf(su),
      username: identityOf(su),
      token_type: 'Bearer',
      token_id: verdict.token.id,
      iat: Math.floor(Date.parse(verdict.token.createdAt) / 1000),
      ...(exp.length ? { exp: Math.floor(Math.min(...exp) / 1000) } : {}),
      friendly_name: friendlyNameOf(su),
      accounts,
      permissions: (su.status?.permissions ?? []).filter((p) => accounts.includes(p.account)).map(({ account, manager, permission }) => ({ account, manager, permission })),
    },
    reason: 'ok',
    identity: identityOf(su),
  };
}

/**
 * May this identity (or the holder of this token) use this permission in this account?
 * `hidden` (for the log only) marks an answer the caller's scope made "unknown".
 */
export function authorize(
  directory: Directory,
  request: { token?: string; identity?: string; account: string; permission: string; clientAddress?: string },
  now: number,
  scope: Scope,
): { allowed: boolean; reason: string; identity?: string; hidden?: true } {
  // Decided before looking at the target, so it tells the caller nothing about it.
  if (!covers(scope, request.account)) return { allowed: false, reason: `account ${request.account} is outside the accounts this caller verifies in` };
  let su: Verifiable;
  if (request.token) {
    const presented = verifyInScope(directory, request.token, now, scope, request.clientAddress);
    if (!presented.verdict.active || !presented.su) return { allowed: false, reason: presented.verdict.active ? 'unknown service user' : presented.verdict.reason, ...(presented.hidden ? { hidden: true as const } : {}) };
    su = presented.su;
  } else {
    const named = directory.byIdentityName(request.identity ?? '');
    const hidden = named !== undefined && !sees(scope, named);
    // Judged as if absent: the very answer an unknown identity gets.
    const active = userActive(hidden ? undefined : named, now);
    if (!active.active) return { allowed: false, reason: active.reason, ...(hidden ? { hidden: true as const } : {}) };
    su = active.su;
  }
  if (!reportedAccounts(su).includes(request.account)) return { allowed: false, reason: `account ${request.account} is not among the service user's admitted accounts`, identity: identityOf(su) };
  const grant = (su.status?.permissions ?? []).find((p) => p.account === request.account && p.permission === request.permission);
  return grant
    ? { allowed: true, reason: `granted by ${(grant.roles ?? []).join(', ')}`, identity: identityOf(su) }
    : { allowed: false, reason: `no RoleBinding grants ${request.permission} in account ${request.account}`, identity: identityOf(su) };
}

/**
 * A caller's client certificate from the built-in CA (`issuer`: its subject; `identity`: the
 * certificate's CN): valid while its ServiceUser is, and current.
 */
export function certificateCaller(directory: Directory, caller: { serialNumber: string; issuer: string; identity: string }, now: number): { su?: Verifiable; reason: string } {
  const { serialNumber } = caller;
  const su = directory.bySerialNumber(caller.issuer, serialNumber).find((c) => identityOf(c) === caller.identity);
  const active = userActive(su, now);
  if (!active.active) return { reason: active.reason };
  if (active.su.status?.certificate?.serialNumber.toLowerCase() !== serialNumber.toLowerCase()) return { reason: 'certificate superseded' };
  return { su: active.su, reason: 'ok' };
}
