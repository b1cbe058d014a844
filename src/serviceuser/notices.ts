// Which notices the person in spec.email is owed, decided from what a reconcile changed: the
// status before and the status it applies. Pure. Notices are recorded in status as an outbox
// (`status.notices`, keyed by what they are about) before anything is sent, so a restart or a
// new leader sends what is still owed and never sends one twice; a notice is about a change,
// never about a state that merely persists (a status rebuilt from scratch announces nothing
// that was already announced under the same key, as long as the outbox survived).
import type { NoticeKind, NoticeStatus, ServiceUserStatus } from '../api/serviceuser.ts';

/** Kept in status: every pending notice, and the latest sent ones (for de-duplication). */
const keptSent = 16;

type Condition = { type: string; status: string; reason?: string; message?: string };

const conditionOf = (s: ServiceUserStatus | undefined, type: string) => (s?.conditions as Condition[] | undefined)?.find((c) => c.type === type);
const isTrue = (s: ServiceUserStatus | undefined, type: string) => conditionOf(s, type)?.status === 'True';

/** Token revocations a person did not ask for in this reconcile, or should hear about anyway. */
const revocationsToTell = new Set(['RevokedBySpec', 'SecretDeleted', 'SecretTampered', 'TokenDisabled', 'RecordForged']);
/** Ready reasons that mean the certificate could not be had. */
const certificateRefusals = new Set(['CertificateFailed', 'IssuerNotFound', 'IssuerNotReady', 'CertManagerMissing', 'CAUnavailable']);

export function noticesDue(previous: ServiceUserStatus | undefined, next: ServiceUserStatus, generation: number | undefined, now: number): NoticeStatus[] {
  const at = new Date(now).toISOString();
  const due: NoticeStatus[] = [];
  const add = (kind: NoticeKind, about: string, detail: string) => due.push({ key: `${kind}/${about}`, kind, detail, dueAt: at });

  // The end date concerns the person in spec.email even when it is near from the start.
  if (isTrue(next, 'ExpiringSoon') && !isTrue(previous, 'ExpiringSoon')) add('ExpiryWarning', next.expiresAt ?? '', `its credentials expire at ${next.expiresAt}`);
  if (isTrue(next, 'Expired') && !isTrue(previous, 'Expired')) add('Expired', next.expiresAt ?? '', `its end date ${next.expiresAt} passed: its credentials were revoked and removed from Secret ${next.secretName}`);
  // Anything else about a ServiceUser seen for the first time was its creator's own doing.
  if (!previous?.phase) return due;
  if (isTrue(next, 'Disabled') && !isTrue(previous, 'Disabled')) add('Disabled', String(generation ?? ''), 'it was disabled (spec.disabled): verification refuses its credentials until it is enabled');
  if (!isTrue(next, 'Disabled') && isTrue(previous, 'Disabled')) add('Enabled', String(generation ?? ''), 'it was enabled again: its credentials are accepted');

  const before = new Map((previous.tokens ?? []).map((t) => [t.id, t]));
  for (const t of next.tokens ?? []) {
    const was = before.get(t.id);
    if (t.state === 'Grace' && was?.state === 'Active') add('TokenRotated', t.id, `token ${t.id} was rotated; it stays valid until ${t.validUntil}, and the new token is in Secret ${next.secretName}`);
    if (t.state === 'Revoked' && was && was.state !== 'Revoked' && revocationsToTell.has(t.reason ?? '')) add('TokenRevoked', t.id, `token ${t.id} was revoked (${t.reason})`);
  }

  const serialBefore = previous.certificate?.serialNumber;
  const serialNow = next.certificate?.serialNumber;
  if (serialBefore && serialNow && serialBefore !== serialNow) add('CertificateRenewed', serialNow, `its client certificate was renewed: serial ${serialNow}, valid until ${next.certificate?.notAfter}`);
  const ready = conditionOf(next, 'Ready');
  const readyBefore = conditionOf(previous, 'Ready');
  if (ready?.status === 'False' && certificateRefusals.has(ready.reason ?? '') && readyBefore?.reason !== ready.reason) {
    add('CertificateRefused', `${ready.reason}/${generation ?? ''}`, `its client certificate could not be issued (${ready.reason}): ${ready.message ?? ''}`);
  }
  return due;
}

/** The outbox after adding `due`: a key already recorded (sent or not) is not added again. */
export function withNotices(recorded: NoticeStatus[] | undefined, due: NoticeStatus[]): NoticeStatus[] {
  const all = [...(recorded ?? [])];
  for (const n of due) if (!all.some((r) => r.key === n.key)) all.push(n);
  const pending = all.filter((n) => !n.sentAt);
  const sent = all.filter((n) => n.sentAt).sort((a, b) => (b.sentAt ?? '').localeCompare(a.sentAt ?? '')).slice(0, keptSent);
  // Oldest pending first; the list's bound (32) is never reached by one user's changes.
  return [...sent.reverse(), ...pending].slice(-32);
}

/** The outbox with these keys marked sent at `now`. */
export function markSent(recorded: NoticeStatus[], keys: string[], now: number): NoticeStatus[] {
  const at = new Date(now).toISOString();
  return withNotices(recorded.map((n) => (keys.includes(n.key) && !n.sentAt ? { ...n, sentAt: at } : n)), []);
}

// Two controllers write the outbox, each under its own field manager (status-apply.ts), each
// entry owned whole by one of them at a time: the ServiceUser reconcile applies the pending
// entries (it adds what a status change owes), the notices controller the sent ones (it marks
// and prunes). A pending entry becomes the notices controller's when it is marked: the mark
// applies the whole entry with sentAt, and the reconcile's next write leaves it out.

/** The pending entries the ServiceUser reconcile applies: what `withNotices` keeps of the recorded and due ones, unsent. */
export function pendingOutbox(recorded: NoticeStatus[] | undefined, due: NoticeStatus[]): NoticeStatus[] {
  return withNotices(recorded, due).filter((n) => !n.sentAt);
}

/** The entries not yet sent. */
export function pendingNotices(recorded: NoticeStatus[] | undefined): NoticeStatus[] {
  return (recorded ?? []).filter((n) => !n.sentAt);
}

/**
 * The sent entries the notices controller applies once `keys` went out at `now`: the latest
 * sent ones `withNotices` keeps, and always those marked now (an entry dropped in the apply
 * that marks it would stay pending under the reconcile's ownership, and go out again).
 */
export function sentRecord(recorded: NoticeStatus[], keys: string[], now: number): NoticeStatus[] {
  const kept = new Set(markSent(recorded, keys, now).filter((n) => n.sentAt).map((n) => n.key));
  const at = new Date(now).toISOString();
  return recorded.flatMap((n) => {
    if (keys.includes(n.key) && !n.sentAt) return [{ ...n, sentAt: at }];
    return n.sentAt && kept.has(n.key) ? [n] : [];
  });
}
