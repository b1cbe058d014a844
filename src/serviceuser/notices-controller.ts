// The notices controller (SetupWithManager: its reconciler and its watch, side by side): on
// the ServiceUser's own key, beside the ServiceUser reconcile. The reconcile records what a
// status change owes spec.email in status.notices (the outbox, notices.ts) in the status
// write that makes the change; this controller reads the outbox from the cache, sends what is
// pending (notify.ts: per-notice backoff, retried through the requeue) and marks it sent under
// its own field manager: the sent entries are its own, the pending ones the reconcile's.
//
// Invariants:
//   - a notice is recorded before it is sent, and sent before it is marked: one lost in a
//     crash or a change of leader is still pending, and a new leader sends it (with the same
//     Message-ID: a crash between send and mark is the one resend);
//   - never sent twice otherwise: one key's reconciles run one at a time, and a pass reads
//     the outbox over its own last mark (expectations.ts) even before the cache shows it;
//   - nothing goes to a user who opted out (spec.notifications.email) or is being deleted.
import type { ServiceUser } from '../api/serviceuser.ts';
import { objectOf, typedServiceUser, type ServiceUserEntry } from '../api/stores.ts';
import type { Caches } from '../caches.ts';
import type { Controller } from '../controller/controller.ts';
import { OwnWrites } from '../controller/expectations.ts';
import { objectKey, type CacheReader } from '../controller/informer.ts';
import type { KubeClient } from '../controller/kube.ts';
import type { Manager } from '../controller/manager.ts';
import type { Result } from '../controller/queue.ts';
import type { NoticeStatus } from '../api/serviceuser.ts';
import { pendingNotices, sentRecord } from './notices.ts';
import { noticeDelivery, type NoticeSender } from './notify.ts';
import { applyServiceUserStatus, managerOf } from './status-apply.ts';

export interface NoticesSetup {
  sender: NoticeSender;
  /** The operator's field manager: this controller's status is applied under `<it>-notices`. */
  fieldManager: string;
  now: () => number;
  concurrency: number;
}

export function setupNotices(mgr: Manager, caches: Pick<Caches, 'serviceUsers'>, s: NoticesSetup): Controller {
  const deliver = noticeDelivery({ sender: s.sender, metrics: mgr.metrics, log: mgr.log.child({ component: 'notices' }), now: s.now });
  const reconcile = noticesReconciler({ client: mgr.client, serviceUsers: caches.serviceUsers, deliver, fieldManager: s.fieldManager, now: s.now });
  const controller = mgr.controller('notices', reconcile, s.concurrency);
  // A ServiceUser whose outbox holds a notice not yet sent; retries come back through the requeue.
  caches.serviceUsers.onChange((type, su) => {
    if (type !== 'DELETED' && noticesToSend(su).length) controller.enqueue(objectKey(su));
  });
  return controller;
}

/** Pure: what is to be sent for this user now — its pending notices, unless it opted out, is being deleted or does not parse. */
export function noticesToSend(entry: ServiceUserEntry | undefined): NoticeStatus[] {
  if (!entry?.valid || entry.metadata.deletionTimestamp || !entry.value.spec.notifications.email) return [];
  return pendingNotices(entry.value.status?.notices);
}

export interface NoticesDeps {
  client: KubeClient;
  serviceUsers: CacheReader<ServiceUserEntry>;
  deliver: (su: ServiceUser, pending: NoticeStatus[]) => Promise<{ sent: string[]; retryInMs?: number }>;
  fieldManager: string;
  now: () => number;
}

export function noticesReconciler(deps: NoticesDeps) {
  const statusManager = managerOf(deps.fieldManager, 'notices');
  const own = new OwnWrites<ServiceUserEntry>();
  return async function reconcile(key: string, signal: AbortSignal): Promise<Result> {
    const cached = own.view(key, deps.serviceUsers.get(key));
    const pending = noticesToSend(cached);
    if (!cached?.valid || !pending.length) return {};
    const su = cached.value;
    // Nothing is sent by a replica that stopped acting; once sent, it is marked sent regardless.
    signal.throwIfAborted();
    const { sent, retryInMs } = await deps.deliver(su, pending);
    if (sent.length) {
      const notices = sentRecord(su.status?.notices ?? [], sent, deps.now());
      const applied = await applyServiceUserStatus(deps.client, objectOf(cached), { notices }, statusManager);
      own.wrote(key, typedServiceUser(applied), su.metadata.resourceVersion);
    }
    return retryInMs === undefined ? {} : { requeueAfterMs: retryInMs };
  };
}
