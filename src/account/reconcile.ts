// Account status: how many ServiceUsers it admits (for `kubectl get suacct`), and whether
// its spec is one the operator can use. The admission decisions themselves are made by the
// ServiceUser and RoleBinding reconciles (admission.ts), from the same caches.
import { accountsOf, byAccount } from '../api/indexes.ts';
import { objectOf, recordedConditions, type AccountEntry, type ServiceUserEntry } from '../api/stores.ts';
import { describeSelector } from '../api/labels.ts';
import { apiVersion } from '../api/primitives.ts';
import { resources } from '../api/resources.ts';
import { setConditions } from '../controller/conditions.ts';
import type { CacheReader } from '../controller/informer.ts';
import { resourcePath, type KubeClient } from '../controller/kube.ts';
import { stableJson } from '../controller/stable-json.ts';

export interface AccountDeps {
  client: KubeClient;
  accounts: CacheReader<AccountEntry>;
  serviceUsers: CacheReader<ServiceUserEntry>;
  fieldManager: string;
  now: () => number;
}

export function accountReconciler(deps: AccountDeps) {
  return async function reconcile(name: string, signal: AbortSignal): Promise<void> {
    const cached = deps.accounts.get(name);
    if (!cached || cached.metadata.deletionTimestamp) return;
    const raw = objectOf(cached);
    const previous = recordedConditions(cached);
    const serviceUsers = deps.serviceUsers.byIndex(byAccount, name).filter((su) => accountsOf(su).admitted.includes(name)).length;
    const ready = cached.valid
      ? {
          status: 'True' as const,
          reason: cached.value.spec.namespaceSelector ? 'Valid' : 'AdmitsNoNamespace',
          message: `admits ${describeSelector(cached.value.spec.namespaceSelector)}; ${serviceUsers} ServiceUser${serviceUsers === 1 ? '' : 's'} use it`,
        }
      : { status: 'False' as const, reason: 'InvalidSpec', message: cached.problem };
    const status = {
      serviceUsers,
      observedGeneration: raw.metadata.generation,
      conditions: setConditions(previous, [{ type: 'Ready', ...ready }], raw.metadata.generation, deps.now()),
    };
    if (stableJson(status) === stableJson(raw.status ?? {})) return;
    signal.throwIfAborted();
    await deps.client.apply(
      resourcePath(resources.accounts, undefined, name, 'status'),
      { apiVersion, kind: 'Account', metadata: { name }, status },
      deps.fieldManager,
    );
  };
}
