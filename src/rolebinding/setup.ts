// The RoleBinding and Role controllers with the manager: their reconcilers and the watches
// that wake them. A binding's verdict depends on its subjects (their accounts), the Accounts
// and namespace labels that admit them, and its Role; each change maps to the bindings it
// may affect.
import { byAccount, byNamespace, byRole, bySubject, inNamespace } from '../api/indexes.ts';
import { objectOf } from '../api/stores.ts';
import type { Caches } from '../caches.ts';
import type { Controller } from '../controller/controller.ts';
import { objectKey } from '../controller/informer.ts';
import type { Manager } from '../controller/manager.ts';
import { stableJson } from '../controller/stable-json.ts';
import { changed } from '../controller/watch.ts';
import type { EventRecorder } from '../controller/events.ts';
import { roleBindingReconciler, roleReconciler } from './reconcile.ts';

export interface BindingSetup {
  events: EventRecorder;
  fieldManager: string;
  now: () => number;
}

export function setupRoleBindings(mgr: Manager, caches: Caches, s: BindingSetup): { roleBindings: Controller; roles: Controller } {
  const deps = { ...caches, client: mgr.client, ...s };
  const roleBindings = mgr.controller('rolebinding', roleBindingReconciler({ ...deps, log: mgr.log }), 2);
  const roles = mgr.controller('role', roleReconciler(deps), 1);
  const { serviceUsers, accounts, namespaces } = caches;
  const enqueue = (bindings: { metadata: { name: string; namespace?: string | undefined } }[]) => {
    for (const b of bindings) roleBindings.enqueue(objectKey(b));
  };
  const naming = (ns: string | undefined, name: string) => caches.roleBindings.byIndex(bySubject, inNamespace(ns, name));
  caches.roleBindings.onChange((_type, b) => roleBindings.enqueue(objectKey(b)));
  // A subject's accounts decide what the binding may grant it.
  serviceUsers.onChange((_type, su) => enqueue(naming(su.metadata.namespace, su.metadata.name)));
  // An Account created, deleted or re-scoped changes what its bindings (and its users' bindings) grant.
  accounts.onChange((type, account, old) => {
    if (!changed(type, account, old, (a) => stableJson([objectOf(a).spec, a.metadata.deletionTimestamp]))) return;
    const name = account.metadata.name;
    for (const su of serviceUsers.byIndex(byAccount, name)) enqueue(naming(su.metadata.namespace, su.metadata.name));
    enqueue(caches.roleBindings.byIndex(byAccount, name));
  });
  namespaces.onChange((type, n, old) => {
    if (changed(type, n, old, (x) => stableJson(x.metadata.labels))) enqueue(caches.roleBindings.byIndex(byNamespace, n.metadata.name));
  });
  caches.roles.onChange((_type, role) => {
    roles.enqueue(objectKey(role));
    enqueue(caches.roleBindings.byIndex(byRole, role.metadata.name));
  });
  return { roleBindings, roles };
}
