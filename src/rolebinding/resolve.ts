// RoleBindings and Roles resolved into each ServiceUser's effective permissions, and a
// verdict per binding. Pure: the reconcilers feed it from their caches. A binding or subject
// that breaks a rule grants nothing; the verdict says why, in words a person can act on.
// Grants land only in accounts that exist and admit the binding's namespace (admits).
import { judgeAccounts, type Admits } from '../account/admission.ts';
import type { Role } from '../api/role.ts';
import type { RoleBinding } from '../api/rolebinding.ts';
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

export function resolve(users: ServiceUser[], bindings: RoleBinding[], roles: Role[], admits: Admits) {
  const usersByKey = new Map(users.map((u) => [key(u.metadata.namespace, u.metadata.name), u]));
  const rolesByName = new Map(roles.map((r) => [r.metadata.name, r]));
  const grants = new Map<string, Map<string, Grant>>();
  const verdicts = new Map<string, BindingVerdict>();

  for (const binding of bindings) {
    const ns = binding.metadata.namespace;
    const verdict: BindingVerdict = { granted: [], problems: [] };
    verdicts.set(key(ns, binding.metadata.name), verdict);
    const roleName = binding.spec.roleRef.name;
    const role = rolesByName.get(roleName);
    if (!role) {
      verdict.problems.push({ reason: 'RoleNotFound', message: `Role ${roleName} does not exist: create it (kubectl apply -k config/roles has the seed catalogs) or fix spec.roleRef.name` });
      continue;
    }
    if (!role.spec.assignableToServiceUsers) {
      verdict.problems.push({
        reason: 'RoleNotAssignable',
        message: `Role ${roleName} is marked assignableToServiceUsers: false and cannot be bound to a service user; bind a narrower role`,
      });
      continue;
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
      const accounts = binding.spec.accounts ?? user.spec.accounts;
      const outside = accounts.filter((a) => !user.spec.accounts.includes(a));
      if (outside.length) {
        verdict.problems.push({
          reason: 'AccountsOutsideSubject',
          message: `spec.accounts ${outside.join(', ')} ${outside.length > 1 ? 'are' : 'is'} not among ServiceUser ${subject.name}'s accounts (${user.spec.accounts.join(', ')}); a binding can only narrow them`,
        });
        continue;
      }
      const judged = judgeAccounts(accounts, ns!, admits);
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
