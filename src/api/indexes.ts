// The cache lookups the operator makes, as informer indexes over raw API objects: who uses
// a friendly name, which RoleBindings name a ServiceUser, which name a Role, which objects
// name an Account or live in a namespace (whose labels Accounts select). With them a
// reconcile or an event handler reads the few objects that matter, not its whole namespace
// (at 10,000 ServiceUsers a namespace scan per event is the difference between seconds and
// minutes after a restart).
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
  [byFriendlyName]: (o: Raw) => [inNamespace(o.metadata.namespace, rawFriendlyName(o))],
  [byAccount]: rawAccounts,
  [byNamespace]: (o: Raw) => [o.metadata.namespace ?? ''],
};

export const roleBindingIndexers = {
  [bySubject]: (o: Raw) => [...new Set(rawSubjects(o).map((name) => inNamespace(o.metadata.namespace, name)))],
  [byRole]: (o: Raw) => [(o.spec as BindingSpec)?.roleRef?.name ?? ''],
  [byAccount]: rawAccounts,
  [byNamespace]: (o: Raw) => [o.metadata.namespace ?? ''],
};
