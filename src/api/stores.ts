// The caches' typed projections. Each informer parses an object once, in its transform,
// into what the operator reads of it; readers take the typed value and neither parse again
// nor cast. This is also where the caches' memory is decided: what is not kept here is
// held by no one.
//
// Invariants:
//   - `metadata` is compact (what any reader uses: no managedFields, ownerReferences or
//     kubectl's last-applied copy of the whole object) and, for a valid object, the very
//     object its value carries (not a copy);
//   - an object that does not parse is cached too, as `valid: false` with the reason (one
//     line naming each field and what is expected) and the raw object trimmed the same way:
//     its own reconciler says why and can still finalize it; every other reader skips it;
//   - a Namespace keeps its name and labels (what Account selectors read), a Secret its
//     metadata alone: its data is read live, or from the first list (controller/first-list.ts);
//   - what a cache keeps holds its strings interned (intern.ts): the same message or owner
//     reference in 10,000 objects is one string.
import { z } from 'zod';
import { interned } from './intern.ts';
import type { KubeObject, ObjectMeta } from './object.ts';
import { account, type Account } from './account.ts';
import { conditions } from './primitives.ts';
import { role, type Role } from './role.ts';
import { pinnedAccounts, roleBinding, type RoleBinding } from './rolebinding.ts';
import { serviceUser, type ServiceUser } from './serviceuser.ts';

/** Written by `kubectl apply`: the whole object again, read by no one here. */
const lastApplied = 'kubectl.kubernetes.io/last-applied-configuration';

/** A parsed object, or the reason it does not parse (with the raw object, trimmed). */
export type Typed<T extends KubeObject> =
  | { valid: true; metadata: ObjectMeta; value: T }
  | { valid: false; metadata: ObjectMeta; raw: KubeObject; problem: string };

export type ServiceUserEntry = Typed<ServiceUser>;
export type RoleBindingEntry = Typed<RoleBinding>;
export type RoleEntry = Typed<Role>;
export type AccountEntry = Typed<Account>;
/** A Namespace as Account selectors read it. */
export interface NamespaceEntry {
  metadata: { name: string; resourceVersion?: string | undefined; labels: Record<string, string> };
}
/** A Secret's metadata: which user it belongs to and at which version (its data is not cached). */
export interface SecretEntry {
  metadata: ObjectMeta;
}

/** The fields of metadata any reader uses, nothing else. */
export function compactMeta(m: ObjectMeta): ObjectMeta {
  const out: ObjectMeta = { name: m.name };
  if (m.namespace !== undefined) out.namespace = m.namespace;
  if (m.uid !== undefined) out.uid = m.uid;
  if (m.resourceVersion !== undefined) out.resourceVersion = m.resourceVersion;
  if (m.generation !== undefined) out.generation = m.generation;
  if (m.creationTimestamp !== undefined) out.creationTimestamp = m.creationTimestamp;
  if (m.deletionTimestamp !== undefined) out.deletionTimestamp = m.deletionTimestamp;
  if (m.finalizers?.length) out.finalizers = m.finalizers;
  if (m.labels && Object.keys(m.labels).length) out.labels = m.labels;
  if (m.annotations) {
    const { [lastApplied]: _, ...rest } = m.annotations;
    if (Object.keys(rest).length) out.annotations = rest;
  }
  return out;
}

/** Zod's issues as one line a person can act on: `spec.field: what is expected; …`. */
export const describeIssues = (error: z.ZodError) => error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');

interface Schema<T> {
  safeParse(input: unknown): { success: true; data: T } | { success: false; error: z.ZodError };
}

/** The transform of a custom resource's cache: parsed once, into `Typed<T>`. */
export function typedBy<T extends KubeObject>(schema: Schema<T>): (obj: KubeObject) => Typed<T> {
  return (obj) => {
    const trimmed: KubeObject = interned({ ...obj, metadata: compactMeta(obj.metadata) });
    const parsed = schema.safeParse(trimmed);
    if (!parsed.success) return { valid: false, metadata: trimmed.metadata, raw: trimmed, problem: describeIssues(parsed.error) };
    return { valid: true, metadata: parsed.data.metadata, value: parsed.data };
  };
}

export const typedServiceUser = typedBy<ServiceUser>(serviceUser);
export const typedRoleBinding = typedBy<RoleBinding>(roleBinding);
export const typedRole = typedBy<Role>(role);
export const typedAccount = typedBy<Account>(account);

export const namespaceEntry = (n: KubeObject): NamespaceEntry =>
  interned({ metadata: { name: n.metadata.name, resourceVersion: n.metadata.resourceVersion, labels: n.metadata.labels ?? {} } });

/** All of a Secret's metadata but managedFields: a restart's first passes observe the Secret from it and the first list's data. */
export const secretEntry = (s: KubeObject): SecretEntry => {
  const { managedFields: _, ...metadata } = s.metadata;
  return { metadata: interned(metadata) };
};

/** The object as the API server would show it (events and status writes name it). */
export const objectOf = <T extends KubeObject>(e: Typed<T>): KubeObject => (e.valid ? e.value : e.raw);

/** The parsed values among `entries` (absent and invalid ones skipped: their reconciler reports them). */
export function validValues<T extends KubeObject>(entries: (Typed<T> | undefined)[]): T[] {
  const out: T[] = [];
  for (const e of entries) if (e?.valid) out.push(e.value);
  return out;
}

/** What status an object that does not parse still says, field by field (a part that does not parse is absent). */
const recorded = z.object({ conditions: conditions.optional().catch(undefined), pinnedAccounts: pinnedAccounts.optional().catch(undefined) });

/** The conditions status recorded, of an object parsed or not. */
export function recordedConditions(e: ServiceUserEntry | RoleBindingEntry | RoleEntry | AccountEntry): z.output<typeof conditions> | undefined {
  if (e.valid) return e.value.status?.conditions;
  const r = recorded.safeParse(e.raw.status ?? {});
  return r.success ? r.data.conditions : undefined;
}

/** The accounts a RoleBinding's status pinned, of a binding parsed or not. */
export function recordedPins(e: RoleBindingEntry): z.output<typeof pinnedAccounts> | undefined {
  if (e.valid) return e.value.status?.pinnedAccounts;
  const r = recorded.safeParse(e.raw.status ?? {});
  return r.success ? r.data.pinnedAccounts : undefined;
}
