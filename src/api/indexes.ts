// The cache lookups the operator makes, as informer indexes over the typed caches (stores.ts;
// an object that does not parse is indexed by what its raw form names): who uses
// a friendly name, which RoleBindings name a ServiceUser, which name a Role, which objects
// name an Account or live in a namespace (whose labels Accounts select). With them a
// reconcile or an event handler reads the few objects that matter, not its whole namespace
// (at 10,000 ServiceUsers a namespace scan per event is the difference between seconds and
// minutes after a restart).
import { objectOf, type RoleBindingEntry, type ServiceUserEntry } from './stores.ts';

interface Raw {
  metadata: { name: string; namespace?: string };
  spec?: unknown;
}

type BindingSpec = { subjects?: { name?: string }[]; roleRef?: { name?: string }; accounts?: string[] } | undefined;

/** A raw ServiceUser's friendly name, defaulting to its name as the schema says. */
export const rawFriendlyName = (o: Raw) => (o.spec as { friendlyName?: string } | undefined)?.friendlyName ?? o.metadata.name;
/** The ServiceUser names a raw RoleBinding lists as subjects. */
export const rawSubjects = (o: Raw) => ((o.spec as BindingSpec)?.subjects ?? []).map((s) => s.name ?? '');

export const byFriendlyName = 'friendlyName';
export const bySubject = 'subject';
export const byRole = 'role';
export const byAccount = 'account';
export const byNamespace = 'namespace';

/** The accounts a raw ServiceUser or RoleBinding names in its spec. */
export const rawAccounts = (o: Raw) => {
  const list = (o.spec as { accounts?: unknown } | undefined)?.accounts;
  return Array.isArray(list) ? [...new Set(list.filter((a): a is string => typeof a === 'string'))] : [];
};
/** The accounts a raw ServiceUser's status says it is admitted in. */
export const rawAdmittedAccounts = (o: Raw & { status?: unknown }) => {
  const list = (o.status as { accounts?: unknown } | undefined)?.accounts;
  return Array.isArray(list) ? list.filter((a): a is string => typeof a === 'string') : [];
};

/** `namespace/value`: index values are per namespace (a friendly name, a subject's name). */
export const inNamespace = (namespace: string | undefined, value: string) => `${namespace ?? ''}/${value}`;

export const serviceUserIndexers = {
  [byFriendlyName]: (e: ServiceUserEntry) => [inNamespace(e.metadata.namespace, friendlyNameOfEntry(e))],
  [byAccount]: (e: ServiceUserEntry) => rawAccounts(objectOf(e)),
  [byNamespace]: (e: ServiceUserEntry) => [e.metadata.namespace ?? ''],
};

export const roleBindingIndexers = {
  [bySubject]: (e: RoleBindingEntry) => [...new Set(subjectsOf(e).map((name) => inNamespace(e.metadata.namespace, name)))],
  [byRole]: (e: RoleBindingEntry) => [e.valid ? e.value.spec.roleRef.name : ((e.raw.spec as BindingSpec)?.roleRef?.name ?? '')],
  [byAccount]: (e: RoleBindingEntry) => rawAccounts(objectOf(e)),
  [byNamespace]: (e: RoleBindingEntry) => [e.metadata.namespace ?? ''],
};

/** A cached ServiceUser's friendly name (its raw spec's when it does not parse). */
export const friendlyNameOfEntry = (e: ServiceUserEntry) => (e.valid ? (e.value.spec.friendlyName ?? e.value.metadata.name) : rawFriendlyName(e.raw));
/** The ServiceUser names a cached RoleBinding lists as subjects. */
export const subjectsOf = (e: RoleBindingEntry) => (e.valid ? e.value.spec.subjects.map((s) => s.name) : rawSubjects(e.raw));
/** The accounts a cached ServiceUser names in its spec and those its status says it is admitted in. */
export const accountsOf = (e: ServiceUserEntry) => ({ named: rawAccounts(objectOf(e)), admitted: rawAdmittedAccounts(objectOf(e)) });
