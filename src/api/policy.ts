// The tenancy admission policies (config/policy/admission.yaml and the chart's copy are
// generated from here): as Kubernetes RBAC does for its own RoleBindings, the API server
// asks its authorizer whether the requesting user may `bind` the Role and `use` each
// account newly named, in the object's namespace.
//
// Why one validation per account: an authorizer check costs CEL 350,000 units and one
// expression may spend 1,000,000, so a single filter over the accounts would fail past two
// of them. Each validation checks one (the message can then name it exactly: a message may
// not call the authorizer); whoever may use every account passes with one check; more than
// `perWrite` accounts named anew in one write needs that, or several writes.
import { group } from './primitives.ts';

export const perWrite = 16;

const where = "namespace(request.namespace)";
const refusal = (what: string, verb: string, resource: string, name: string) =>
  `${what} + ' refused: ' + request.userInfo.username + ' may not ${verb === 'use' ? 'use account' : 'bind Role'} ' + ${name} +` +
  ` ' in namespace ' + request.namespace + ': that needs verb ${verb} on ${resource}.${group} named ' + ${name} +` +
  ` '. A platform admin grants it with a ClusterRole rule {apiGroups: [${group}], resources: [${resource}], verbs: [${verb}], resourceNames: [' + ${name} +` +
  ` ']} bound to you in namespace ' + request.namespace + ' (see docs/tenancy.md)'`;

const policy = (name: string, resources: string[], spec: Record<string, unknown>) => [
  {
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'ValidatingAdmissionPolicy',
    metadata: { name },
    spec: {
      failurePolicy: 'Fail',
      matchConstraints: { resourceRules: [{ apiGroups: [group], apiVersions: ['*'], operations: ['CREATE', 'UPDATE'], resources }] },
      ...spec,
    },
  },
  { apiVersion: 'admissionregistration.k8s.io/v1', kind: 'ValidatingAdmissionPolicyBinding', metadata: { name }, spec: { policyName: name, validationActions: ['Deny'] } },
];

export function admissionPolicies(): object[] {
  const authz = (resource: string, name: string, verb: string) => `authorizer.group('${group}').resource('${resource}').${where}${name ? `.name(${name})` : ''}.check('${verb}').allowed()`;
  return [
    ...policy(`${group}-bind-roles`, ['rolebindings'], {
      variables: [
        // An update that leaves the spec alone (labels, finalizers, owner references) binds nothing new.
        { name: 'changed', expression: 'oldObject == null || object.spec != oldObject.spec' },
        { name: 'role', expression: 'object.spec.roleRef.name' },
      ],
      validations: [
        {
          expression: `!variables.changed || ${authz('roles', 'variables.role', 'bind')}`,
          reason: 'Forbidden',
          messageExpression: refusal("'RoleBinding ' + object.metadata.name", 'bind', 'roles', 'variables.role'),
        },
      ],
    }),
    ...policy(`${group}-use-accounts`, ['serviceusers', 'rolebindings'], {
      variables: [
        { name: 'previous', expression: 'oldObject != null && has(oldObject.spec.accounts) ? oldObject.spec.accounts : []' },
        // Only accounts named anew: an update that keeps the accounts asks nothing.
        { name: 'named', expression: 'has(object.spec.accounts) ? object.spec.accounts.filter(a, !(a in variables.previous)) : []' },
        // May use every account (a cluster admin, a grant without resourceNames): one check for all.
        { name: 'anyAccount', expression: authz('accounts', '', 'use') },
      ],
      validations: [
        // First: the API server reports the first validation refused.
        {
          expression: `size(variables.named) <= ${perWrite} || variables.anyAccount`,
          reason: 'Forbidden',
          messageExpression:
            `request.kind.kind + ' ' + object.metadata.name + ' refused: it names ' + string(size(variables.named)) + ' accounts anew; ` +
            `name at most ${perWrite} in one write, or hold verb use on all accounts.${group}'`,
        },
        ...Array.from({ length: perWrite }, (_, i) => ({
          expression: `size(variables.named) <= ${i} || variables.anyAccount || ${authz('accounts', `variables.named[${i}]`, 'use')}`,
          reason: 'Forbidden',
          messageExpression: refusal("request.kind.kind + ' ' + object.metadata.name", 'use', 'accounts', `variables.named[${i}]`),
        })),
      ],
    }),
  ];
}
