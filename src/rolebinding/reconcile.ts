// RoleBinding and Role status: whether a binding grants what it says (and if not, why),
// the accounts a binding without spec.accounts is pinned to (resolve.ts), and a Role's
// permission count for `kubectl get`. The grants themselves land in each
// ServiceUser's status.permissions, written by the ServiceUser reconcile.
import { apiVersion } from '../api/primitives.ts';
import { resources } from '../api/resources.ts';
import { objectOf, recordedConditions, recordedPins, typedRoleBinding, validValues, type AccountEntry, type NamespaceEntry, type RoleBindingEntry, type RoleEntry, type ServiceUserEntry } from '../api/stores.ts';
import { setConditions } from '../controller/conditions.ts';
import type { CacheReader } from '../controller/informer.ts';
import { resourcePath, type KubeClient } from '../controller/kube.ts';
import { OwnWrites } from '../controller/expectations.ts';
import { stableJson } from '../controller/stable-json.ts';
import type { EventRecorder } from '../controller/events.ts';
import type { Logger } from '../observability/logger.ts';
import { admitsFromCaches } from '../account/admission.ts';
import { pinAccounts, verdictOn } from './resolve.ts';

export interface BindingDeps {
  client: KubeClient;
  serviceUsers: CacheReader<ServiceUserEntry>;
  roleBindings: CacheReader<RoleBindingEntry>;
  roles: CacheReader<RoleEntry>;
  accounts: CacheReader<AccountEntry>;
  namespaces: CacheReader<NamespaceEntry>;
  events: EventRecorder;
  /** Where a Warning event is also said, at warn (a Normal one at info); absent: events only. */
  log?: Pick<Logger, 'info' | 'warn'>;
  fieldManager: string;
  now: () => number;
}

export function roleBindingReconciler(deps: BindingDeps) {
  // Our last status write per binding until the cache shows it: a reconcile woken at once
  // (by a subject's status write) would otherwise announce the same verdict twice.
  const own = new OwnWrites<RoleBindingEntry>();
  return async function reconcile(key: string, signal: AbortSignal): Promise<void> {
    const cached = own.view(key, deps.roleBindings.get(key));
    if (!cached || cached.metadata.deletionTimestamp) return;
    const raw = objectOf(cached);
    const ns = raw.metadata.namespace ?? '';
    const previous = recordedConditions(cached);
    const parsed = cached.valid ? { success: true as const, data: cached.value } : { success: false as const, problem: cached.problem };
    let ready: { status: 'True' | 'False'; reason: string; message: string };
    let subjects = '';
    let pinned: ReturnType<typeof pinAccounts>;
    if (!parsed.success) {
      // Kept as it was: a spec that fails to parse for a while must not reset the pin.
      pinned = recordedPins(cached);
      ready = { status: 'False', reason: 'InvalidSpec', message: parsed.problem };
    } else {
      subjects = parsed.data.spec.subjects.map((s) => s.name).join(', ');
      const named = validValues(parsed.data.spec.subjects.map((x) => deps.serviceUsers.get(`${ns}/${x.name}`)));
      const admits = admitsFromCaches(deps.accounts, deps.namespaces);
      // Recorded before the verdict is: the ServiceUser reconcile reads the pin from here.
      pinned = pinAccounts(parsed.data, named);
      const binding = { ...parsed.data, status: { ...parsed.data.status, pinnedAccounts: pinned } };
      const verdict = verdictOn(binding, named, validValues([deps.roles.get(parsed.data.spec.roleRef.name)]), admits);
      const [first] = verdict.problems;
      ready = first
        ? {
            status: 'False',
            reason: first.reason,
            message: `${verdict.granted.length ? `granted to ${verdict.granted.join(', ')}; ` : 'nothing granted; '}refused: ${verdict.problems.map((p) => p.message).join('; ')}`,
          }
        : { status: 'True', reason: 'Granted', message: `${parsed.data.spec.roleRef.name} granted to ${verdict.granted.join(', ')}` };
    }
    const status = {
      subjects: subjects.slice(0, 1024),
      ...(pinned ? { pinnedAccounts: pinned } : {}),
      observedGeneration: raw.metadata.generation,
      conditions: setConditions(
        previous,
        [
          { type: 'Ready', ...ready },
          { type: 'Reconciling', status: 'False', reason: 'Reconciled', message: 'verdict recorded' },
          // A refused binding waits for a change of its own or of what it names.
          { type: 'Stalled', status: ready.status === 'True' ? 'False' : 'True', reason: ready.reason, message: ready.message },
        ],
        raw.metadata.generation,
        deps.now(),
      ),
    };
    if (stableJson(status) === stableJson(raw.status ?? {})) return;
    signal.throwIfAborted();
    const written = await deps.client.apply(
      resourcePath(resources.roleBindings, ns, raw.metadata.name, 'status'),
      { apiVersion, kind: 'RoleBinding', metadata: { name: raw.metadata.name, namespace: ns }, status },
      deps.fieldManager,
    );
    own.wrote(key, typedRoleBinding(written), raw.metadata.resourceVersion);
    // Announced once the verdict is recorded; the recorder sends it off this path.
    const before = previous?.find((c) => c.type === 'Ready');
    if (ready.status === 'False' && (before?.status !== 'False' || before.message !== ready.message)) {
      deps.log?.warn({ roleBinding: key, reason: ready.reason }, ready.message);
      void deps.events.record(raw, { type: 'Warning', reason: ready.reason, message: ready.message });
    } else if (ready.status === 'True' && before?.status !== 'True') {
      deps.log?.info({ roleBinding: key, reason: 'Granted' }, ready.message);
      void deps.events.record(raw, { type: 'Normal', reason: 'Granted', message: ready.message });
    }
  };
}

export function roleReconciler(deps: BindingDeps) {
  return async function reconcile(key: string, signal: AbortSignal): Promise<void> {
    const cached = deps.roles.get(key);
    if (!cached || cached.metadata.deletionTimestamp) return;
    const raw = objectOf(cached);
    const previous = recordedConditions(cached);
    const ready = cached.valid
      ? { status: 'True' as const, reason: 'Valid', message: `${cached.value.spec.permissions.length} permissions in ${cached.value.spec.manager}` }
      : { status: 'False' as const, reason: 'InvalidSpec', message: cached.problem };
    const status = {
      ...(cached.valid ? { permissionCount: cached.value.spec.permissions.length } : {}),
      observedGeneration: raw.metadata.generation,
      conditions: setConditions(previous, [{ type: 'Ready', ...ready }], raw.metadata.generation, deps.now()),
    };
    if (stableJson(status) === stableJson(raw.status ?? {})) return;
    signal.throwIfAborted();
    await deps.client.apply(
      resourcePath(resources.roles, undefined, raw.metadata.name, 'status'),
      { apiVersion, kind: 'Role', metadata: { name: raw.metadata.name }, status },
      deps.fieldManager,
    );
  };
}
