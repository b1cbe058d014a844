// The ServiceUser's desired state without a cluster: every lifecycle rule, and recovery
// from a crash at each point between the Secret write and the status write.
import { describe, expect, it } from 'vitest';
import { serviceUser, type ServiceUser } from '../../src/api/serviceuser.ts';
import { issueToken, parseToken, tokenSha256 } from '../../src/credentials/token.ts';
import { desired, type Desired, type ObservedSecret, type PlacedCertificate } from '../../src/serviceuser/desired.ts';
import { verifyToken } from '../../src/verify/verdict.ts';
import { expiresAt, isExpired } from '../../src/serviceuser/expiry.ts';

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
  certificate: PlacedCertificate | undefined = { material: { certPem: 'CERT', keyPem: 'KEY', caPem: 'CA' }, serialNumber: 'ab01', notBefore: 0, notAfter: Date.parse('2030-01-01'), issuer: 'CN=ca', renewalTime: undefined };
  plan(now: number, peers: ServiceUser[] = []): Desired {
    return desired(this.su, { now, secret: this.secret, peers, permissions: [], accounts: { admitted: this.su.spec.accounts, problems: [] }, certificate: this.su.spec.credentials.clientCertificate.enabled && !isExpired(expiresAt(this.su.spec.endDate), now) ? this.certificate : undefined }, () => {
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
  it('issues a token into the Secret and records only its SHA-256', () => {
    const w = new World(user({ endDate: '2027-03-01' }));
    const plan = w.step(t0);
    const token = w.token!;
    expect(parseToken(token)).toEqual({ ok: true, id: w.secret!.data['token-id'] });
    expect(w.secret!.data).toMatchObject({ identity: 'serviceuser:team:ci', 'expires-at': '2027-03-01T23:59:59Z' });
    expect(plan.status.tokens).toEqual([{ id: w.secret!.data['token-id'], sha256: tokenSha256(token), createdAt: '2027-01-01T00:00:00Z', state: 'Active' }]);
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
    w.secret = { data: { password: 'x' }, labels: {}, annotations: {}, ownerUids: [] };
    const plan = w.plan(t0);
    expect(plan.secret).toBeUndefined();
    expect(plan.status.phase).toBe('Failed');
    expect(plan.status.conditions!.find((c) => c.type === 'Stalled')).toMatchObject({ status: 'True', reason: 'SecretNotOwned' });
  });
});

describe('end dates', () => {
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
    expect(plan.events.map((e) => e.reason)).toContain('Expired');
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
