// The restarts controller (SetupWithManager: its reconciler and its watch, side by side): on
// the ServiceUser's own key, beside the ServiceUser reconcile, as cert-manager splits a
// Certificate's trigger, issuing and readiness controllers. It reads the ServiceUser from the
// cache — the digest of the credentials its status records — and annotates the restart
// targets whose pod template carries another (restarts.ts). It owns one thing in status, the
// RestartTargetsReady condition, applied under its own field manager: the ServiceUser
// reconcile's applies never carry it and never remove it (conditions are a map list keyed by
// type), nor do this controller's touch anything else.
//
// Invariants:
//   - a target is annotated only with a digest status already records: the ServiceUser
//     reconcile writes it in the status write that records the credentials, after the Secret,
//     so new pods start with credentials verification honours;
//   - status-only changes never restart anything: the digest covers the credential keys alone;
//   - a target must already read the Secret (restarts.ts judgeTargets), and a user being
//     deleted is left alone.
import type { ServiceUser } from '../api/serviceuser.ts';
import { objectOf, recordedConditions, typedServiceUser, type ServiceUserEntry } from '../api/stores.ts';
import type { Caches } from '../caches.ts';
import type { Condition } from '../controller/conditions.ts';
import type { Controller } from '../controller/controller.ts';
import type { EventRecorder } from '../controller/events.ts';
import { OwnWrites } from '../controller/expectations.ts';
import { objectKey, type CacheReader } from '../controller/informer.ts';
import type { KubeClient, KubeObject } from '../controller/kube.ts';
import type { Manager } from '../controller/manager.ts';
import type { Logger } from '../observability/logger.ts';
import type { EventRecord } from './desired.ts';
import { annotateTargets, readTargets, restartCondition, restartIntent, restartsCondition, sameCondition } from './restarts.ts';
import { applyServiceUserStatus, managerOf } from './status-apply.ts';

export interface RestartsSetup {
  events: EventRecorder;
  /** The operator's field manager: the workloads' annotation is applied under it, this controller's status under `<it>-restarts`. */
  fieldManager: string;
  now: () => number;
  concurrency: number;
}

export function setupRestarts(mgr: Manager, caches: Pick<Caches, 'serviceUsers'>, s: RestartsSetup): Controller {
  const reconcile = restartsReconciler({ client: mgr.client, serviceUsers: caches.serviceUsers, events: s.events, fieldManager: s.fieldManager, now: s.now, log: mgr.log.child({ controller: 'restarts' }) });
  const controller = mgr.controller('restarts', reconcile, s.concurrency);
  // Every change of a ServiceUser: its targets, the digest and Secret name its status records,
  // its generation, its deletion. Workloads are not watched: the condition is refreshed when
  // the user changes, as it was when the ServiceUser reconcile judged it.
  caches.serviceUsers.onChange((_type, su) => controller.enqueue(objectKey(su)));
  return controller;
}

export interface RestartsDeps {
  client: KubeClient;
  serviceUsers: CacheReader<ServiceUserEntry>;
  events: Pick<EventRecorder, 'record' | 'whenRoom'>;
  fieldManager: string;
  now: () => number;
  log: Logger;
}

export function restartsReconciler(deps: RestartsDeps) {
  const { client } = deps;
  const statusManager = managerOf(deps.fieldManager, 'restarts');
  // Our condition write, until the cache shows it: the pass its own write wakes reads it.
  const own = new OwnWrites<ServiceUserEntry>();
  const writeCondition = async (key: string, raw: KubeObject, condition: Condition | undefined) => {
    // Without the condition, the apply releases it: nothing else owns it, so it goes.
    const applied = await applyServiceUserStatus(client, raw, condition ? { conditions: [condition] } : {}, statusManager);
    own.wrote(key, typedServiceUser(applied), raw.metadata.resourceVersion);
  };
  return async function reconcile(key: string, signal: AbortSignal): Promise<void> {
    const cached = own.view(key, deps.serviceUsers.get(key));
    if (!cached) return;
    const raw = objectOf(cached);
    const su: ServiceUser | undefined = cached.valid ? cached.value : undefined;
    const intent = restartIntent(su, !!raw.metadata.deletionTimestamp);
    if (!intent) return;
    // As status has it, of a spec that parses or not (a status that does not parse: none).
    const previous = recordedConditions(cached)?.find((c) => c.type === restartsCondition);
    if (intent.kind === 'none') {
      signal.throwIfAborted();
      if (previous) await writeCondition(key, raw, undefined);
      return;
    }
    const ns = raw.metadata.namespace!;
    const states = await readTargets(client, ns, intent.targets, intent.secretName, intent.digest);
    const { condition, events } = restartCondition(states, intent.secretName, previous, raw.metadata.generation, deps.now());
    // Observed and judged: a replica that stopped acting meanwhile writes nothing.
    signal.throwIfAborted();
    if (!sameCondition(previous, condition)) await writeCondition(key, raw, condition);
    // After the condition, as the ServiceUser reconcile applied them after its status write.
    events.push(...(await annotateTargets(client, deps.fieldManager, ns, states, intent.secretName, intent.digest)));
    await tell(deps, raw, events, deps.log.child({ serviceUser: key }));
  };
}

async function tell(deps: Pick<RestartsDeps, 'events'>, raw: KubeObject, events: EventRecord[], log: Logger): Promise<void> {
  for (const e of events) {
    log[e.type === 'Warning' ? 'warn' : 'info']({ reason: e.reason, type: e.type }, e.message);
    await deps.events.whenRoom();
    void deps.events.record(raw, e);
  }
}
