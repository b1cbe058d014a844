// What a verification caller may learn. A verifier is bound in accounts, as any service user
// is: it learns about identities that share one of those accounts and about nothing else — an
// identity outside them is answered exactly as an unknown token is. A caller authenticated by
// a CA the platform team trusts for callers (--verify-client-ca, --tokenreview-client-ca) is
// platform-wide.
import { reportedAccounts, type Verifiable } from './directory.ts';

export type Scope = { platform: true } | { platform: false; accounts: ReadonlySet<string> };

export const platformWide: Scope = { platform: true };

/** Permissions that let a service user call verification: introspect (also check and TokenReview) and authorize. */
export const callerPermissions = { introspect: 'verification:introspect', authorize: 'verification:authorize' } as const;
export type CallerPermission = keyof typeof callerPermissions;

/**
 * The accounts in which `caller` holds the permission for `what`: its grant's accounts
 * (status.permissions), within the accounts it is itself admitted to. Undefined when it holds
 * the permission nowhere.
 */
export function scopeOf(caller: Verifiable, what: CallerPermission): Scope | undefined {
  const admitted = new Set(reportedAccounts(caller));
  const accounts = new Set(
    (caller.status?.permissions ?? []).filter((p) => p.permission === callerPermissions[what] && admitted.has(p.account)).map((p) => p.account),
  );
  return accounts.size ? { platform: false, accounts } : undefined;
}

/** The target's accounts that the caller may see (all of them for a platform-wide caller). */
export function visibleAccounts(scope: Scope, target: Verifiable): string[] {
  const all = reportedAccounts(target);
  return scope.platform ? [...all] : all.filter((a) => scope.accounts.has(a));
}

/** Whether the caller may learn anything about `target`: they share an account. */
export function sees(scope: Scope, target: Verifiable): boolean {
  return scope.platform || reportedAccounts(target).some((a) => scope.accounts.has(a));
}

export function covers(scope: Scope, account: string): boolean {
  return scope.platform || scope.accounts.has(account);
}
