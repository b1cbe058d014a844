// Whether a client certificate is kept, reissued or replaced (src/serviceuser/certificate.ts)
// and what cert-manager is asked for (src/serviceuser/cert-manager.ts), without a cluster:
// the edges where a kept certificate would outlive what the spec now promises.
import { describe, expect, it } from 'vitest';
import { serviceUser, type ServiceUser } from '../../src/api/serviceuser.ts';
import { builtInRecorded, decideCertificate, type ObservedCertificate } from '../../src/serviceuser/certificate.ts';
import { issuanceMarginMs, requestedDuration } from '../../src/serviceuser/cert-manager.ts';

const t0 = Date.parse('2027-01-01T00:00:00Z');
const hour = 3_600_000;
const day = 24 * hour;

function user(spec: Record<string, unknown> = {}): ServiceUser {
  return serviceUser.parse({
    apiVersion: 'serviceusers.dev/v1alpha1',
    kind: 'ServiceUser',
    metadata: { name: 'ci', namespace: 'team', uid: 'uid-1', generation: 1 },
    spec: { email: 'ops@example.com', accounts: ['acme'], ...spec },
  });
}

/** A certificate the built-in CA issued at `issuedAt` for `lifetime` (a minute backdated, as the operator does). */
function issued(issuedAt: number, lifetime: number, extra: Partial<ObservedCertificate> = {}): ObservedCertificate {
  return {
    material: { certPem: 'CERT', keyPem: 'KEY', caPem: 'CA' },
    serialNumber: 'aa01',
    notBefore: Math.floor((issuedAt - 60_000) / 1000) * 1000,
    notAfter: Math.floor((issuedAt + lifetime) / 1000) * 1000,
    issuer: 'CN=ca',
    sha256: '00'.repeat(32),
    trusted: true,
    matchesSpec: true,
    ...extra,
  };
}

describe('a kept certificate never outlives the spec', () => {
  it('is kept while it fits the spec', () => {
    const su = user();
    const { decision, revoke } = decideCertificate(su, issued(t0, 90 * day), { serialNumber: 'aa01', notAfter: '' }, t0 + day, undefined);
    expect(decision.kind).toBe('keep');
    expect(revoke).toEqual([]);
  });

  it('an end date added (or moved earlier) before its notAfter reissues, ending at the end date, and supersedes it', () => {
    const end = t0 + 2 * day;
    const su = user({ endDate: new Date(end).toISOString() });
    const { decision, revoke } = decideCertificate(su, issued(t0, 90 * day), { serialNumber: 'aa01', notAfter: '' }, t0 + hour, end);
    expect(decision).toMatchObject({ kind: 'issue', reason: 'EndDate', notAfter: end });
    expect(revoke).toEqual([{ serialNumber: 'aa01', reason: 'superseded', notAfter: new Date(issued(t0, 90 * day).notAfter).toISOString() }]);
  });

  it('a certificate that already ends at the end date (to the second) is kept, and not renewed', () => {
    const end = t0 + 2 * day + 500;
    const su = user({ endDate: new Date(end).toISOString() });
    const { decision } = decideCertificate(su, issued(t0, end - t0), undefined, t0 + hour, end);
    expect(decision).toMatchObject({ kind: 'keep', renewalTime: undefined });
  });

  it('a lowered duration reissues with the new duration and supersedes the old one', () => {
    const su = user({ credentials: { clientCertificate: { duration: '24h', renewBefore: '1h' } } });
    const { decision, revoke } = decideCertificate(su, issued(t0, 90 * day), undefined, t0 + hour, undefined);
    expect(decision).toMatchObject({ kind: 'issue', reason: 'Duration', notAfter: t0 + hour + day });
    expect(revoke.map((r) => r.reason)).toEqual(['superseded']);
  });

  it('a certificate issued with exactly the duration (backdated a minute, whole seconds) is kept', () => {
    const su = user({ credentials: { clientCertificate: { duration: '24h', renewBefore: '1h' } } });
    expect(decideCertificate(su, issued(t0 + 999, day), undefined, t0 + hour, undefined).decision.kind).toBe('keep');
  });

  it('a certificate the ledger lists as revoked is not kept: a fresh one, the recorded one superseded, the old one left revoked', () => {
    const su = user();
    const { decision, revoke } = decideCertificate(su, issued(t0, 90 * day, { revoked: true }), { serialNumber: 'bb02', notAfter: 'x' }, t0 + day, undefined);
    expect(decision).toMatchObject({ kind: 'issue', reason: 'Revoked' });
    expect(revoke).toEqual([{ serialNumber: 'bb02', reason: 'superseded', notAfter: 'x' }]);
  });

  it("revoked in the last minute before the end date (its timer ran ahead of the reconcile's clock): not replaced, none issued", () => {
    const su = user();
    const end = t0 + day;
    const cert = issued(t0, day - 1000, { revoked: true });
    expect(decideCertificate(su, cert, { serialNumber: 'aa01', notAfter: 'x' }, end - 5, end).decision).toEqual({ kind: 'none' });
    expect(decideCertificate(su, cert, { serialNumber: 'aa01', notAfter: 'x' }, end - 59_000, end).decision).toEqual({ kind: 'none' });
    // Earlier, a revoked certificate is replaced as ever.
    expect(decideCertificate(su, cert, { serialNumber: 'aa01', notAfter: 'x' }, end - 61_000, end).decision).toMatchObject({ kind: 'issue', reason: 'Revoked' });
  });
});

describe('what cert-manager is asked for', () => {
  it('the spec duration, clipped to the end date less the issuance margin', () => {
    expect(requestedDuration(user(), t0, undefined)).toBe(2160 * hour);
    const end = t0 + 10 * day;
    expect(requestedDuration(user({ endDate: new Date(end).toISOString() }), t0, end)).toBe(10 * day - issuanceMarginMs);
  });

  it('nothing in the last hour (plus the margin): cert-manager issues nothing shorter than an hour, and never past the end date', () => {
    const end = t0 + 30 * 60_000;
    expect(requestedDuration(user({ endDate: new Date(end).toISOString() }), t0, end)).toBeUndefined();
    const justOver = t0 + hour + issuanceMarginMs + 1000;
    expect(requestedDuration(user({ endDate: new Date(justOver).toISOString() }), t0, justOver)).toBe(hour + 1000);
    expect(requestedDuration(user({ endDate: new Date(justOver - 2000).toISOString() }), t0, justOver - 2000)).toBeUndefined();
  });
});

describe('which recorded serial is the built-in CA\'s to revoke (issue 22, item 1)', () => {
  const record = { serialNumber: 'bb02', notAfter: '2027-02-01T00:00:00Z' };
  it('a record the operator made when its CA issued the certificate', () => {
    expect(builtInRecorded({ ...record, issuedBy: 'BuiltInCA' }, undefined)).toEqual(record);
  });
  it('never one placed from cert-manager, whatever issuer name it carries', () => {
    expect(builtInRecorded({ ...record, issuedBy: 'CertManager' }, undefined)).toBeUndefined();
    expect(builtInRecorded({ ...record, issuedBy: 'CertManager' }, { serialNumber: 'bb02', trusted: true })).toBeUndefined();
  });
  it('a record from before issuedBy only when the Secret holds that certificate, signed by the CA for this user', () => {
    expect(builtInRecorded(record, undefined)).toBeUndefined();
    expect(builtInRecorded(record, { serialNumber: 'bb02', trusted: false })).toBeUndefined();
    expect(builtInRecorded(record, { serialNumber: 'cc03', trusted: true })).toBeUndefined();
    expect(builtInRecorded(record, { serialNumber: 'bb02', trusted: true })).toEqual(record);
  });
});
