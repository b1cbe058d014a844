// Delivering the notices a reconcile recorded (notices.ts decides them): each pending one is
// sent to spec.email, then marked sent in status (notices-controller.ts). A failed send is
// retried with per-notice exponential backoff (1 s doubling to 5 min) through the notices
// controller's requeue, so an SMTP outage costs no writes and no busy loop; a crash between
// send and mark re-sends with the same Message-ID.
import type { NoticeStatus, ServiceUser } from '../api/serviceuser.ts';
import type { Logger } from '../observability/logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import { composeNotice, type Message } from '../notify/message.ts';
import { friendlyNameOf, secretNameOf } from '../api/names.ts';

export interface NoticeSender {
  send(message: Message): Promise<void>;
}

const firstRetryMs = 1_000;
const maxRetryMs = 300_000;

export function noticeDelivery(deps: { sender: NoticeSender; metrics: Metrics; log: Logger; now: () => number }) {
  // Failures so far and when the next try is due, per ServiceUser uid and notice key.
  const failures = new Map<string, { count: number; nextAt: number }>();
  return async function deliver(su: ServiceUser, pending: NoticeStatus[]): Promise<{ sent: string[]; retryInMs?: number }> {
    const subject = {
      namespace: su.metadata.namespace!,
      name: su.metadata.name,
      uid: su.metadata.uid ?? '',
      friendlyName: friendlyNameOf(su),
      email: su.spec.email,
      secretName: secretNameOf(su),
    };
    const sent: string[] = [];
    let retryAt: number | undefined;
    for (const notice of pending) {
      const id = `${subject.uid}/${notice.key}`;
      const failed = failures.get(id);
      if (failed && failed.nextAt > deps.now()) {
        retryAt = Math.min(retryAt ?? Infinity, failed.nextAt);
        continue;
      }
      try {
        await deps.sender.send(composeNotice(notice, subject));
        failures.delete(id);
        sent.push(notice.key);
        deps.metrics.notices.inc({ kind: notice.kind, result: 'sent' });
        deps.log.info({ notice: notice.key, kind: notice.kind }, 'notice sent to spec.email');
      } catch (err) {
        const count = (failed?.count ?? 0) + 1;
        const nextAt = deps.now() + Math.min(maxRetryMs, firstRetryMs * 2 ** (count - 1));
        failures.set(id, { count, nextAt });
        retryAt = Math.min(retryAt ?? Infinity, nextAt);
        deps.metrics.notices.inc({ kind: notice.kind, result: 'failed' });
        deps.log.warn({ notice: notice.key, kind: notice.kind, err: err instanceof Error ? err.message : String(err), attempt: count, retryInMs: nextAt - deps.now() }, 'could not send notice; will retry');
      }
    }
    return retryAt === undefined ? { sent } : { sent, retryInMs: Math.max(0, retryAt - deps.now()) };
  };
}
