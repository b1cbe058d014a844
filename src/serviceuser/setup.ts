// The ServiceUser controller with the manager (SetupWithManager): its reconciler, the
// watches that wake it (map functions: an event → the keys it may affect), and what runs
// beside it — the end-date revocations and the release of the restart's first list.
// A map function only enqueues: the reconcile reads the caches and never depends on which
// event woke it.
import { byAccount, byFriendlyName, byNamespace, byRole, friendlyNameOfEntry, inNamespace, subjectsOf } from '../api/indexes.ts';
import { objectOf } from '../api/stores.ts';
import type { TemplateKeyPolicy } from '../api/secret-template.ts';
import { readyParts, trustOf, type Authority } from '../authority/authority.ts';
import type { Caches } from '../caches.ts';
import type { Controller } from '../controller/controller.ts';
import { objectKey } from '../controller/informer.ts';
import type { Manager } from '../controller/manager.ts';
import { stableJson } from '../controller/stable-json.ts';
import { changed } from '../controller/watch.ts';
import type { IssuedToken } from '../credentials/token.ts';
import type { EventRecorder } from '../controller/events.ts';
import { labels } from '../api/names.ts';
import { EndDateRevocations } from './end-date-revocations.ts';
import { expiresAt, isExpired } from '../api/expiry.ts';
import type { NoticeSender } from './notify.ts';
import { serviceUserReconciler } from './reconcile.ts';

export interface ServiceUserSetup {
  authority: Authority;
  events: EventRecorder;
  fieldManager: string;
  now: () => number;
  issue: () => IssuedToken;
  concurrency: number;
  crlOwnerBudget: number;
  adoptUnsignedLedger?: boolean | undefined;
  templateKeys?: TemplateKeyPolicy | undefined;
  notices?: { sender: NoticeSender } | undefined;
  crashAfterSecretWrite?: boolean | undefined;
}

export function setupServiceUsers(mgr: Manager, caches: Caches, s: ServiceUserSetup): Controller {
  const { log, metrics } = mgr;
  const { authority, now } = s;
  // Certificates revoked the moment their user's end date comes, batched by the ledger,
  // whatever the reconcile backlog; the timer's view is confirmed against the cache.
  const endDates = new EndDateRevocations({
    revoke: (owner, entries) => readyParts(authority).ledger.revoke(owner, entries),
    stillDue: (owner, at) => {
      if (!mgr.acting() || authority.state().kind !== 'ready') return false;
      const su = caches.serviceUsers.get(owner);
      return !!su?.valid && isExpired(expiresAt(su.value.spec.endDate), at);
    },
    log: log.child({ component: 'end-dates' }),
    now,
  });
  mgr.add({ name: 'end-dates', stop: () => endDates.stop() });
  const reconcile = serviceUserReconciler({
    ...caches,
    client: mgr.client,
    events: s.events,
    fieldManager: s.fieldManager,
    now,
    log: log.child({ controller: 'serviceuser' }),
    metrics,
    issue: s.issue,
    authority: readyParts(authority),
    authorityState: () => {
      const state = authority.state();
      return state.kind === 'ready' ? { ready: true } : { ready: false, reason: state.reason };
    },
    trust: trustOf(authority, !!s.adoptUnsignedLedger),
    ...(s.templateKeys ? { templateKeys: s.templateKeys } : {}),
    endDates,
    crlOwnerBudget: s.crlOwnerBudget,
    ...(s.crashAfterSecretWrite ? { crashAfterSecretWrite: true } : {}),
    // The outbox is kept when notices go out (the notices controller sends them: setupNotices).
    ...(s.notices ? { notices: true } : {}),
  });
  const controller = mgr.controller('serviceuser', reconcile, s.concurrency);
  watchServiceUsers(controller, caches);
  const all = () => {
    for (const su of caches.serviceUsers.list()) controller.enqueue(objectKey(su));
  };
  // Whoever waited for the CA (a certificate, a deletion) is looked at again once it is there;
  // after a key rotation every user's records are re-MACed under the new current key.
  authority.ready.then((waited) => waited && all(), () => undefined);
  authority.onRotated(all);
  mgr.add(releaseFirstList(mgr, caches, controller, authority));
  return controller;
}

/** The ServiceUser controller's watches: each change, mapped to the users it may affect. */
function watchServiceUsers(controller: Controller, caches: Caches): void {
  const { serviceUsers, roleBindings, accounts, namespaces, secrets } = caches;
  const enqueueUser = (ns: string | undefined, name: string) => controller.enqueue(`${ns}/${name}`);
  serviceUsers.onChange((_type, su, old) => {
    const key = objectKey(su);
    controller.enqueue(key);
    // Whoever shares the friendly name it had or has may now hold it or lose it.
    for (const fn of new Set([old && friendlyNameOfEntry(old), friendlyNameOfEntry(su)])) {
      if (fn === undefined) continue;
      for (const other of serviceUsers.byIndex(byFriendlyName, inNamespace(su.metadata.namespace, fn))) if (objectKey(other) !== key) controller.enqueue(objectKey(other));
    }
  });
  // An Account created, deleted or re-scoped changes what its users get (its status, written
  // by the Account controller, changes nothing: the spec alone is compared).
  accounts.onChange((type, account, old) => {
    if (!changed(type, account, old, (a) => stableJson([objectOf(a).spec, a.metadata.deletionTimestamp]))) return;
    for (const su of serviceUsers.byIndex(byAccount, account.metadata.name)) controller.enqueue(objectKey(su));
  });
  // A namespace's labels decide which Accounts admit it: a change re-judges who lives there.
  namespaces.onChange((type, n, old) => {
    if (!changed(type, n, old, (x) => stableJson(x.metadata.labels))) return;
    for (const su of serviceUsers.byIndex(byNamespace, n.metadata.name)) controller.enqueue(objectKey(su));
  });
  secrets.onChange((_type, secret) => {
    const owner = secret.metadata.labels?.[labels.name];
    if (owner) enqueueUser(secret.metadata.namespace, owner);
  });
  // The subjects a binding names now and named before gain or lose its permissions.
  roleBindings.onChange((_type, b, old) => {
    for (const name of new Set([...(old ? subjectsOf(old) : []), ...subjectsOf(b)])) enqueueUser(b.metadata.namespace, name);
  });
  caches.roles.onChange((_type, role) => {
    for (const b of roleBindings.byIndex(byRole, role.metadata.name)) for (const name of subjectsOf(b)) enqueueUser(b.metadata.namespace, name);
  });
}

/**
 * The restart's first passes are done when, the CA loaded, the ServiceUser queue has stood
 * empty for two seconds: the Secret data the first list carried is let go then.
 */
function releaseFirstList(mgr: Manager, caches: Caches, controller: Controller, authority: Authority) {
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  void Promise.all([caches.secrets.synced, authority.ready.catch(() => undefined)]).then(() => {
    if (stopped) return caches.listedSecrets.release();
    let idle = 0;
    timer = setInterval(() => {
      const { pending, processing } = controller.queue.size;
      idle = pending || processing ? 0 : idle + 1;
      if (idle < 2 && mgr.acting()) return;
      caches.listedSecrets.release();
      clearInterval(timer);
    }, 1000);
    timer.unref();
  });
  return {
    name: 'first-list release',
    stop: () => {
      stopped = true;
      clearInterval(timer);
      caches.listedSecrets.release();
    },
  };
}
