// The tenancy admission policies (config/policy/admission.yaml and the chart's copy are
// generated from here): as Kubernetes RBAC does for its own RoleBindings, the API server
// asks its authorizer whether the requesting user may `bind` the Role and `use` each
// account newly named, in the object's namespace.
//
// Why one validation per account: an authorizer check costs CEL 350,000 units and one
// expression may spend 1,000,000, so a single filter over the accounts would fail past two
// of them. Each validation checks one (the message can then name it exactly: a message may
// not call the authorizer); whoever may use every account passes with one check; more than
// `perWrite` accounts named anew in one write needs that, or several writes. A RoleBinding
// without spec.accounts grants in whatever its subjects name, which no policy can see: only
// an author who may use every account may write one.
import { group } from './primitives.ts';
import { celString } from './rules.ts';
import { endDatePattern } from './serviceuser.ts';
import { defaultTemplateKeyPolicy } from './secret-template.ts';

export const perWrite = 16;

const where = "namespace(request.namespace)";
const refusal = (what: string, verb: string, resource: string, name: string) =>
  `${what} + ' refused: ' + request.userInfo.username + ' may not ${verb === 'use' ? 'use account' : 'bind Role'} ' + ${name} +` +
  ` ' in namespace ' + request.namespace + ': that needs verb ${verb} on ${resource}.${group} named ' + ${name} +` +
  ` '. A platform admin grants it with a ClusterRole rule {apiGroups: [${group}], resources: [${resource}], verbs: [${verb}], resourceNames: [' + ${name} +` +
  ` ']} bound to you in namespace ' + request.namespace + ' (see docs/tenancy.md)'`;

const policy = (name: string, resources: string[], spec: Record<string, unknown>, on = { operations: ['CREATE', 'UPDATE'], actions: ['Deny'] }) => [
  {
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'ValidatingAdmissionPolicy',
    metadata: { name },
    spec: {
      failurePolicy: 'Fail',
      matchConstraints: { resourceRules: [{ apiGroups: [group], apiVersions: ['*'], operations: on.operations, resources }] },
      ...spec,
    },
  },
  { apiVersion: 'admissionregistration.k8s.io/v1', kind: 'ValidatingAdmissionPolicyBinding', metadata: { name }, spec: { policyName: name, validationActions: on.actions } },
];

// A ServiceUser created with an end date already past is admitted — a GitOps sync re-applies
// old objects, and refusing them would wedge the sync — but the person applying it is warned
// (kubectl and Argo CD show admission warnings). CEL has no clock; on CREATE the API server
// has already set metadata.creationTimestamp, which is "now" here. A date ends at 23:59:59 UTC.
const endDatePassed = {
  variables: [
    { name: 'end', expression: `has(object.spec.endDate) && object.spec.endDate.matches(${celString(endDatePattern.source)}) ? object.spec.endDate : ''` },
  ],
  validations: [
    {
      expression: "variables.end == '' || timestamp(size(variables.end) == 10 ? variables.end + 'T23:59:59Z' : variables.end) > timestamp(object.metadata.creationTimestamp)",
      messageExpression:
        `'ServiceUser ' + object.metadata.name + ': spec.endDate "' + variables.end + '" has already passed: admitted, but it gets no credentials (verification refuses it) until spec.endDate moves into the future'`,
    },
  ],
};

/**
 * The secretTemplate key prefixes, as CEL list literals (JSON is one). The chart passes
 * Helm expressions rendering its values instead, so that the policy and the operator's
 * flags come from the same values.
 */
export interface TemplatePrefixes {
  refused: string;
  allowed: string;
}
const defaultPrefixes: TemplatePrefixes = { refused: JSON.stringify(defaultTemplateKeyPolicy.refused), allowed: JSON.stringify(defaultTemplateKeyPolicy.allowed) };

// A ServiceUser's secretTemplate labels or annotations (`field`), new or with a new value,
// that the platform's prefixes refuse (api/secret-template.ts): judged only when written, so
// the operator's own writes (finalizers, status) and untouched keys pass.
function templateVariables(field: 'labels' | 'annotations') {
  const of = (o: string) => `has(${o}.spec.credentials) && has(${o}.spec.credentials.secretTemplate) && has(${o}.spec.credentials.secretTemplate.${field}) ? ${o}.spec.credentials.secretTemplate.${field} : {}`;
  return [
    { name: field, expression: of('object') },
    { name: `old${field}`, expression: `oldObject != null && ${of('oldObject')}` },
    {
      name: `refused${field}`,
      expression:
        `variables.${field}.filter(k, !(k in variables.old${field}) || variables.old${field}[k] != variables.${field}[k])` +
        `.filter(k, variables.refused.exists(p, k.lowerAscii().startsWith(p)) || (size(variables.allowed) > 0 && !variables.allowed.exists(p, k.lowerAscii().startsWith(p))))`,
    },
  ];
}

const templateValidation = (field: 'labels' | 'annotations') => ({
  expression: `size(variables.refused${field}) == 0`,
  reason: 'Forbidden',
  messageExpression:
    `'ServiceUser ' + object.metadata.name + ' refused: spec.credentials.secretTemplate.${field} key ' + variables.refused${field}[0] + ` +
    `' may not be set on its Secret: this platform refuses keys starting with ' + variables.refused.join(', ') + ` +
    `' (they ask other controllers, such as kubernetes-replicator or Reflector, to copy the Secret elsewhere)' + ` +
    `(size(variables.allowed) > 0 ? ' and allows only keys starting with ' + variables.allowed.join(', ') : '') + ` +
    `'. Remove the key; a platform admin who wants it allows the prefix (docs/security.md)'`,
});

export function admissionPolicies(prefixes: TemplatePrefixes = defaultPrefixes): object[] {
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
        // A RoleBinding without spec.accounts, created or respecified, grants in every account
        // its subjects name: which ones this policy cannot see (it reads no other object), so
        // its author must be able to use them all. Others name the accounts.
        {
          name: 'unnamed',
          expression: "request.resource.resource == 'rolebindings' && !has(object.spec.accounts) && (oldObject == null || object.spec != oldObject.spec)",
        },
      ],
      validations: [
        {
          expression: '!variables.unnamed || variables.anyAccount',
          reason: 'Forbidden',
          messageExpression:
            `'RoleBinding ' + object.metadata.name + ' refused: it has no spec.accounts, so it would grant Role ' + object.spec.roleRef.name + ` +
            `' in every account its subjects name, and ' + request.userInfo.username + ' may not use every account in namespace ' + request.namespace + ` +
            `': name the accounts to grant in with spec.accounts (each needs verb use on accounts.${group} of that name; see docs/tenancy.md)'`,
        },
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
    ...policy(`${group}-end-date-passed`, ['serviceusers'], endDatePassed, { operations: ['CREATE'], actions: ['Warn', 'Audit'] }),
    ...policy(`${group}-secret-template`, ['serviceusers'], {
      variables: [{ name: 'refused', expression: prefixes.refused }, { name: 'allowed', expression: prefixes.allowed }, ...templateVariables('labels'), ...templateVariables('annotations')],
      validations: [templateValidation('labels'), templateValidation('annotations')],
    }),
  ];
}
