// The ServiceUser's desired state without a cluster: every lifecycle rule, and recovery
// from a crash at each point between the Secret write and the status write.
import { describe, expect, it } from 'vitest';
import { serviceUser, serviceUserStatus, type ServiceUser } from '../../src/api/serviceuser.ts';
import { issueToken, parseToken, tokenSha256 } from '../../src/credentials/token.ts';
import { desired, maxPermissionsBytes, recordablePermissions, type Desired, type ObservedSecret, type PlacedCertificate } from '../../src/serviceuser/desired.ts';
import { verifyToken } from '../../src/verify/verdict.ts';
import { expiresAt, isExpired } from '../../src/api/expiry.ts';
import { newLedgerKey, type KeyRing } from '../../src/credentials/mac.ts';
import { tokenWithId } from '../forge.ts';
import { decideCertificate, renewalPace } from '../../src/serviceuser/certificate.ts';

const key = newLedgerKey();
const ring: KeyRing = { current: key, keys: [key] };
const t0 = Date.parse('2027-01-01T00:00:00Z');
const hour = 3_600_000;

function user(spec: Record<string, unknown> = {}, extra: Record<string, unknown> = {}): ServiceUser {
  return serviceUser.parse({
    apiVersion: 'serviceusers.dev/v1alpha1',
    kind: 'ServiceUser',
    metadata: { name: 'ci', namespace: 'team', uid: 'uid-1', generation: 1, creationTimestamp: '2026-12-01T00:00:00Z' },
    spec: { email: 'ops@example.com', accounts: ['acme'], ...spec },
    ...extra,
  });
}

/** A world to step: the ServiceUser (its status) and the Secret, as the API server holds them. */
class World {
  su: ServiceUser;
  secret: ObservedSecret | undefined;
  issued: string[] = [];
  constructor(su: ServiceUser) {
    this.su = su;
  }
  /** The certificate the reconcile would place (its issuance is tested with the CA). */
  certificate: PlacedCertificate | undefined = { material: { certPem: 'CERT', keyPem: 'KEY', caPem: 'CA' }, serialNumber: 'ab01', notBefore: 0, notAfter: Date.parse('2030-01-01'), issuer: 'CN=ca', sha256: 'ab'.repeat(32), renewalTime: undefined, issuedBy: 'BuiltInCA' };
  ring = ring;
  plan(now: number, peers: ServiceUser[] = []): Desired {
    return desired(this.su, { now, secret: this.secret, peers, permissions: [], accounts: { admitted: this.su.spec.accounts, problems: [] }, trust: { ring: this.ring }, certificate: this.su.spec.credentials.clientCertificate.enabled && !isExpired(expiresAt(this.su.spec.endDate), now) ? this.certificate : undefined }, () => {
      const t = issueToken();
      this.issued.push(t.token);
      return t;
    });
  }
  writeSecret(plan: Desired) {
    if (plan.secret) this.secret = { data: plan.secret.data as Record<string, string>, labels: plan.secret.labels, annotations: plan.secret.annotations, ownerUids: [this.su.metadata.uid!] };
  }
  writeStatus(plan: Desired) {
    this.su = { ...this.su, status: plan.status };
  }
  step(now: number): Desired {
    const plan = this.plan(now);
    this.writeSecret(plan);
    this.writeStatus(plan);
    return plan;
  }
  edit(spec: Record<string, unknown>) {
    this.su = { ...this.su, spec: serviceUser.shape.spec.parse({ ...this.su.spec, ...spec }) } as ServiceUser;
  }
  get token() {
    return this.secret?.data.token ?? this.secret?.data.SM_API_KEY;
  }
}

const states = (w: World) => Object.fromEntries((w.su.status?.tokens ?? []).map((t) => [t.id, `${t.state}${t.reason ? `:${t.reason}` : ''}`]));

describe('issuing', () => {
  it('announces a user\'s first token and certificate in one CredentialsIssued event; later issues each in their own', () => {
    const w = new World(user({ endDate: '2027-03-01' }));
    w.certificate = { ...w.certificate!, issued: 'Missing' };
    const first = w.step(t0);
    expect(first.events.map((e) => e.reason)).toEqual(['CredentialsIssued']);
    expect(first.events[0]!.message).toBe(`token ${w.secret!.data['token-id']} and client certificate ab01 (valid until 2030-01-01T00:00:00Z) issued into Secret ci-credentials`);
    // A certificate issued again later (renewal) is its own event; so is a token alone.
    w.certificate = { ...w.certificate, serialNumber: 'ab02', issued: 'Renewal' };
    expect(w.step(t0 + 1000).events.map((e) => e.reason)).toEqual(['CertificateIssued']);
    const alone = new World(user({ credentials: { clientCertificate: { enabled: false } } }));
    expect(alone.step(t0).events.map((e) => e.reason)).toEqual(['TokenIssued']);
  });

  it('issues a token into the Secret and records only its SHA-256', () => {
    const w = new World(user({ endDate: '2027-03-01' }));
    const plan = w.step(t0);
    const token = w.token!;
    expect(parseToken(token)).toEqual({ ok: true, id: w.secret!.data['token-id'] });
    expect(w.secret!.data).toMatchObject({ identity: 'serviceuser:team:ci', 'expires-at': '2027-03-01T23:59:59Z' });
    expect(plan.status.tokens).toEqual([{ id: w.secret!.data['token-id'], sha256: tokenSha256(token), createdAt: '2027-01-01T00:00:00Z', state: 'Active', mac: expect.stringMatching(/^v1\.k1\./) }]);
    expect(JSON.stringify(plan.status)).not.toContain(token);
    expect(plan.status.phase).toBe('Active');
    expect(plan.events.map((e) => e.reason)).toEqual(['TokenIssued']);
    // Next: the expiry warning, a week before the end.
    expect(plan.requeueAfterMs).toBe(Date.parse('2027-02-22T23:59:59Z') - t0);
    expect(verifyToken(w.su, token, t0)).toMatchObject({ active: true });
  });

  it('is idempotent: a second pass changes nothing and announces nothing', () => {
    const w = new World(user());
    const first = w.step(t0);
    const second = w.plan(t0 + 1000);
    expect(second.secret).toEqual(first.secret);
    expect(second.status).toEqual(first.status);
    expect(second.events).toEqual([]);
    expect(w.issued).toHaveLength(1);
  });

  it('writes the digicert-smctl layout', () => {
    const w = new World(user({ credentials: { profile: 'digicert-smctl' } }));
    w.step(t0);
    expect(Object.keys(w.secret!.data).sort()).toEqual(['SM_API_KEY', 'ca.crt', 'identity', 'tls.crt', 'tls.key']);
    expect(parseToken(w.secret!.data.SM_API_KEY!).ok).toBe(true);
  });
});

describe('a crash between the Secret write and the status write', () => {
  it('at first issue: the written token is not valid until recorded, then recorded without a new one', () => {
    const w = new World(user());
    w.writeSecret(w.plan(t0)); // crash: status never written
    expect(verifyToken(w.su, w.token!, t0)).toEqual({ active: false, reason: 'unknown token' });
    const recovered = w.step(t0 + 5000);
    expect(w.issued).toHaveLength(1);
    expect(recovered.status.tokens).toEqual([expect.objectContaining({ id: w.secret!.data['token-id'], state: 'Active', createdAt: '2027-01-01T00:00:00Z' })]);
    expect(verifyToken(w.su, w.token!, t0 + 5000)).toMatchObject({ active: true });
  });

  it('during a rotation: the rotation is completed with the grace period it began with', () => {
    const w = new World(user({ credentials: { token: { rotateEvery: '24h', gracePeriod: '2h' } } }));
    w.step(t0);
    const first = w.secret!.data['token-id']!;
    w.writeSecret(w.plan(t0 + 24 * hour)); // rotation written to the Secret, status lost
    const second = w.secret!.data['token-id']!;
    const recovered = w.step(t0 + 24 * hour + 5000);
    expect(w.issued).toHaveLength(2);
    expect(states(w)).toEqual({ [first]: 'Grace', [second]: 'Active' });
    expect(recovered.status.tokens!.find((t) => t.id === first)!.validUntil).toBe('2027-01-02T02:00:00Z');
  });
});

describe('the Secret', () => {
  it('deleted: the lost token is revoked and a new one issued', () => {
    const w = new World(user());
    w.step(t0);
    const old = w.token!;
    w.secret = undefined;
    const plan = w.step(t0 + hour);
    expect(w.token).not.toBe(old);
    expect(states(w)).toEqual({ [parseToken(old).ok ? old.split('_')[1]! : '']: 'Revoked:SecretDeleted', [w.secret!.data['token-id']!]: 'Active' });
    expect(plan.events.map((e) => e.reason)).toEqual(['TokenRevoked', 'SecretRepaired', 'TokenIssued']);
    expect(verifyToken(w.su, old, t0 + hour)).toEqual({ active: false, reason: 'token revoked' });
  });

  it('edited: a planted token is never honoured; the recorded one is revoked and replaced', () => {
    const w = new World(user());
    w.step(t0);
    const planted = issueToken().token;
    w.secret = { ...w.secret!, data: { ...w.secret!.data, token: planted } };
    w.step(t0 + hour);
    expect(w.token).not.toBe(planted);
    expect(Object.values(states(w))).toEqual(['Revoked:SecretTampered', 'Active']);
    expect(verifyToken(w.su, planted, t0 + hour)).toEqual({ active: false, reason: 'unknown token' });
  });

  it('with a typo: repaired the same way', () => {
    const w = new World(user());
    w.step(t0);
    const token = w.token!;
    w.secret = { ...w.secret!, data: { ...w.secret!.data, token: token.slice(0, -1) + (token.endsWith('a') ? 'b' : 'a') } };
    w.step(t0 + hour);
    expect(Object.values(states(w))).toEqual(['Revoked:SecretTampered', 'Active']);
  });

  it('status lost: rebuilt from the Secret, same token', () => {
    const w = new World(user());
    w.step(t0);
    const token = w.token!;
    w.su = { ...w.su, status: undefined } as ServiceUser;
    const plan = w.step(t0 + hour);
    expect(w.token).toBe(token);
    expect(w.issued).toHaveLength(1);
    expect(plan.status.tokens).toHaveLength(1);
    expect(verifyToken(w.su, token, t0 + hour)).toMatchObject({ active: true });
  });

  it('belonging to someone else is left alone and reported', () => {
    const w = new World(user());
    w.secret = { data: { password: 'x' }, labels: {}, annotations: {}, ownerUids: [], owner: 'field manager "kubectl-create"' };
    const plan = w.plan(t0);
    expect(plan.secret).toBeUndefined();
    expect(plan.status.phase).toBe('Failed');
    expect(plan.status.conditions!.find((c) => c.type === 'Stalled')).toMatchObject({ status: 'True', reason: 'SecretNotOwned' });
    expect(plan.status.conditions!.find((c) => c.type === 'Stalled')!.message).toContain('(it belongs to field manager "kubectl-create")');
  });
});

describe('end dates', () => {
  it('a user created after its end date is told nothing was issued, not that something was revoked', () => {
    const w = new World(user({ endDate: '2026-06-01' }, { metadata: { name: 'ci', namespace: 'team', uid: 'uid-1', generation: 1, creationTimestamp: '2027-01-01T00:00:00Z' } }));
    const plan = w.step(t0);
    expect(plan.status.phase).toBe('Expired');
    expect(plan.revocations).toEqual([]);
    expect(plan.events).toEqual([
      { type: 'Warning', reason: 'Expired', message: 'end date 2026-06-01T23:59:59Z had already passed when it was created (2027-01-01T00:00:00Z): no credentials were issued; extend spec.endDate to issue them' },
    ]);
  });

  it('a date ends at 23:59:59 UTC; at that instant the token is refused, revoked and wiped', () => {
    const w = new World(user({ endDate: '2027-01-01' }));
    w.step(t0);
    const token = w.token!;
    const end = Date.parse('2027-01-01T23:59:59Z');
    expect(verifyToken(w.su, token, end - 1)).toMatchObject({ active: true });
    expect(verifyToken(w.su, token, end)).toEqual({ active: false, reason: 'service user expired' });
    const plan = w.step(end);
    expect(w.secret!.data).toEqual({ identity: 'serviceuser:team:ci', 'expires-at': '2027-01-01T23:59:59Z' });
    expect(plan.status.phase).toBe('Expired');
    expect(Object.values(states(w))).toEqual(['Revoked:Expired']);
    // One event per expiry (thousands of end dates in a minute are thousands of requests each).
    expect(plan.events).toEqual([{ type: 'Warning', reason: 'Expired', message: `end date 2027-01-01T23:59:59Z passed: credentials revoked (token ${plan.status.tokens![0]!.id}) and removed from Secret ci-credentials` }]);
    expect(plan.revocations).toEqual([{ id: plan.status.tokens![0]!.id, reason: 'Expired' }]);
    expect(plan.requeueAfterMs).toBeUndefined();
  });

  it('warns expiryWarning before the end, once', () => {
    const w = new World(user({ endDate: '2027-01-02T00:00:00Z', expiryWarning: '12h' }));
    expect(w.step(t0).requeueAfterMs).toBe(12 * hour);
    const warned = w.step(t0 + 12 * hour);
    expect(warned.events.map((e) => e.reason)).toEqual(['ExpiringSoon']);
    expect(warned.status.conditions!.find((c) => c.type === 'ExpiringSoon')!.status).toBe('True');
    expect(warned.requeueAfterMs).toBe(12 * hour);
    expect(w.step(t0 + 13 * hour).events).toEqual([]);
  });

  it('extended before expiry keeps the token; after expiry issues a new one, the old stays revoked', () => {
    const w = new World(user({ endDate: '2027-01-01T12:00:00Z' }));
    w.step(t0);
    const first = w.token!;
    w.edit({ endDate: '2027-01-01T18:00:00Z' });
    w.step(t0 + hour);
    expect(w.token).toBe(first);
    w.step(t0 + 18 * hour);
    expect(w.token).toBeUndefined();
    w.edit({ endDate: '2027-06-01' });
    w.step(t0 + 20 * hour);
    expect(w.token).toBeDefined();
    expect(w.token).not.toBe(first);
    expect(verifyToken(w.su, first, t0 + 20 * hour)).toEqual({ active: false, reason: 'token revoked' });
    expect(verifyToken(w.su, w.token!, t0 + 20 * hour)).toMatchObject({ active: true });
  });
});

describe('rotation and revocation', () => {
  it('rotates on schedule; the old token is valid for the grace period, then revoked', () => {
    const w = new World(user({ credentials: { token: { rotateEvery: '24h', gracePeriod: '2h' } } }));
    expect(w.step(t0).requeueAfterMs).toBe(24 * hour);
    const first = w.token!;
    const rotated = w.step(t0 + 24 * hour);
    const second = w.token!;
    expect(second).not.toBe(first);
    expect(rotated.events.map((e) => e.reason)).toEqual(['TokenRotated', 'TokenIssued']);
    expect(rotated.requeueAfterMs).toBe(2 * hour);
    expect(verifyToken(w.su, first, t0 + 25 * hour)).toMatchObject({ active: true });
    w.step(t0 + 26 * hour);
    expect(verifyToken(w.su, first, t0 + 26 * hour)).toEqual({ active: false, reason: 'token revoked' });
    expect(Object.values(states(w))).toEqual(['Revoked:GracePeriodEnded', 'Active']);
    expect(verifyToken(w.su, second, t0 + 26 * hour)).toMatchObject({ active: true });
  });

  it('revokedTokenIds revokes one token and issues a replacement', () => {
    const w = new World(user());
    w.step(t0);
    const first = w.token!;
    const id = first.split('_')[1]!;
    w.edit({ credentials: { token: { revokedTokenIds: [id] } } });
    w.step(t0 + hour);
    expect(states(w)[id]).toBe('Revoked:RevokedBySpec');
    expect(verifyToken(w.su, first, t0 + hour)).toEqual({ active: false, reason: 'token revoked' });
    expect(verifyToken(w.su, w.token!, t0 + hour)).toMatchObject({ active: true });
  });

  it('disabled: refused but kept; enabled: valid again', () => {
    const w = new World(user());
    w.step(t0);
    const token = w.token!;
    w.edit({ disabled: true });
    const off = w.step(t0 + hour);
    expect(off.status.phase).toBe('Disabled');
    expect(w.token).toBe(token);
    expect(verifyToken(w.su, token, t0 + hour)).toEqual({ active: false, reason: 'service user disabled' });
    w.edit({ disabled: false });
    const on = w.step(t0 + 2 * hour);
    expect(on.events.map((e) => e.reason)).toEqual(['Enabled']);
    expect(verifyToken(w.su, token, t0 + 2 * hour)).toMatchObject({ active: true });
  });
});

describe('friendly names', () => {
  it('the second user with a name is Stalled and names the first', () => {
    const first = user({ friendlyName: 'Deployer' });
    const second = serviceUser.parse({ ...first, metadata: { ...first.metadata, name: 'ci2', uid: 'uid-2', creationTimestamp: '2026-12-02T00:00:00Z' } });
    const w = new World(second);
    const plan = w.plan(t0, [first, second]);
    expect(plan.status.conditions!.find((c) => c.type === 'Stalled')).toMatchObject({
      status: 'True',
      reason: 'FriendlyNameConflict',
      message: expect.stringContaining('ServiceUser ci'),
    });
    expect(plan.secret).toBeUndefined();
    // The first is not affected.
    expect(new World(first).plan(t0, [first, second]).status.phase).toBe('Active');
  });

  it('a user that already holds the name keeps it against a newcomer created in the same second', () => {
    const holder = new World(user({ friendlyName: 'Deployer' }, { metadata: { name: 'zeta', namespace: 'team', uid: 'uid-z', generation: 1, creationTimestamp: '2026-12-01T00:00:00Z' } }));
    holder.step(t0);
    const newcomer = user({ friendlyName: 'Deployer' }, { metadata: { name: 'alpha', namespace: 'team', uid: 'uid-a', generation: 1, creationTimestamp: '2026-12-01T00:00:00Z' } });
    expect(new World(newcomer).plan(t0, [holder.su, newcomer]).status.conditions!.find((c) => c.type === 'Stalled')).toMatchObject({ status: 'True', message: expect.stringContaining('ServiceUser zeta') });
    expect(holder.plan(t0 + 1000, [holder.su, newcomer]).status.phase).toBe('Active');
  });
});

describe('the ledger cannot be forged', () => {
  const condition = (plan: Desired, type: string) => plan.status.conditions!.find((c) => c.type === type);

  it('a record injected into status (attack 5) is dropped, reported and never honoured', () => {
    const w = new World(user());
    w.step(t0);
    const mine = issueToken();
    const injected = { id: mine.id, sha256: mine.sha256, createdAt: '2027-01-01T00:00:00Z', state: 'Active' as const };
    w.su = { ...w.su, status: { ...w.su.status!, tokens: [...w.su.status!.tokens!, injected] } };
    const plan = w.step(t0 + 1000);
    expect(plan.status.tokens!.map((t) => t.id)).not.toContain(mine.id);
    expect(plan.events).toContainEqual(expect.objectContaining({ type: 'Warning', reason: 'RecordForged', message: expect.stringContaining(mine.id) }));
    expect(condition(plan, 'LedgerIntact')).toMatchObject({ status: 'False', reason: 'RecordForged' });
    // The genuine token is untouched, and the condition stays False until the spec changes.
    expect(w.issued).toHaveLength(1);
    expect(condition(w.step(t0 + 2000), 'LedgerIntact')).toMatchObject({ status: 'False' });
  });

  it('a record whose fields were changed (Revoked back to Active) no longer verifies and is dropped', () => {
    const w = new World(user());
    w.step(t0);
    const first = w.token!;
    w.edit({ credentials: { token: { revokedTokenIds: [first.split('_')[1]!] } } });
    w.step(t0 + hour);
    w.edit({ credentials: { token: {} } });
    const revived = w.su.status!.tokens!.map((t) => (t.state === 'Revoked' ? { ...t, state: 'Active' as const, reason: undefined, revokedAt: undefined } : t));
    w.su = { ...w.su, status: { ...w.su.status!, tokens: revived } };
    const plan = w.step(t0 + 2 * hour);
    expect(plan.status.tokens!.map((t) => t.id)).not.toContain(first.split('_')[1]);
    expect(condition(plan, 'LedgerIntact')).toMatchObject({ status: 'False', reason: 'RecordForged' });
  });

  it('a record MACed for another ServiceUser (same fields, other uid) is not honoured', () => {
    const victim = new World(user());
    victim.step(t0);
    const other = new World(user({}, { metadata: { name: 'ci', namespace: 'team', uid: 'uid-2', generation: 1 } }));
    other.su = { ...other.su, status: victim.su.status };
    const plan = other.step(t0 + 1000);
    expect(plan.status.tokens!.map((t) => t.sha256)).not.toContain(victim.su.status!.tokens![0]!.sha256);
    expect(plan.events.map((e) => e.reason)).toContain('RecordForged');
  });

  it("a token planted in one's own Secret under another's id, claiming to replace (attack 6), is not recorded", () => {
    const w = new World(user());
    w.step(t0);
    const own = w.secret!.data['token-id']!;
    const victimId = issueToken().id;
    const text = tokenWithId(victimId).token;
    expect(parseToken(text)).toEqual({ ok: true, id: victimId });
    w.secret = { ...w.secret!, data: { ...w.secret!.data, token: text }, annotations: { ...w.secret!.annotations, 'serviceusers.dev/token-replaces': `${own}:Rotated`, 'serviceusers.dev/token-created-at': '2027-01-01T00:00:00Z' } };
    const plan = w.step(t0 + 1000);
    expect(plan.status.tokens!.map((t) => t.id)).not.toContain(victimId);
    expect(plan.events).toContainEqual(expect.objectContaining({ reason: 'RecordForged', message: expect.stringContaining('token-mac') }));
    // Treated as any edit of the Secret: the planted token is replaced.
    expect(w.token).not.toBe(text);
  });

  it('the Secret self-description MACed for this user still completes a crash mid-rotation; copied to another user it does not', () => {
    const w = new World(user({ credentials: { token: { rotateEvery: '24h', gracePeriod: '2h' } } }));
    w.step(t0);
    w.writeSecret(w.plan(t0 + 24 * hour));
    const other = new World(user({ credentials: { token: { rotateEvery: '24h', gracePeriod: '2h' } } }, { metadata: { name: 'ci', namespace: 'team', uid: 'uid-9', generation: 1 } }));
    other.step(t0);
    other.secret = { ...w.secret!, ownerUids: ['uid-9'] };
    other.step(t0 + 24 * hour + 1000);
    expect(other.su.status!.tokens!.map((t) => t.sha256)).not.toContain(tokenSha256(w.token!));
    w.step(t0 + 24 * hour + 5000);
    expect(Object.values(states(w))).toEqual(['Grace', 'Active']);
  });

  it('permissions without a valid seal are reported; the seal is remade over what the operator computed', () => {
    const w = new World(user());
    w.step(t0);
    w.su = { ...w.su, status: { ...w.su.status!, permissions: [{ account: 'acme', manager: 'x', permission: 'signatures:sign' }] } };
    const plan = w.step(t0 + 1000);
    expect(plan.status.permissions).toEqual([]);
    expect(plan.events).toContainEqual(expect.objectContaining({ reason: 'RecordForged', message: expect.stringContaining('status.seal') }));
  });

  it('a rotated key: records under the old key are honoured and re-MACed under the new one', () => {
    const w = new World(user());
    w.step(t0);
    const k2 = newLedgerKey('k2');
    w.ring = { current: k2, keys: [k2, key] };
    const plan = w.step(t0 + 1000);
    expect(plan.status.tokens!.every((t) => t.mac!.startsWith('v1.k2.'))).toBe(true);
    expect(plan.secret!.annotations['serviceusers.dev/token-mac']).toMatch(/^v1\.k2\./);
    expect(plan.events.map((e) => e.reason)).toEqual([]);
    expect(w.issued).toHaveLength(1);
    // The old key removed: everything already carries the new one.
    w.ring = { current: k2, keys: [k2] };
    expect(w.step(t0 + 2000).events).toEqual([]);
  });

  it('unsigned records are adopted only when the upgrade flag says so', () => {
    const w = new World(user());
    w.step(t0);
    const strip = () => {
      w.su = { ...w.su, status: { ...w.su.status!, tokens: w.su.status!.tokens!.map(({ mac: _, ...t }) => t), seal: undefined } };
      const { 'serviceusers.dev/token-mac': _, ...annotations } = w.secret!.annotations;
      w.secret = { ...w.secret!, annotations };
    };
    strip();
    const adopted = desired(w.su, { now: t0 + 1000, secret: w.secret, peers: [], permissions: [], accounts: { admitted: ['acme'], problems: [] }, trust: { ring, adoptUnsigned: true }, certificate: w.certificate }, () => issueToken());
    expect(adopted.events).toEqual([]);
    expect(adopted.status.tokens![0]!.mac).toMatch(/^v1\.k1\./);
    const refused = w.step(t0 + 1000);
    expect(refused.events.map((e) => e.reason)).toContain('RecordForged');
    expect(w.issued).toHaveLength(2);
  });
});


describe('rotation and renewal on demand', () => {
  it('a new rotationRequest rotates now with the grace period; the same value again does nothing', () => {
    const w = new World(user({ credentials: { token: { gracePeriod: '2h' } } }));
    w.step(t0);
    const first = w.token!;
    w.edit({ credentials: { token: { gracePeriod: '2h', rotationRequest: '2027-01-01T05:00:00Z' } } });
    const rotated = w.step(t0 + 5 * hour);
    expect(w.token).not.toBe(first);
    expect(rotated.events).toContainEqual(expect.objectContaining({ reason: 'TokenRotated', message: expect.stringContaining('rotation requested') }));
    expect(rotated.status.lastRotationRequest).toBe('2027-01-01T05:00:00Z');
    expect(verifyToken(w.su, first, t0 + 6 * hour)).toMatchObject({ active: true });
    expect(verifyToken(w.su, first, t0 + 7 * hour)).toEqual({ active: false, reason: 'grace period over' });
    const again = w.step(t0 + 5 * hour + 1000);
    expect(again.events).toEqual([]);
    expect(w.issued).toHaveLength(2);
  });

  it('a value present at creation is recorded without a rotation', () => {
    const w = new World(user({ credentials: { token: { rotationRequest: 'at-creation' } } }));
    const plan = w.step(t0);
    expect(plan.status.lastRotationRequest).toBe('at-creation');
    expect(w.issued).toHaveLength(1);
    expect(w.step(t0 + hour).events).toEqual([]);
  });

  it('a crash after the requested rotation wrote the Secret: completed, and not rotated twice', () => {
    const w = new World(user());
    w.step(t0);
    const first = w.secret!.data['token-id']!;
    w.edit({ credentials: { token: { rotationRequest: 'now' } } });
    w.writeSecret(w.plan(t0 + hour)); // status lost
    const second = w.secret!.data['token-id']!;
    const recovered = w.step(t0 + hour + 5000);
    expect(w.issued).toHaveLength(2);
    expect(states(w)).toEqual({ [first]: 'Grace', [second]: 'Active' });
    expect(recovered.status.lastRotationRequest).toBe('now');
  });

  it('a new renewalRequest renews the certificate once; the old serial is revoked as superseded', () => {
    const su = user({ credentials: { clientCertificate: { renewalRequest: 'r1' } } }, { status: { lastRenewalRequest: 'r0', certificate: { serialNumber: 'ab01', notBefore: 'x', notAfter: '2030-01-01T00:00:00Z', issuer: 'CN=ca' } } });
    const observed = { material: { certPem: '', keyPem: '', caPem: '' }, serialNumber: 'ab01', notBefore: Date.parse('2030-01-01') - 2160 * hour, notAfter: Date.parse('2030-01-01'), issuer: 'CN=ca', sha256: 'ab'.repeat(32), trusted: true, matchesSpec: true };
    const renewed = decideCertificate(su, observed, su.status!.certificate, t0, undefined);
    expect(renewed.decision).toMatchObject({ kind: 'issue', reason: 'RenewalRequested' });
    expect(renewed.revoke).toEqual([{ serialNumber: 'ab01', reason: 'superseded', notAfter: '2030-01-01T00:00:00.000Z' }]);
    // Handled: the same value does nothing.
    const handled = user({ credentials: { clientCertificate: { renewalRequest: 'r1' } } }, { status: { ...su.status, lastRenewalRequest: 'r1' } });
    expect(decideCertificate(handled, observed, su.status!.certificate, t0, undefined).decision.kind).toBe('keep');
    // A crash after the renewal: the Secret holds another certificate than status records.
    expect(decideCertificate(su, { ...observed, serialNumber: 'cd02' }, su.status!.certificate, t0, undefined).decision.kind).toBe('keep');
    // At creation there is nothing to renew; desired records the value as handled.
    expect(decideCertificate(su, undefined, undefined, t0, undefined).decision).toMatchObject({ kind: 'issue', reason: 'Missing' });
    const w = new World(user({ credentials: { clientCertificate: { renewalRequest: 'r1' } } }));
    expect(w.step(t0).status.lastRenewalRequest).toBe('r1');
  });
});

describe('requests bounded (issue 22 item 4)', () => {
  const minute = 60_000;
  const grace = (w: World) => (w.su.status?.tokens ?? []).filter((t) => t.state === 'Grace');
  const throttled = (plan: Desired) => plan.status.conditions?.find((c) => c.type === 'RequestsThrottled');

  it('rotation requests: one a minute from the current token, the newer ones coalesced and the latest acted on when the minute ends', () => {
    const w = new World(user({ credentials: { token: { gracePeriod: '2h' } } }));
    w.step(t0);
    const start = t0 + hour;
    // Forty requests, one a second: the first is acted on at once (the token is an hour old).
    const plans = Array.from({ length: 40 }, (_, i) => {
      w.edit({ credentials: { token: { gracePeriod: '2h', rotationRequest: `r${i}` } } });
      return w.step(start + i * 1000);
    });
    expect(w.issued).toHaveLength(2);
    expect(plans[0]!.status.lastRotationRequest).toBe('r0');
    expect(throttled(plans[0]!)).toBeUndefined();
    // The others wait for the minute since r0's token, recorded as not handled yet.
    const waiting = plans[39]!;
    expect(waiting.status.lastRotationRequest).toBe('r0');
    expect(throttled(waiting)).toMatchObject({ status: 'True', reason: 'RequestInterval', message: expect.stringContaining(`rotationRequest "r39" is acted on at ${new Date(start + minute).toISOString().replace('.000Z', 'Z')}`) });
    expect(waiting.requeueAfterMs).toBe(minute - 39_000);
    // One RequestThrottled event when they start waiting, not one a request.
    expect(plans.flatMap((p) => p.events).filter((e) => e.reason === 'RequestThrottled')).toHaveLength(1);
    // The minute ends: the latest value is acted on, once.
    const acted = w.step(start + minute);
    expect(w.issued).toHaveLength(3);
    expect(acted.status.lastRotationRequest).toBe('r39');
    expect(throttled(acted)).toBeUndefined();
    expect(acted.events).toContainEqual(expect.objectContaining({ reason: 'TokenRotated', message: expect.stringContaining('"r39"') }));
    expect(grace(w)).toHaveLength(2);
    expect(w.step(start + 2 * minute).events).toEqual([]);
  });

  it('a scheduled rotation due meanwhile is not held back, and it answers the waiting request', () => {
    const w = new World(user({ credentials: { token: { rotateEvery: '2h', gracePeriod: '1h' } } }));
    w.step(t0);
    w.edit({ credentials: { token: { rotateEvery: '2h', gracePeriod: '1h', rotationRequest: 'a' } } });
    w.step(t0 + 2 * hour - 30_000);
    w.edit({ credentials: { token: { rotateEvery: '2h', gracePeriod: '1h', rotationRequest: 'b' } } });
    expect(throttled(w.step(t0 + 2 * hour - 20_000))).toMatchObject({ status: 'True' });
    const due = w.step(t0 + 4 * hour - 30_000);
    expect(due.status.lastRotationRequest).toBe('b');
    expect(w.issued).toHaveLength(3);
  });

  it('at most 8 tokens in grace: the oldest is revoked (GraceCapped), and status stays far below its 512 records', () => {
    const w = new World(user({ credentials: { token: { gracePeriod: '720h' } } }));
    w.step(t0);
    const tokens = [w.token!];
    let last: Desired | undefined;
    for (let i = 1; i <= 600; i++) {
      w.edit({ credentials: { token: { gracePeriod: '720h', rotationRequest: `r${i}` } } });
      last = w.step(t0 + i * minute);
      tokens.push(w.token!);
    }
    expect(w.issued).toHaveLength(601);
    expect(grace(w)).toHaveLength(8);
    expect(w.su.status!.tokens!.length).toBeLessThanOrEqual(1 + 8 + 20);
    expect(serviceUserStatus.safeParse(w.su.status).success).toBe(true);
    expect(last!.events).toContainEqual(expect.objectContaining({ type: 'Warning', reason: 'TokenRevoked', message: expect.stringContaining('GraceCapped (at most 8 rotated-out tokens stay valid at once') }));
    expect(last!.revocations).toEqual([{ id: expect.any(String), reason: 'GraceCapped' }]);
    // The eight latest rotated-out tokens still verify; the ninth latest does not.
    const now = t0 + 600 * minute;
    for (const t of tokens.slice(-9, -1)) expect(verifyToken(w.su, t, now)).toMatchObject({ active: true });
    expect(verifyToken(w.su, tokens.at(-10)!, now)).toEqual({ active: false, reason: 'token revoked' });
  });

  const cert = (issuedAt: number) => ({ material: { certPem: '', keyPem: '', caPem: '' }, serialNumber: 'ab01', notBefore: issuedAt - minute, notAfter: issuedAt + 2160 * hour, issuer: 'CN=ca', sha256: 'ab'.repeat(32), trusted: true, matchesSpec: true });
  const asking = (request: string) =>
    user({ credentials: { clientCertificate: { renewalRequest: request } } }, { status: { lastRenewalRequest: 'r0', certificate: { serialNumber: 'ab01', notBefore: 'x', notAfter: '2030-01-01T00:00:00Z', issuer: 'CN=ca' } } });

  it('renewal requests: one a minute from the certificate\'s issue; one due by schedule is not held back', () => {
    const su = asking('r1');
    const recorded = su.status!.certificate;
    // Issued 20 s ago: the request waits 40 s (and the second X.509 times cut off), nothing is revoked meanwhile.
    expect(decideCertificate(su, cert(t0 - 20_000), recorded, t0, undefined)).toEqual({ decision: expect.objectContaining({ kind: 'keep', renewalWaits: t0 + 41_000 }), revoke: [] });
    // The minute over: renewed, the old serial superseded.
    expect(decideCertificate(su, cert(t0 - minute - 1000), recorded, t0, undefined).decision).toMatchObject({ kind: 'issue', reason: 'RenewalRequested' });
    // Its renewal time passed: renewed whatever the request's pace (the request answered with it).
    const old = cert(t0 - 20_000);
    expect(decideCertificate(su, { ...old, notAfter: t0 + hour }, recorded, t0, undefined).decision).toMatchObject({ kind: 'issue', reason: 'RenewalRequested' });
    expect(decideCertificate(asking('r0'), { ...old, notAfter: t0 + hour }, recorded, t0, undefined).decision).toMatchObject({ kind: 'issue', reason: 'Renewal' });
    // Over the CRL budget: once an hour, and the pace says why.
    const pace = renewalPace(101, 100);
    expect(pace).toEqual({ intervalMs: hour, why: expect.stringContaining('101 serials on the CRL, over the budget of 100') });
    expect(renewalPace(100, 100)).toEqual({ intervalMs: minute });
    expect(decideCertificate(su, cert(t0 - 30 * minute), recorded, t0, undefined, pace).decision).toMatchObject({ kind: 'keep', renewalWaits: t0 + 30 * minute + 1000 });
  });

  it('a waiting renewal request is not recorded as handled, says when it is acted on, and wakes the user then', () => {
    const w = new World(asking('r1'));
    w.certificate = { ...w.certificate!, renewalWaits: { until: t0 + 40_000 } };
    const plan = w.step(t0);
    expect(plan.status.lastRenewalRequest).toBe('r0');
    expect(throttled(plan)).toMatchObject({ reason: 'RequestInterval', message: expect.stringContaining('renewalRequest "r1" is acted on at 2027-01-01T00:00:40Z') });
    expect(plan.requeueAfterMs).toBe(40_000);
    w.certificate = { ...w.certificate, renewalWaits: { until: t0 + hour, why: 'over the budget' } };
    const over = w.step(t0 + 1000);
    expect(throttled(over)).toMatchObject({ reason: 'CrlBudgetExceeded', message: expect.stringContaining('(over the budget)') });
    expect(over.events).toContainEqual(expect.objectContaining({ type: 'Warning', reason: 'RequestThrottled' }));
    const { renewalWaits: _, ...placed } = w.certificate;
    w.certificate = { ...placed, serialNumber: 'cd02', issued: 'RenewalRequested' };
    const renewed = w.step(t0 + hour);
    expect(renewed.status.lastRenewalRequest).toBe('r1');
    expect(throttled(renewed)).toBeUndefined();
  });
});

describe('replaying an old record of the same user', () => {
  it('an old Active record (genuinely MACed, since rotated out) put back is revoked on the next reconcile', () => {
    const w = new World(user({ credentials: { token: { rotateEvery: '24h', gracePeriod: '1h' } } }));
    w.step(t0);
    const first = w.token!;
    const snapshot = w.su.status!.tokens![0]!;
    w.step(t0 + 24 * hour);
    w.step(t0 + 26 * hour);
    expect(verifyToken(w.su, first, t0 + 26 * hour)).toEqual({ active: false, reason: 'token revoked' });
    w.su = { ...w.su, status: { ...w.su.status!, tokens: w.su.status!.tokens!.map((t) => (t.id === snapshot.id ? snapshot : t)) } };
    const plan = w.step(t0 + 26 * hour + 1000);
    expect(states(w)[snapshot.id]).toBe('Revoked:NotCurrent');
    expect(plan.events).toContainEqual(expect.objectContaining({ reason: 'TokenRevoked', message: expect.stringContaining('NotCurrent') }));
    expect(verifyToken(w.su, first, t0 + 26 * hour + 1000)).toEqual({ active: false, reason: 'token revoked' });
    expect(w.issued).toHaveLength(2);
  });
});

describe('rotation requests and a stale status', () => {
  it('a value present at creation: a second pass that reads no status yet (a stale cache) records the token without rotating', () => {
    const w = new World(user({ credentials: { token: { rotationRequest: 'at-creation' } } }));
    w.writeSecret(w.plan(t0)); // the status write is not seen by the next pass
    const plan = w.step(t0 + 1000);
    expect(w.issued).toHaveLength(1);
    expect(plan.events.map((e) => e.reason)).toEqual(['TokenRecorded']);
    expect(plan.status.lastRotationRequest).toBe('at-creation');
  });
});

describe('a stalled user at its end date (issue 12 item 7)', () => {
  const end = Date.parse('2027-01-10T23:59:59Z');
  /** An Active user with a token and a certificate, then stalled: its friendly name is another's. */
  function stalledByName() {
    const w = new World(user({ endDate: '2027-01-10' }));
    w.step(t0);
    const token = w.token!;
    const holder = new World(user({ friendlyName: 'Deployer' }, { metadata: { name: 'other', namespace: 'team', uid: 'uid-o', generation: 1, creationTimestamp: '2026-11-01T00:00:00Z' } }));
    holder.step(t0);
    w.edit({ friendlyName: 'Deployer' });
    const stalled = w.plan(t0 + hour, [holder.su, w.su]);
    w.writeStatus(stalled);
    return { w, token, holder, stalled };
  }

  it('stays Stalled until then, keeps its records, and wakes at the end date', () => {
    const { w, token, stalled } = stalledByName();
    expect(stalled.status.phase).toBe('Failed');
    expect(stalled.secret).toBeUndefined();
    expect(stalled.status.certificate?.serialNumber).toBe('ab01');
    expect(states(w)).toEqual({ [w.secret!.data['token-id']!]: 'Active' });
    expect(stalled.requeueAfterMs).toBe(end - (t0 + hour));
    expect(verifyToken(w.su, token, t0 + hour)).toMatchObject({ active: true });
  });

  it('at the end date: tokens revoked, our Secret wiped, phase Expired, still Stalled', () => {
    const { w, token, holder } = stalledByName();
    const plan = w.plan(end, [holder.su, w.su]);
    w.writeSecret(plan);
    w.writeStatus(plan);
    expect(plan.status.phase).toBe('Expired');
    expect(plan.status.tokens!.map((t) => `${t.state}:${t.reason}`)).toEqual(['Revoked:Expired']);
    expect(plan.status.certificate).toBeUndefined();
    expect(Object.keys(plan.secret!.data).sort()).toEqual(['expires-at', 'identity']);
    // One event for the expiry, naming the token it revoked (not one per token beside it).
    expect(plan.events.map((e) => e.reason)).toEqual(['Expired']);
    expect(plan.events[0]!.message).toContain(`(token ${plan.status.tokens![0]!.id})`);
    expect(plan.revocations).toEqual([{ id: plan.status.tokens![0]!.id, reason: 'Expired' }]);
    expect(plan.status.conditions!.find((c) => c.type === 'Stalled')).toMatchObject({ status: 'True', reason: 'FriendlyNameConflict' });
    expect(plan.status.conditions!.find((c) => c.type === 'Expired')).toMatchObject({ status: 'True' });
    expect(plan.status.conditions!.find((c) => c.type === 'Ready')).toMatchObject({ status: 'False', reason: 'Expired' });
    expect(verifyToken(w.su, token, end + 1)).toMatchObject({ active: false });
    // Idempotent: nothing more to announce, and nothing to wake for.
    const again = w.plan(end + hour, [holder.su, w.su]);
    expect(again.events).toEqual([]);
    expect(again.requeueAfterMs).toBeUndefined();
    expect(again.status.tokens).toEqual(plan.status.tokens);
  });

  it('a Secret that is not ours is never written, even at the end date; the tokens are revoked all the same', () => {
    const w = new World(user({ endDate: '2027-01-10' }));
    w.step(t0);
    const token = w.token!;
    // Someone took the Secret over (the ownerReference removed): SecretNotOwned.
    w.secret = { ...w.secret!, ownerUids: ['someone-else'] };
    const stalled = w.plan(t0 + hour);
    w.writeStatus(stalled);
    expect(stalled.status.conditions!.find((c) => c.type === 'Stalled')).toMatchObject({ status: 'True', reason: 'SecretNotOwned' });
    const plan = w.plan(end);
    expect(plan.secret).toBeUndefined();
    expect(plan.status.phase).toBe('Expired');
    expect(plan.status.tokens!.map((t) => `${t.state}:${t.reason}`)).toEqual(['Revoked:Expired']);
    expect(plan.events.find((e) => e.reason === 'Expired')?.message).not.toContain('removed from Secret');
    w.writeStatus(plan);
    expect(verifyToken(w.su, token, end)).toMatchObject({ active: false });
  });
});

describe('permissions past the status cap (issue 12 item 8)', () => {
  const grants = (n: number, roles = ['r']) =>
    Array.from({ length: n }, (_, i) => ({ account: `acct-${String(Math.floor(i / 256)).padStart(2, '0')}`, manager: 'm', permission: `p-${String(i % 256).padStart(3, '0')}:use`, roles }));

  it('records the first 4,096 in order, says so in a condition and one event, and the status passes its own schema', () => {
    const all = grants(4352);
    const w = new World(user());
    const plan = desired(w.su, { now: t0, secret: undefined, peers: [], permissions: all, certificate: w.certificate, trust: { ring } }, issueToken);
    expect(plan.status.permissions).toHaveLength(4096);
    expect(plan.status.permissions).toEqual(all.slice(0, 4096));
    expect(serviceUserStatus.safeParse(plan.status).success).toBe(true);
    const condition = plan.status.conditions!.find((c) => c.type === 'PermissionsTruncated');
    expect(condition).toMatchObject({ status: 'True', reason: 'TooManyPermissions' });
    expect(condition!.message).toContain('grant 4352 permissions');
    expect(condition!.message).toContain('at most 4096');
    expect(condition!.message).toContain('the other 256 are refused');
    expect(plan.events.filter((e) => e.reason === 'PermissionsTruncated')).toHaveLength(1);
    // The token is issued and recorded all the same, and the user is Active.
    expect(plan.status.phase).toBe('Active');
    expect(plan.status.tokens).toHaveLength(1);
    // Said once: the next pass over the same world announces nothing.
    const again = desired({ ...w.su, status: plan.status }, { now: t0 + 1000, secret: { data: plan.secret!.data as Record<string, string>, labels: plan.secret!.labels, annotations: plan.secret!.annotations, ownerUids: ['uid-1'] }, peers: [], permissions: all, certificate: w.certificate, trust: { ring } }, issueToken);
    expect(again.events).toEqual([]);
  });

  it('also stays within a byte budget, and names at most 64 roles a permission', () => {
    const manyRoles = Array.from({ length: 100 }, (_, i) => `${'r'.repeat(240)}-${i}`);
    const { recorded, cut } = recordablePermissions(grants(4000, manyRoles));
    expect(recorded.length + cut).toBe(4000);
    expect(cut).toBeGreaterThan(0);
    expect(JSON.stringify(recorded).length).toBeLessThanOrEqual(maxPermissionsBytes);
    expect(recorded.every((g) => g.roles.length === 64)).toBe(true);
    expect(serviceUserStatus.safeParse({ permissions: recorded }).success).toBe(true);
  });

  it('within the cap: everything recorded, the condition False', () => {
    const plan = desired(user(), { now: t0, secret: undefined, peers: [], permissions: grants(10), certificate: undefined, trust: { ring } }, issueToken);
    expect(plan.status.permissions).toHaveLength(10);
    expect(plan.status.conditions!.find((c) => c.type === 'PermissionsTruncated')).toMatchObject({ status: 'False', reason: 'AllRecorded' });
    expect(plan.events.map((e) => e.reason)).not.toContain('PermissionsTruncated');
  });
});
