// Verification seen through the caller's scope, without a cluster: a verifier learns only about
// identities sharing an account of its grant, and anything else is answered exactly as an
// unknown token or identity. (The same over HTTPS, against the real operator: the attack tests
// in test/integration/verification.test.ts.)
import { describe, expect, it } from 'vitest';
import { issueToken } from '../../src/credentials/token.ts';
import { authorize, introspect, tokenReview } from '../../src/verify/answers.ts';
import { Directory, reportedAccounts, type Verifiable } from '../../src/verify/directory.ts';
import { platformWide, scopeOf, sees, visibleAccounts, type Scope } from '../../src/verify/scope.ts';
import { newLedgerKey } from '../../src/credentials/mac.ts';
import { sealOf, signToken } from '../../src/authority/ledger-macs.ts';
import type { TokenStatus } from '../../src/api/serviceuser.ts';

const now = Date.parse('2027-01-01T00:00:00Z');
// Verification honours only what the operator MAC'd: the records here are signed as it signs them.
const key = newLedgerKey();
const ring = { current: key, keys: [key] };

function serviceUser(namespace: string, name: string, accounts: string[], permissions: { account: string; permission: string }[], extra: { disabled?: boolean } = {}) {
  const token = issueToken();
  const uid = `uid-${name}`;
  const record: TokenStatus = { id: token.id, sha256: token.sha256, createdAt: '2026-12-01T00:00:00Z', state: 'Active' };
  // Sealed as the operator seals them; every named account admitted (status.accounts).
  const sealed = {
    accounts,
    permissions: permissions.map((p) => ({ ...p, manager: p.permission.split(':')[0] === 'verification' ? 'service-user-operator' : 'software-trust-manager', roles: ['r'] })),
  };
  const raw = {
    apiVersion: 'serviceusers.dev/v1alpha1',
    kind: 'ServiceUser',
    metadata: { name, namespace, uid },
    spec: { email: 'ops@example.com', accounts, ...extra },
    status: { tokens: [signToken(ring, uid, record)], ...sealed, seal: sealOf(ring, uid, sealed) },
  };
  return { raw, token: token.token };
}

function world() {
  const directory = new Directory({ ring });
  const gateway = serviceUser('team-a', 'gateway', ['acme'], [
    { account: 'acme', permission: 'verification:introspect' },
    { account: 'acme', permission: 'verification:authorize' },
  ]);
  const signer = serviceUser('team-a', 'signer', ['acme', 'other'], [
    { account: 'acme', permission: 'signatures:sign' },
    { account: 'other', permission: 'signatures:sign' },
  ]);
  const victim = serviceUser('team-b', 'victim', ['beta'], [{ account: 'beta', permission: 'signatures:sign' }]);
  for (const su of [gateway, signer, victim]) directory.observe('ADDED', su.raw as never);
  const verifier = directory.byIdentityName('serviceuser:team-a:gateway')!;
  return { directory, gateway, signer, victim, introspectScope: scopeOf(verifier, 'introspect')!, authorizeScope: scopeOf(verifier, 'authorize')! };
}

describe('a verifier scoped by account', () => {
  it('holds its permission in the accounts of its grant', () => {
    const { introspectScope } = world();
    expect(introspectScope).toEqual({ platform: false, accounts: new Set(['acme']) });
  });

  it('gets for another tenant’s live token exactly what an unknown token gets', () => {
    const { directory, victim, introspectScope } = world();
    const unknown = issueToken().token;
    expect(introspect(directory, victim.token, now, introspectScope).body).toEqual({ active: false });
    expect(introspect(directory, victim.token, now, introspectScope).body).toEqual(introspect(directory, unknown, now, introspectScope).body);
    expect(tokenReview(directory, victim.token, now, introspectScope).status).toEqual(tokenReview(directory, unknown, now, introspectScope).status);
    // Platform-wide, it is live.
    expect(introspect(directory, victim.token, now, platformWide).body).toMatchObject({ active: true, accounts: ['beta'] });
  });

  it('authorize answers an unseen identity or token as an unknown one, whatever its state', () => {
    const { directory, victim, authorizeScope } = world();
    const ask = (q: { identity?: string; token?: string }, scope: Scope = authorizeScope) => {
      const { allowed, reason } = authorize(directory, { ...q, account: 'acme', permission: 'signatures:sign' }, now, scope);
      return { allowed, reason };
    };
    expect(ask({ identity: 'serviceuser:team-b:victim' })).toEqual(ask({ identity: 'serviceuser:team-b:nobody' }));
    expect(ask({ token: victim.token })).toEqual(ask({ token: issueToken().token }));
    // Disabled: a platform-wide caller is told so; the verifier is told nothing new.
    const disabled = serviceUser('team-b', 'victim', ['beta'], [], { disabled: true });
    directory.observe('MODIFIED', disabled.raw as never);
    expect(ask({ identity: 'serviceuser:team-b:victim' }, platformWide).reason).toBe('service user disabled');
    expect(ask({ identity: 'serviceuser:team-b:victim' })).toEqual({ allowed: false, reason: 'unknown service user' });
  });

  it('sees a shared user only in the shared accounts', () => {
    const { directory, signer, introspectScope, authorizeScope } = world();
    const body = introspect(directory, signer.token, now, introspectScope).body as { accounts: string[]; permissions: { account: string }[] };
    expect(body.accounts).toEqual(['acme']);
    expect(body.permissions.map((p) => p.account)).toEqual(['acme']);
    const review = tokenReview(directory, signer.token, now, introspectScope).status as { user: { extra: Record<string, string[]> } };
    expect(review.user.extra['serviceusers.dev/accounts']).toEqual(['acme']);
    // Asking about an account outside its grant is refused before the target is looked at.
    const other = authorize(directory, { identity: 'serviceuser:team-a:signer', account: 'other', permission: 'signatures:sign' }, now, authorizeScope);
    const nobody = authorize(directory, { identity: 'serviceuser:team-a:nobody', account: 'other', permission: 'signatures:sign' }, now, authorizeScope);
    expect(other).toEqual(nobody);
    expect(other.allowed).toBe(false);
    expect(authorize(directory, { identity: 'serviceuser:team-a:signer', account: 'other', permission: 'signatures:sign' }, now, platformWide).allowed).toBe(true);
  });

  it('a service user without the permission has no scope', () => {
    const { directory } = world();
    expect(scopeOf(directory.byIdentityName('serviceuser:team-a:signer')!, 'introspect')).toBeUndefined();
  });
});

describe('reported accounts', () => {
  // status.accounts (what the operator admitted and sealed), never spec.accounts.
  const base: Verifiable = {
    metadata: { name: 'x', namespace: 'team-a' },
    spec: { accounts: ['acme', 'beta'], disabled: false, credentials: { token: { enabled: true } } } as Verifiable['spec'],
  };
  const admitted: Verifiable = { ...base, status: { accounts: ['acme'], permissions: [{ account: 'acme', manager: 'service-user-operator', permission: 'verification:introspect' }, { account: 'beta', manager: 'service-user-operator', permission: 'verification:introspect' }] } };

  it('are status.accounts when recorded, else none: spec.accounts is what anyone who edits the ServiceUser writes', () => {
    expect(reportedAccounts(base)).toEqual([]);
    expect(reportedAccounts(admitted)).toEqual(['acme']);
  });

  it('bound what a verifier holds and what a target shows', () => {
    // A grant in an account not admitted gives no scope there.
    expect(scopeOf(admitted, 'introspect')).toEqual({ platform: false, accounts: new Set(['acme']) });
    const betaVerifier: Scope = { platform: false, accounts: new Set(['beta']) };
    expect(sees(betaVerifier, admitted)).toBe(false);
    expect(visibleAccounts(platformWide, admitted)).toEqual(['acme']);
  });
});
