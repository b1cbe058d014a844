// CustomResourceDefinitions generated from the zod schemas: the schemas are the single
// source, the CRDs in crds/, config/crd/ and the chart are their output (`npm run generate`;
// a test fails when a written copy is stale).
import { z } from 'zod';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { dump } from 'js-yaml';
import { account } from './account.ts';
import { admissionPolicies, type TemplatePrefixes } from './policy.ts';
import { group, version } from './primitives.ts';
import { role } from './role.ts';
import { roleBinding } from './rolebinding.ts';
import { celRules } from './rules.ts';
import { serviceUser } from './serviceuser.ts';

/** `kubectl get service-users` lists every kind; no resource has that name. */
export const category = 'service-users';

type JsonSchema = { [key: string]: unknown };

interface PrinterColumn {
  name: string;
  type: 'string' | 'integer' | 'date' | 'boolean';
  jsonPath: string;
  description?: string;
  priority?: number;
}

interface KindDefinition {
  kind: string;
  plural: string;
  singular: string;
  shortNames: string[];
  scope: 'Namespaced' | 'Cluster';
  description: string;
  object: z.ZodObject<{ spec: z.ZodType; status: z.ZodOptional<z.ZodType> }>;
  printerColumns: PrinterColumn[];
}

const ready: PrinterColumn = { name: 'Ready', type: 'string', jsonPath: '.status.conditions[?(@.type=="Ready")].status' };
const age: PrinterColumn = { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' };

export const kinds: KindDefinition[] = [
  {
    kind: 'ServiceUser',
    plural: 'serviceusers',
    singular: 'serviceuser',
    shortNames: ['su'],
    scope: 'Namespaced',
    description:
      'A non-human identity (build server, signing pipeline, GitOps job) whose API token and client certificate the operator keeps in a Secret and revokes at its end date.',
    object: serviceUser,
    printerColumns: [
      { name: 'Friendly Name', type: 'string', jsonPath: '.status.friendlyName' },
      { name: 'Phase', type: 'string', jsonPath: '.status.phase' },
      // A string, not a date: kubectl prints future dates as "<invalid>".
      { name: 'Expires', type: 'string', jsonPath: '.status.expiresAt' },
      ready,
      { name: 'Secret', type: 'string', jsonPath: '.status.secretName', priority: 1 },
      { name: 'Email', type: 'string', jsonPath: '.spec.email', priority: 1 },
      age,
    ],
  },
  {
    kind: 'Role',
    plural: 'roles',
    singular: 'role',
    shortNames: ['surole'],
    scope: 'Cluster',
    description: 'A named set of permissions in one product area ("manager"), granted to service users by RoleBindings.',
    object: role,
    printerColumns: [
      { name: 'Manager', type: 'string', jsonPath: '.spec.manager' },
      { name: 'Display Name', type: 'string', jsonPath: '.spec.displayName' },
      { name: 'Permissions', type: 'integer', jsonPath: '.status.permissionCount' },
      { name: 'Assignable', type: 'boolean', jsonPath: '.spec.assignableToServiceUsers' },
      age,
    ],
  },
  {
    kind: 'RoleBinding',
    plural: 'rolebindings',
    singular: 'rolebinding',
    shortNames: ['surb'],
    scope: 'Namespaced',
    description: 'Grants a Role to ServiceUsers of the same namespace, optionally narrowed to some of their accounts.',
    object: roleBinding,
    printerColumns: [
      { name: 'Role', type: 'string', jsonPath: '.spec.roleRef.name' },
      { name: 'Subjects', type: 'string', jsonPath: '.status.subjects' },
      ready,
      age,
    ],
  },
  {
    kind: 'Account',
    plural: 'accounts',
    singular: 'account',
    shortNames: ['suacct'],
    scope: 'Cluster',
    description:
      'An account on the vendor platforms, and which namespaces may use it: ServiceUsers and RoleBindings get permissions in an account only when its namespaceSelector admits their namespace.',
    object: account,
    printerColumns: [
      { name: 'Display Name', type: 'string', jsonPath: '.spec.displayName' },
      { name: 'Service Users', type: 'integer', jsonPath: '.status.serviceUsers' },
      ready,
      age,
    ],
  },
];

/**
 * The OpenAPI schema of a zod schema, made structural for the API server: inlined (no
 * $ref), no `additionalProperties: false` (pruning does that job), no `propertyNames`, and
 * no JavaScript safe-integer bounds on int64 fields.
 */
export function openApiSchema(schema: z.ZodType): JsonSchema {
  return structural(z.toJSONSchema(schema, { target: 'openapi-3.0', io: 'input', reused: 'inline', unrepresentable: 'throw' }));
}

/** A JSON Schema node: an object that is not an array. */
const isNode = (value: unknown): value is JsonSchema => typeof value === 'object' && value !== null && !Array.isArray(value);

function structural(node: object): JsonSchema {
  const out: JsonSchema = {};
  for (const [key, value] of Object.entries(node)) {
    if (key === '$schema' || key === 'propertyNames') continue;
    if (key === 'additionalProperties' && value === false) continue;
    if ((key === 'maximum' || key === 'minimum') && typeof value === 'number' && Math.abs(value) === Number.MAX_SAFE_INTEGER) continue;
    if (key === 'properties' && isNode(value)) {
      out[key] = Object.fromEntries(Object.entries(value).map(([k, v]) => [k, isNode(v) ? structural(v) : v]));
    } else if ((key === 'items' || key === 'additionalProperties') && isNode(value)) {
      out[key] = structural(value);
    } else if (key === 'anyOf' || key === 'oneOf' || key === 'allOf' || key === '$ref' || key === '$defs') {
      throw new Error(`schema uses ${key}, which a structural CRD schema cannot hold: ${JSON.stringify(node)}`);
    } else {
      out[key] = value;
    }
  }
  return out;
}

export function customResourceDefinition(def: KindDefinition) {
  const shape = def.object.shape;
  const rootRules = celRules(def.object);
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: {
      name: `${def.plural}.${group}`,
      labels: { 'app.kubernetes.io/name': 'service-user-operator', 'app.kubernetes.io/component': 'crd' },
    },
    spec: {
      group,
      scope: def.scope,
      names: {
        kind: def.kind,
        listKind: `${def.kind}List`,
        plural: def.plural,
        singular: def.singular,
        shortNames: def.shortNames,
        categories: [category],
      },
      versions: [
        {
          name: version,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: def.printerColumns,
          schema: {
            openAPIV3Schema: {
              type: 'object',
              description: def.description,
              required: ['spec'],
              properties: {
                apiVersion: { type: 'string' },
                kind: { type: 'string' },
                metadata: { type: 'object' },
                spec: openApiSchema(shape.spec),
                status: openApiSchema(shape.status.unwrap()),
              },
              ...(rootRules.length ? { 'x-kubernetes-validations': rootRules } : {}),
            },
          },
        },
      ],
    },
  };
}

const header = '# Generated from src/api by `npm run generate`. Do not edit: change the zod schemas.\n';

const policyHeader = `# Tenancy at admission: a credential is only as powerful as the person who asked for it.
# Creating a RoleBinding, or changing its spec, needs verb bind on its Role; naming an
# account anew in a ServiceUser or RoleBinding needs verb use on it (a RoleBinding without
# spec.accounts: on every account), both asked of the requesting user in the object's namespace.
# A ServiceUser's secretTemplate may not set label or annotation keys with a refused prefix
# (default: those that have other controllers copy the Secret; the chart's values set them).
# Cluster admins pass the first two, not the third; the operator never changes a spec, so its
# own writes (finalizers, status) pass. docs/tenancy.md shows the grants.
# A ServiceUser created with an end date already past is admitted with a warning (GitOps
# re-applies old objects; refusing them would wedge a sync).
`;

const chartHeader = '{{- /* Generated by `npm run generate`. Do not edit. */ -}}\n';

/**
 * Every generated file, by path relative to the repository root: the CRDs, their kustomize
 * copy, and the chart's templates for the CRDs and the role catalog (`roleCatalog`: the
 * config/roles/ files, by name and text). The chart's CRDs are in its crds/ directory: Helm
 * installs those before it maps the templates, and the catalog's Roles are custom resources
 * of these CRDs (as templates, `helm install` failed on every fresh cluster).
 */
export function generatedFiles(roleCatalog: { name: string; text: string }[], policy: { name: string; text: string }[] = []): Map<string, string> {
  const files = new Map<string, string>();
  const names: string[] = [];
  for (const def of kinds) {
    const crd = customResourceDefinition(def);
    const body = dump(crd, { lineWidth: -1, noRefs: true });
    const text = header + body;
    const name = `${crd.metadata.name}.yaml`;
    names.push(name);
    files.set(`crds/${name}`, text);
    files.set(`config/crd/bases/${name}`, text);
    files.set(`charts/service-user-operator/crds/${name}`, text);
  }
  files.set(
    'charts/service-user-operator/templates/role-catalog.yaml',
    `${chartHeader}{{- if .Values.roleCatalog.enabled }}\n${roleCatalog.map((f) => `# ${f.name}\n${f.text.replace(/^#.*\n/gm, '')}`).join('')}{{- end }}\n`,
  );
  // config/policy/: the admission policy (generated, policy.ts) and the ClusterRoles for
  // people (written by hand), each file behind its own switch in the chart's values.
  const policyText = (prefixes?: TemplatePrefixes) => admissionPolicies(prefixes).map((d) => dump(d, { lineWidth: -1, noRefs: true })).join('---\n');
  const admission = '# Generated from src/api/policy.ts by `npm run generate`. Do not edit.\n' + policyHeader + policyText();
  files.set('config/policy/admission.yaml', admission);
  // The chart's copy renders the secretTemplate prefixes from the values its operator's flags come from.
  const helmList = (value: string) => `{{ .Values.secretTemplate.${value} | default list | toJson | lower | squote }}`;
  const chartAdmission = policyText({ refused: '__refused__', allowed: '__allowed__' })
    .replace('expression: __refused__', `expression: ${helmList('refusedKeyPrefixes')}`)
    .replace('expression: __allowed__', `expression: ${helmList('allowedKeyPrefixes')}`);
  policy = [{ name: 'admission.yaml', text: chartAdmission }, ...policy.filter((f) => f.name !== 'admission.yaml')];
  const switches: Record<string, string> = { 'admission.yaml': 'admissionPolicy', 'roles-for-people.yaml': 'rolesForPeople' };
  if (policy.length > 1) {
    files.set(
      'charts/service-user-operator/templates/policy.yaml',
      chartHeader +
        policy
          .map((f) => {
            const key = switches[f.name];
            if (!key) throw new Error(`config/policy/${f.name} has no switch in the chart's values: add it to generatedFiles`);
            return `{{- if .Values.${key}.enabled }}\n---\n# ${f.name}\n${f.text.replace(/^#.*\n/gm, '')}{{- end }}\n`;
          })
          .join(''),
    );
  }
  files.set(
    'config/crd/kustomization.yaml',
    header + dump({ apiVersion: 'kustomize.config.k8s.io/v1beta1', kind: 'Kustomization', resources: names.map((n) => `bases/${n}`) }),
  );
  return files;
}

/** The role catalog files in config/roles (kustomization aside), by name and text. */
export function readRoleCatalog(repoRoot: string): { name: string; text: string }[] {
  return readManifests(repoRoot, 'config/roles');
}

/** The admission policy and the ClusterRoles for people in config/policy, by name and text. */
export function readPolicy(repoRoot: string): { name: string; text: string }[] {
  return readManifests(repoRoot, 'config/policy');
}

function readManifests(repoRoot: string, folder: string): { name: string; text: string }[] {
  const dir = path.join(repoRoot, folder);
  return readdirSync(dir)
    .filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml')
    .sort()
    .map((name) => ({ name, text: readFileSync(path.join(dir, name), 'utf8') }));
}
