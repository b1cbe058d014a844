// Account status: how many ServiceUsers it admits (for `kubectl get suacct`), and whether
// its spec is one the operator can use. The admission decisions themselves are made by the
// ServiceUser and RoleBinding reconciles (admission.ts), from the same caches.
import { account as accountSchema } from '../api/account.ts';
import { byAccount, rawAdmittedAccounts } from '../api/indexes.ts';
import { describeSelector } from '../api/labels.ts';
import { apiVersion } from '../api/primitives.ts';
import { resources } from '../api/resources.ts';
import { setConditions, type Condition } from '../controller/conditions.ts';
import type { InformerSet } from '../controller/informer.ts';
import { resourcePath, type KubeClient } from '../controller/kube.ts';
import { stableJson } from '../controller/stable-json.ts';

export interface AccountDeps {
  client: KubeClient;
  accounts: InformerSet;
  serviceUsers: InformerSet;
  fieldManager: string;
  now: () => number;
}

export function accountReconciler(deps: AccountDeps) {
  return async function reconcile(name: string): Promise<void> {
    const raw = deps.accounts.get(name);
    if (!raw || raw.metadata.deletionTimestamp) return;
    const parsed = accountSchema.safeParse(raw);
    const previous = (raw.status as { conditions?: Condition[] } | undefined)?.conditions;
    const serviceUsers = deps.serviceUsers.byIndex(byAccount, name).filter((su) => rawAdmittedAccounts(su).includes(name)).length;
    const ready = parsed.success
      ? {
          status: 'True' as const,
          reason: parsed.data.spec.namespaceSelector ? 'Valid' : 'AdmitsNoNamespace',
          message: `admits ${describeSelector(parsed.data.spec.namespaceSelector)}; ${serviceUsers} ServiceUser${serviceUsers === 1 ? '' : 's'} use it`,
        }
      : { status: 'False' as const, reason: 'InvalidSpec', message: parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ') };
    const status = {
      serviceUsers,
      observedGeneration: raw.metadata.generation,
      conditions: setConditions(previous, [{ type: 'Ready', ...ready }], raw.metadata.generation, deps.now()),
    };
    if (stableJson(status) === stableJson(raw.status ?? {})) return;
    await deps.client.apply(
      resourcePath(resources.accounts, undefined, name, 'status'),
      { apiVersion, kind: 'Account', metadata: { name }, status },
      deps.fieldManager,
    );
  };
}
