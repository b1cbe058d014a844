// RoleBinding: grants a Role to ServiceUsers of the same namespace, in Kubernetes RBAC's shape.
import { z } from 'zod';
import { account, accounts, apiVersion, conditions, group, objectMeta, objectName } from './primitives.ts';
import { immutable, rule } from './rules.ts';

export const roleRef = immutable(
  z.object({
    apiGroup: z.enum([group]).default(group),
    kind: z.enum(['Role']).default('Role'),
    name: objectName('Role'),
  }),
  'roleRef is immutable: delete the RoleBinding and create a new one to bind another role',
);

export const subject = z.object({
  kind: z.enum(['ServiceUser']).describe('Only ServiceUser: people sign in elsewhere.'),
  name: objectName('ServiceUser', 63),
  namespace: objectName('namespace', 63)
    .optional()
    .describe("Must be the RoleBinding's own namespace; a binding never reaches across namespaces."),
});

export const roleBindingSpec = z.object({
  roleRef,
  subjects: rule(z.array(subject).min(1, 'subjects must name at least one ServiceUser').max(64), {
    cel: 'self.all(s, self.exists_one(t, t.name == s.name))',
    check: (list) => new Set(list.map((s) => s.name)).size === list.length,
    message: 'subjects must not name the same ServiceUser twice',
  }),
  accounts: accounts('accounts')
    .optional()
    .describe(
      "Narrow the grant to these accounts; each must be among every subject's accounts. Absent: the accounts each subject named when the operator first resolved the binding (status.pinnedAccounts), never one it names later.",
    ),
});

/**
 * For a binding without spec.accounts: the accounts each subject named when the operator
 * first resolved it, narrowed as the subject drops accounts. The binding never grants beyond
 * them, so a ServiceUser naming an account later does not widen a binding whose author was
 * never asked about that account.
 */
export const pinnedAccounts = z
  .array(z.object({ subject: objectName('ServiceUser', 63), accounts: z.array(account).max(64) }))
  .max(64)
  .describe(
    'Without spec.accounts: the accounts each subject named when the operator first resolved this binding. It grants in no other: to grant in an account a subject names later, name it in spec.accounts.',
  );
export type PinnedAccounts = z.output<typeof pinnedAccounts>;

export const roleBindingStatus = z.object({
  subjects: z.string().max(1024).optional().describe('The subjects, comma-separated, for kubectl get.'),
  pinnedAccounts: pinnedAccounts.optional(),
  observedGeneration: z.number().int().min(0).optional(),
  conditions: conditions.optional(),
});

export const roleBinding = z.object({
  apiVersion: z.literal(apiVersion),
  kind: z.literal('RoleBinding'),
  metadata: objectMeta,
  spec: roleBindingSpec,
  status: roleBindingStatus.optional(),
});

export type RoleBinding = z.output<typeof roleBinding>;
export type RoleBindingSpec = z.output<typeof roleBindingSpec>;
