// The cache lookups the operator makes, as informer indexes over raw API objects: who uses
// a friendly name, which RoleBindings name a ServiceUser, which name a Role. With them a
// reconcile or an event handler reads the few objects that matter, not its whole namespace
// (at 10,000 ServiceUsers a namespace scan per event is the difference between seconds and
// minutes after a restart).
interface Raw {
  metadata: { name: string; namespace?: string };
  spec?: unknown;
}

type BindingSpec = { subjects?: { name?: string }[]; roleRef?: { name?: string } } | undefined;

export const byFriendlyName = 'friendlyName';
export const bySubject = 'subject';
export const byRole = 'role';

/** `namespace/friendlyName`, the friendly name defaulting to the object's name as the schema says. */
export const friendlyNameKey = (namespace: string | undefined, friendlyName: string) => `${namespace ?? ''}/${friendlyName}`;
/** `namespace/name` of a ServiceUser a RoleBinding names. */
export const subjectKey = (namespace: string | undefined, name: string) => `${namespace ?? ''}/${name}`;

export const serviceUserIndexers = {
  [byFriendlyName]: (o: Raw) => [friendlyNameKey(o.metadata.namespace, (o.spec as { friendlyName?: string } | undefined)?.friendlyName ?? o.metadata.name)],
};

export const roleBindingIndexers = {
  [bySubject]: (o: Raw) => [...new Set(((o.spec as BindingSpec)?.subjects ?? []).map((s) => subjectKey(o.metadata.namespace, s.name ?? '')))],
  [byRole]: (o: Raw) => [(o.spec as BindingSpec)?.roleRef?.name ?? ''],
};
