// The caches the operator's controllers share, one per kind, each typed by its projection
// (api/stores.ts) and indexed for the lookups the reconciles and map functions make
// (api/indexes.ts). Declared once, here, so that every controller reads the same cache.
import { roleBindingIndexers, serviceUserIndexers } from './api/indexes.ts';
import { resources } from './api/resources.ts';
import {
  namespaceEntry,
  secretEntry,
  typedAccount,
  typedRole,
  typedRoleBinding,
  typedServiceUser,
  type AccountEntry,
  type NamespaceEntry,
  type RoleBindingEntry,
  type RoleEntry,
  type SecretEntry,
  type ServiceUserEntry,
} from './api/stores.ts';
import { FirstList } from './controller/first-list.ts';
import type { InformerSet } from './controller/informer.ts';
import type { Manager } from './controller/manager.ts';
import { labels } from './api/names.ts';

export interface Caches {
  serviceUsers: InformerSet<ServiceUserEntry>;
  roleBindings: InformerSet<RoleBindingEntry>;
  roles: InformerSet<RoleEntry>;
  accounts: InformerSet<AccountEntry>;
  /** Namespace labels, which Accounts select: every namespace, or each watched one by name (so RBAC can grant exactly those). */
  namespaces: InformerSet<NamespaceEntry>;
  /**
   * Our Secrets, and cert-manager's for our Certificates: both carry the owner's name label.
   * Only their changes matter (they wake the owner, whose reconcile reads the Secret live),
   * so the cache keeps metadata alone: credentials are not held twice in memory.
   */
  secrets: InformerSet<SecretEntry>;
  /** The Secrets' data as their first list carried it, for a restart's first passes (first-list.ts). */
  listedSecrets: FirstList;
}

export function operatorCaches(mgr: Manager): Caches {
  const listedSecrets = new FirstList();
  const secrets = mgr.cache({
    resource: resources.secrets,
    scope: { kind: 'watched' },
    labelSelector: labels.name,
    transform: (s) => {
      listedSecrets.offer(s);
      return secretEntry(s);
    },
  });
  void secrets.synced.then(() => listedSecrets.synced());
  return {
    serviceUsers: mgr.cache({ resource: resources.serviceUsers, scope: { kind: 'watched' }, transform: typedServiceUser, indexers: serviceUserIndexers }),
    roleBindings: mgr.cache({ resource: resources.roleBindings, scope: { kind: 'watched' }, transform: typedRoleBinding, indexers: roleBindingIndexers }),
    roles: mgr.cache({ resource: resources.roles, scope: { kind: 'cluster' }, transform: typedRole }),
    accounts: mgr.cache({ resource: resources.accounts, scope: { kind: 'cluster' }, transform: typedAccount }),
    namespaces: mgr.cache({ resource: resources.namespaces, scope: { kind: 'watched' }, fieldSelectorFor: (ns) => `metadata.name=${ns}`, transform: namespaceEntry }),
    secrets,
    listedSecrets,
  };
}
