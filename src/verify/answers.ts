// The answers verification gives, as functions of the directory and the clock: what the
// HTTP layer (server.ts) serialises. A refusal carries a reason for the log; callers of
// introspection get only `active: false`, as RFC 7662 asks.
import type { Verifiable } from './directory.ts';
import { parseToken, tokenSha256 } from '../credentials/token.ts';
import { friendlyNameOf, identityOf } from '../serviceuser/desired.ts';
import { expiresAt } from '../serviceuser/expiry.ts';
import type { Directory } from './directory.ts';
import { userActive, verifyToken, type Verdict } from './verdict.ts';

export function verifyPresented(directory: Directory, token: string, now: number, clientAddress?: string): { verdict: Verdict; su?: Verifiable } {
  const parsed = parseToken(token);
  if (!parsed.ok) return { verdict: { active: false, reason: parsed.reason } };
  const su = directory.byTokenId(parsed.id, tokenSha256(token));
  return { verdict: verifyToken(su, token, now, clientAddress), ...(su ? { su } : {}) };
}

export function userInfo(su: Verifiable) {
  return {
    username: identityOf(su),
    uid: su.metadata.uid ?? '',
    groups: ['serviceusers', `serviceusers:${su.metadata.namespace}`],
    extra: {
      'serviceusers.dev/friendly-name': [friendlyNameOf(su)],
      'serviceusers.dev/accounts': [...su.spec.accounts],
    },
  };
}

/** Kubernetes webhook token authentication (TokenReview status). */
export function tokenReview(directory: Directory, token: string, now: number) {
  // The TokenReview API carries no client address: tokens restricted to networks fail closed.
  const { verdict, su } = verifyPresented(directory, token, now);
  if (!verdict.active || !su) return { status: { authenticated: false, error: 'invalid token' }, reason: verdict.active ? 'unknown' : verdict.reason };
  return { status: { authenticated: true, user: userInfo(su) }, reason: 'ok', identity: identityOf(su) };
}

/** RFC 7662 introspection. */
export function introspect(directory: Directory, token: string, now: number, clientAddress?: string) {
  const { verdict, su } = verifyPresented(directory, token, now, clientAddress);
  if (!verdict.active || !su) return { body: { active: false }, reason: verdict.active ? 'unknown' : verdict.reason };
  const end = expiresAt(su.spec.endDate);
  const graceEnd = verdict.token.state === 'Grace' && verdict.token.validUntil ? Date.parse(verdict.token.validUntil) : undefined;
  const exp = [end, graceEnd].filter((x): x is number => x !== undefined);
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
      accounts: su.spec.accounts,
      permissions: (su.status?.permissions ?? []).map(({ account, manager, permission }) => ({ account, manager, permission })),
    },
    reason: 'ok',
    identity: identityOf(su),
  };
}

/** May this identity (or the holder of this token) use this permission in this account? */
export function authorize(
  directory: Directory,
  request: { token?: string; identity?: string; account: string; permission: string; clientAddress?: string },
  now: number,
) {
  let su: Verifiable | undefined;
  if (request.token) {
    const presented = verifyPresented(directory, request.token, now, request.clientAddress);
    if (!presented.verdict.active) return { allowed: false, reason: presented.verdict.reason };
    su = presented.su;
  } else {
    su = directory.byIdentityName(request.identity ?? '');
    const active = userActive(su, now);
    if (!active.active) return { allowed: false, reason: active.reason };
  }
  if (!su!.spec.accounts.includes(request.account)) return { allowed: false, reason: `account ${request.account} is not among the service user's accounts`, identity: identityOf(su!) };
  const grant = (su!.status?.permissions ?? []).find((p) => p.account === request.account && p.permission === request.permission);
  return grant
    ? { allowed: true, reason: `granted by ${(grant.roles ?? []).join(', ')}`, identity: identityOf(su!) }
    : { allowed: false, reason: `no RoleBinding grants ${request.permission} in account ${request.account}`, identity: identityOf(su!) };
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
  if (su!.status?.certificate?.serialNumber.toLowerCase() !== serialNumber.toLowerCase()) return { reason: 'certificate superseded' };
  return { su: su!, reason: 'ok' };
}

/** Permissions that let a service user call introspection and authorization. */
export const callerPermissions = { introspect: 'verification:introspect', authorize: 'verification:authorize' } as const;

export function mayCall(su: Verifiable, what: keyof typeof callerPermissions): boolean {
  return (su.status?.permissions ?? []).some((p) => p.permission === callerPermissions[what]);
}
