// The cache lookups the operator makes, as informer indexes over the typed caches (stores.ts;
// an object that does not parse is indexed by what its raw form names): who uses
// a friendly name, which RoleBindings name a ServiceUser, which name a Role, which objects
// name an Account or live in a namespace (whose labels Accounts select). With them a
// reconcile or an event handler reads the few objects that matter, not its whole namespace
// (at 10,000 ServiceUsers a namespace scan per event is the difference between seconds and
// minutes after a restart).
import { z } from 'zod';
import { type RoleBindingEntry, type ServiceUserEntry } from './stores.ts';

interface Raw {
  metadata: { name: string; namespace?: string };
  spec?: unknown;
}

// What a raw object (one that does not parse) still says, field by field: a part that does
// not parse reads as absent, so one bad field does not hide the others from the indexes.
const text = z.string().optional().catch(undefined);
const strings = z
  .array(z.unknown())
  .catch([])
  .transform((list) => list.filter((a): a is string => typeof a === 'string'));
const rawSpec = z
  .object({
    friendlyName: text,
    subjects: z.array(z.object({ name: text }).catch({})).catch([]),
    roleRef: z.object({ name: text }).catch({}),
    accounts: strings,
  })
  .catch({ subjects: [], roleRef: {}, accounts: [] });
const rawStatus = z.object({ accounts: strings }).catch({ accounts: [] });

const specOf = (o: Raw) => rawSpec.parse(o.spec ?? {});

/** A raw ServiceUser's friendly name, defaulting to its name as the schema says. */
export const rawFriendlyName = (o: Raw) => specOf(o).friendlyName ?? o.metadata.name;
/** The ServiceUser names a raw RoleBinding lists as subjects. */
export const rawSubjects = (o: Raw) => specOf(o).subjects.map((s) => s.name ?? '');

export const byFriendlyName = 'friendlyName';
export const bySubject = 'subject';
export const byRole = 'role';
export const byAccount = 'account';
export const byNamespace = 'namespace';

/** The accounts a raw ServiceUser or RoleBinding names in its spec. */
export const rawAccounts = (o: Raw) => [...new Set(specOf(o).accounts)];
/** The accounts a raw ServiceUser's status says it is admitted in. */
export const rawAdmittedAccounts = (o: Raw & { status?: unknown }) => rawStatus.parse(o.status ?? {}).accounts;

/** `namespace/value`: index values are per namespace (a friendly name, a subject's name). */
export const inNamespace = (namespace: string | undefined, value: string) => `${namespace ?? ''}/${value}`;

export const serviceUserIndexers = {
  [byFriendlyName]: (e: ServiceUserEntry) => [inNamespace(e.metadata.namespace, friendlyNameOfEntry(e))],
  [byAccount]: (e: ServiceUserEntry) => (e.valid ? e.value.spec.accounts : rawAccounts(e.raw)),
  [byNamespace]: (e: ServiceUserEntry) => [e.metadata.namespace ?? ''],
};

export const roleBindingIndexers = {
  [bySubject]: (e: RoleBindingEntry) => [...new Set(subjectsOf(e).map((name) => inNamespace(e.metadata.namespace, name)))],
  [byRole]: (e: RoleBindingEntry) => [e.valid ? e.value.spec.roleRef.name : (specOf(e.raw).roleRef.name ?? '')],
  [byAccount]: (e: RoleBindingEntry) => (e.valid ? (e.value.spec.accounts ?? []) : rawAccounts(e.raw)),
  [byNamespace]: (e: RoleBindingEntry) => [e.metadata.namespace ?? ''],
};

/** A cached ServiceUser's friendly name (its raw spec's when it does not parse). */
export const friendlyNameOfEntry = (e: ServiceUserEntry) => (e.valid ? (e.value.spec.friendlyName ?? e.value.metadata.name) : rawFriendlyName(e.raw));
/** The ServiceUser names a cached RoleBinding lists as subjects. */
export const subjectsOf = (e: RoleBindingEntry) => (e.valid ? e.value.spec.subjects.map((s) => s.name) : rawSubjects(e.raw));
/** The accounts a cached ServiceUser names in its spec and those its status says it is admitted in. */
export const accountsOf = (e: ServiceUserEntry) =>
  e.valid ? { named: e.value.spec.accounts, admitted: e.value.status?.accounts ?? [] } : { named: rawAccounts(e.raw), admitted: rawAdmittedAccounts(e.raw) };
