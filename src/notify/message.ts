// The words of a notice: what happened to which ServiceUser, and what to do. Pure. A notice
// never carries a credential: it is built from names, ids, dates and serials only.
import { createHash } from 'node:crypto';
import type { NoticeKind, NoticeStatus } from '../api/serviceuser.ts';

export interface NoticeSubject {
  namespace: string;
  name: string;
  uid: string;
  friendlyName: string;
  email: string;
  secretName: string;
}

export interface Message {
  to: string;
  subject: string;
  text: string;
  /** Stable per notice: a notice re-sent after a crash carries the same Message-ID, so mail systems can drop the copy. */
  messageId: string;
}

const headline: Record<NoticeKind, string> = {
  ExpiryWarning: 'expires soon',
  Expired: 'has expired',
  Disabled: 'was disabled',
  Enabled: 'was enabled',
  TokenRotated: 'API token rotated',
  TokenRevoked: 'API token revoked',
  CertificateRenewed: 'client certificate renewed',
  CertificateRefused: 'client certificate could not be issued',
};

const todo = (s: NoticeSubject): Record<NoticeKind, string> => ({
  ExpiryWarning: `Extend spec.endDate of the ServiceUser (kubectl service-user extend ${s.name} -n ${s.namespace} --by 720h, then commit the change where it is declared), or plan its replacement before then.`,
  Expired: `If it is still needed, extend spec.endDate: new credentials are issued into Secret ${s.secretName} (the revoked ones stay revoked). Otherwise delete the ServiceUser.`,
  Disabled: `Nothing, if this was intended. To accept its credentials again, set spec.disabled to false.`,
  Enabled: 'Nothing, if this was intended.',
  TokenRotated: `Workloads that read the token from Secret ${s.secretName} pick up the new one when they re-read or restart; the old one stops working when its grace period ends.`,
  TokenRevoked: `Workloads using that token must use the current one from Secret ${s.secretName}. If you did not expect this, find out who changed the ServiceUser or its Secret.`,
  CertificateRenewed: `Workloads that load tls.crt / client.p12 from Secret ${s.secretName} pick up the new certificate when they re-read or restart.`,
  CertificateRefused: `kubectl describe serviceuser ${s.name} -n ${s.namespace} shows the Ready condition and events with the cause; fix the issuer or the spec.`,
});

export function composeNotice(notice: NoticeStatus, s: NoticeSubject): Message {
  const subject = `[service-user-operator] ${s.namespace}/${s.name}: ${headline[notice.kind]}`;
  const text = [
    `ServiceUser:   ${s.name}`,
    `Namespace:     ${s.namespace}`,
    `Friendly name: ${s.friendlyName}`,
    '',
    `What happened: ${notice.detail ?? headline[notice.kind]} (${notice.dueAt}).`,
    '',
    `What to do: ${todo(s)[notice.kind]}`,
    '',
    `You receive this because you are named in spec.email of this ServiceUser. To stop these notices for it, set spec.notifications.email to false.`,
    `kubectl get serviceuser ${s.name} -n ${s.namespace}`,
    '',
  ].join('\n');
  const id = createHash('sha256').update(`${s.uid}\u0000${notice.key}`).digest('hex').slice(0, 32);
  return { to: s.email, subject, text, messageId: `<${id}@service-user-operator>` };
}
