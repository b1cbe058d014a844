// Which notices a reconcile owes spec.email, and the outbox that sends each once.
import { describe, expect, it } from 'vitest';
import type { ServiceUserStatus } from '../../src/api/serviceuser.ts';
import { composeNotice } from '../../src/notify/message.ts';
import { markSent, noticesDue, withNotices } from '../../src/serviceuser/notices.ts';

const now = Date.parse('2026-12-02T12:00:00Z');
const cond = (type: string, status: 'True' | 'False', reason = type) => ({ type, status, reason, message: '', lastTransitionTime: '2026-12-02T00:00:00Z' });
const status = (over: Partial<ServiceUserStatus> & { on?: string[] } = {}): ServiceUserStatus => {
  const { on = [], ...rest } = over;
  return {
    phase: 'Active',
    expiresAt: '2026-12-05T23:59:59Z',
    secretName: 'ci-credentials',
    conditions: ['ExpiringSoon', 'Expired', 'Disabled'].map((t) => cond(t, on.includes(t) ? 'True' : 'False')),
    tokens: [{ id: 'aaaaaaaaaaaaaaaa', sha256: 'x', createdAt: '2026-12-01T00:00:00Z', state: 'Active' }],
    ...rest,
  } as ServiceUserStatus;
};
const kinds = (prev: ServiceUserStatus | undefined, next: ServiceUserStatus) => noticesDue(prev, next, 3, now).map((n) => n.kind);

describe('noticesDue', () => {
  it('announces transitions, not states that persist', () => {
    expect(kinds(status(), status({ on: ['ExpiringSoon'] }))).toEqual(['ExpiryWarning']);
    expect(kinds(status({ on: ['ExpiringSoon'] }), status({ on: ['ExpiringSoon'] }))).toEqual([]);
    expect(kinds(status({ on: ['ExpiringSoon'] }), status({ on: ['Expired'] }))).toEqual(['Expired']);
    expect(kinds(status(), status({ on: ['Disabled'] }))).toEqual(['Disabled']);
    expect(kinds(status({ on: ['Disabled'] }), status())).toEqual(['Enabled']);
  });

  it('tells of a first sight only what concerns the end date', () => {
    expect(kinds(undefined, status({ on: ['Disabled'] }))).toEqual([]);
    expect(kinds({}, status({ on: ['ExpiringSoon'] }))).toEqual(['ExpiryWarning']);
  });

  it('tells of rotations and of revocations nobody scheduled, not of grace periods ending', () => {
    const t = (state: string, reason?: string) => ({ id: 'aaaaaaaaaaaaaaaa', sha256: 'x', createdAt: '2026-12-01T00:00:00Z', state, ...(reason ? { reason } : {}), validUntil: '2026-12-03T00:00:00Z' });
    expect(kinds(status(), status({ tokens: [t('Grace')] as never }))).toEqual(['TokenRotated']);
    expect(kinds(status(), status({ tokens: [t('Revoked', 'RevokedBySpec')] as never }))).toEqual(['TokenRevoked']);
    expect(kinds(status({ tokens: [t('Grace')] as never }), status({ tokens: [t('Revoked', 'GracePeriodEnded')] as never }))).toEqual([]);
  });

  it('tells of a renewed certificate and of one refused, once per cause', () => {
    const cert = (serialNumber: string) => ({ serialNumber, notBefore: '', notAfter: '2027-01-01T00:00:00Z', issuer: 'CN=ca' });
    expect(kinds(status({ certificate: cert('01') }), status({ certificate: cert('02') }))).toEqual(['CertificateRenewed']);
    const refused = status({ conditions: [cond('Ready', 'False', 'IssuerNotFound')] as never });
    expect(kinds(status(), refused)).toEqual(['CertificateRefused']);
    expect(kinds(refused, refused)).toEqual([]);
  });
});

describe('the outbox', () => {
  it('records a key once, keeps pending ones, and bounds the sent', () => {
    const due = noticesDue(status(), status({ on: ['Disabled'] }), 3, now);
    const once = withNotices(undefined, due);
    expect(withNotices(once, due)).toEqual(once);
    const sent = markSent(once, [once[0]!.key], now);
    expect(sent[0]!.sentAt).toBe('2026-12-02T12:00:00.000Z');
    // Sending the same key again is not possible: it is recorded.
    expect(withNotices(sent, due).filter((n) => !n.sentAt)).toEqual([]);
    let many = sent;
    for (let i = 0; i < 40; i++) many = markSent(withNotices(many, [{ key: `Disabled/${i}`, kind: 'Disabled', dueAt: '' }]), [`Disabled/${i}`], now + i);
    expect(many.length).toBeLessThanOrEqual(16);
  });
});

describe('the message', () => {
  it('names the user, says what to do, and has a Message-ID stable per notice', () => {
    const [notice] = noticesDue(status(), status({ on: ['ExpiringSoon'] }), 3, now);
    const subject = { namespace: 'ci', name: 'signer', uid: 'u1', friendlyName: 'Release signer', email: 'p@example.com', secretName: 'signer-credentials' };
    const m = composeNotice(notice!, subject);
    expect(m.to).toBe('p@example.com');
    expect(m.subject).toBe('[service-user-operator] ci/signer: expires soon');
    expect(m.text).toContain('Friendly name: Release signer');
    expect(m.text).toContain('What to do: Extend spec.endDate');
    expect(composeNotice(notice!, subject).messageId).toBe(m.messageId);
    expect(composeNotice(notice!, { ...subject, uid: 'u2' }).messageId).not.toBe(m.messageId);
  });
});
