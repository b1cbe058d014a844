// RoleBindings and Roles resolved into each ServiceUser's effective permissions, and a
// verdict per binding. Pure: the reconcilers feed it from their caches. A binding or subject
// that breaks a rule grants nothing; the verdict says why, in words a person can act on.
// Grants land only in accounts that exist and admit the binding's namespace (admits).
// A binding without spec.accounts grants in its subjects' accounts as pinned in its status
// (pinAccounts): never in one a subject names after the binding was first resolved.
import { judgeAccounts, type Admits } from '../account/admission.ts';
import type { Role } from '../api/role.ts';
import type { PinnedAccounts, RoleBinding } from '../api/rolebinding.ts';
import type { ServiceUser } from '../api/serviceuser.ts';

export interface Grant {
  account: string;
  manager: string;
  permission: string;
  roles: string[];
}

export interface Problem {
  reason:
    | 'RoleNotFound'
    | 'RoleNotAssignable'
    | 'SubjectNotFound'
    | 'SubjectInOtherNamespace'
    | 'AccountsOutsideSubject'
    | 'AccountsAddedAfterBinding'
    | 'AccountNotFound'
    | 'NamespaceNotAdmitted';
  message: string;
}

export interface BindingVerdict {
  /** Subjects that received the grant. */
  granted: string[];
  problems: Problem[];
}

const key = (namespace: string | undefined, name: string) => `${namespace ?? ''}/${name}`;

/**
 * The accounts a binding without spec.accounts may grant in, per subject: what the subject
 * names when first seen, then only less (an account dropped and named again counts as named
 * later). Kept for subjects not found (a ServiceUser recreated under the name is held to the
 * old pin); dropped for subjects the binding no longer names. Undefined with spec.accounts:
 * the admission policy asked about each of those.
 */
export function pinAccounts(binding: RoleBinding, users: readonly ServiceUser[]): PinnedAccounts | undefined {
  if (binding.spec.accounts) return undefined;
  const ns = binding.metadata.namespace;
  const pins: PinnedAccounts = [];
  for (const subject of binding.spec.subjects) {
    const before = binding.status?.pinnedAccounts?.find((p) => p.subject === subject.name)?.accounts;
    const user = users.find((u) => u.metadata.namespace === ns && u.metadata.name === subject.name);
    const named = user?.spec.accounts;
    const accounts = before && named ? before.filter((a) => named.includes(a)) : (before ?? named);
    if (accounts) pins.push({ subject: subject.name, accounts });
  }
  return pins;
}

/** The accounts `binding` grants `user` in, and those it refuses as named after its pin. */
function bindingAccounts(binding: RoleBinding, user: ServiceUser): { accounts: string[]; later: string[] } {
  if (binding.spec.accounts) return { accounts: binding.spec.accounts, later: [] };
  const pin = binding.status?.pinnedAccounts?.find((p) => p.subject === user.metadata.name)?.accounts;
  // Not pinned yet (the binding's first resolve): the subject's accounts, which the pin records.
  if (!pin) return { accounts: user.spec.accounts, later: [] };
  return { accounts: user.spec.accounts.filter((a) => pin.includes(a)), later: user.spec.accounts.filter((a) => !pin.includes(a)) };
}

/** One binding's verdict; the grants it makes are added to `grants`, per subject. */
function judgeBinding(
  binding: RoleBinding,
  usersByKey: Map<string, ServiceUser>,
  rolesByName: Map<string, Role>,
  admits: Admits,
  grants: Map<string, Map<string, Grant>>,
): BindingVerdict {
  const ns = binding.metadata.namespace;
  const verdict: BindingVerdict = { granted: [], problems: [] };
  const roleName = binding.spec.roleRef.name;
  const role = rolesByName.get(roleName);
  if (!role) {
    verdict.problems.push({ reason: 'RoleNotFound', message: `Role ${roleName} does not exist: create it (kubectl apply -k config/roles has the seed catalogs) or fix spec.roleRef.name` });
    return verdict;
  }
  if (!role.spec.assignableToServiceUsers) {
    verdict.problems.push({
      reason: 'RoleNotAssignable',
      message: `Role ${roleName} is marked assignableToServiceUsers: false and cannot be bound to a service user; bind a narrower role`,
    });
    return verdict;
  }
  for (const subject of binding.spec.subjects) {
    if (subject.namespace && subject.namespace !== ns) {
      verdict.problems.push({
        reason: 'SubjectInOtherNamespace',
        message: `subject ${subject.namespace}/${subject.name} is in another namespace; a RoleBinding only binds ServiceUsers of its own namespace (${ns})`,
      });
      continue;
    }
    const user = usersByKey.get(key(ns, subject.name));
    if (!user) {
      verdict.problems.push({ reason: 'SubjectNotFound', message: `ServiceUser ${subject.name} does not exist in namespace ${ns}` });
      continue;
    }
    const { accounts, later } = bindingAccounts(binding, user);
    if (later.length) {
      verdict.problems.push({
        reason: 'AccountsAddedAfterBinding',
        message:
          `grants nothing in ${later.join(', ')}: ServiceUser ${subject.name} named ${later.length > 1 ? 'them' : 'it'} after this binding (without spec.accounts) was first resolved, ` +
          `and a binding does not follow accounts added later; to grant there, name ${later.length > 1 ? 'them' : 'it'} in spec.accounts (which asks for verb use on each)`,
      });
    }
    const outside = accounts.filter((a) => !user.spec.accounts.includes(a));
    if (outside.length) {
      verdict.problems.push({
        reason: 'AccountsOutsideSubject',
        message: `spec.accounts ${outside.join(', ')} ${outside.length > 1 ? 'are' : 'is'} not among ServiceUser ${subject.name}'s accounts (${user.spec.accounts.join(', ')}); a binding can only narrow them`,
      });
      continue;
    }
    const judged = judgeAccounts(accounts, ns ?? '', admits);
    for (const p of judged.problems) {
      const message = `grants nothing in ${p.message}`;
      if (!verdict.problems.some((q) => q.message === message)) verdict.problems.push({ reason: p.reason, message });
    }
    if (!judged.admitted.length) continue;
    verdict.granted.push(subject.name);
    const userGrants = grants.get(key(ns, subject.name)) ?? new Map<string, Grant>();
    grants.set(key(ns, subject.name), userGrants);
    for (const account of judged.admitted) {
      for (const permission of role.spec.permissions) {
        const id = `${account}\u0000${role.spec.manager}\u0000${permission}`;
        const grant = userGrants.get(id) ?? { account, manager: role.spec.manager, permission, roles: [] };
        if (!grant.roles.includes(roleName)) grant.roles.push(roleName);
        userGrants.set(id, grant);
      }
    }
  }
  return verdict;
}

/** The verdict on one binding, over these users and roles. */
export function verdictOn(binding: RoleBinding, users: ServiceUser[], roles: Role[], admits: Admits): BindingVerdict {
  const usersByKey = new Map(users.map((u) => [key(u.metadata.namespace, u.metadata.name), u]));
  return judgeBinding(binding, usersByKey, new Map(roles.map((r) => [r.metadata.name, r])), admits, new Map());
}

export function resolve(users: ServiceUser[], bindings: RoleBinding[], roles: Role[], admits: Admits) {
  const usersByKey = new Map(users.map((u) => [key(u.metadata.namespace, u.metadata.name), u]));
  const rolesByName = new Map(roles.map((r) => [r.metadata.name, r]));
  const grants = new Map<string, Map<string, Grant>>();
  const verdicts = new Map<string, BindingVerdict>();

  for (const binding of bindings) {
    verdicts.set(key(binding.metadata.namespace, binding.metadata.name), judgeBinding(binding, usersByKey, rolesByName, admits, grants));
  }
  const sorted = (g: Map<string, Grant>) =>
    [...g.values()]
      .map((x) => ({ ...x, roles: [...x.roles].sort() }))
      .sort((a, b) => a.account.localeCompare(b.account) || a.manager.localeCompare(b.manager) || a.permission.localeCompare(b.permission));
  return {
    /** Effective permissions of the ServiceUser `namespace/name`. */
    permissionsOf: (namespace: string, name: string): Grant[] => sorted(grants.get(key(namespace, name)) ?? new Map()),
    verdictOf: (namespace: string, name: string): BindingVerdict | undefined => verdicts.get(key(namespace, name)),
  };
}
