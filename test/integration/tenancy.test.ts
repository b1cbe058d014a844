// Tenancy on the real API server: a credential is only as powerful as the person who asked
// for it. The operator grants nothing in an account that does not admit the namespace
// (attack 1 of issue 11), and the shipped ValidatingAdmissionPolicies refuse, for people
// impersonated with kubectl --as / --as-group, a RoleBinding without `bind` on its Role and
// an account named without `use` — while cluster admins and the operator's own writes pass.
// The policies are installed under this file's names and bound to its namespaces only, so
// the run's other files are not policed; the operator runs as a ServiceAccount with the
// shipped RBAC (config/rbac), which grants neither bind nor use.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { request } from 'node:https';
import path from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { loadAll } from 'js-yaml';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { isNotFound, KubeClient, resourcePath, type KubeObject } from '../../src/controller/kube.ts';
import { resources } from '../../src/api/resources.ts';
import { createMetrics } from '../../src/observability/metrics.ts';
import { startOperator, type Operator } from '../../src/operator.ts';
import { repoRoot } from '../cluster/controlplane.ts';
import { applyManifests, manifestsIn } from '../crds.ts';
import { testLogger } from '../logs.ts';
import { eventually, kubeConfig, useNamespace, run } from '../kube.ts';
import { freePort } from '../net.ts';
import { api, decodeSecret, testAccount, statusOf } from '../operator.ts';

const a = useNamespace('tenancy-a');
const b = useNamespace('tenancy-b');
const s = `t${randomBytes(3).toString('hex')}`;
const prod = `${s}-prod`;
const shared = `${s}-shared`;
const labelled = `${s}-labelled`;
const signer = 'software-trust-manager.signer';
const verifier = 'service-user-operator.verifier';
const admin = new KubeClient(kubeConfig());
const logs: string[] = [];
const cleanup: string[] = [];
let operator: Operator;
let port: number;

const condition = (o: KubeObject, type: string) => statusOf(o).conditions?.find((c) => c.type === type);
const inA = () => api(admin, a.name);
const inB = () => api(admin, b.name);

function kubectl(args: string[], input?: string): Promise<{ ok: boolean; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = execFile('kubectl', ['--kubeconfig', inject('kubeconfig'), ...args], { encoding: 'utf8', timeout: 30_000 }, (error, out, err) =>
      resolve({ ok: !error, out, err }),
    );
    child.stdin!.end(input ?? '');
  });
}
/** A person: kubectl impersonating user `name`, in the groups given. */
const person = (name: string, groups: string[] = []) => ['--as', name, ...groups.flatMap((g) => ['--as-group', g])];
const serviceUserJson = (name: string, accounts: string[]) =>
  JSON.stringify({ apiVersion: 'serviceusers.dev/v1alpha1', kind: 'ServiceUser', metadata: { name }, spec: { email: 'team-b@example.com', accounts } });
const bindingJson = (name: string, role: string, subject: string, accounts?: string[]) =>
  JSON.stringify({
    apiVersion: 'serviceusers.dev/v1alpha1', kind: 'RoleBinding', metadata: { name },
    spec: { roleRef: { name: role }, subjects: [{ kind: 'ServiceUser', name: subject }], ...(accounts ? { accounts } : {}) },
  });
const create = (who: string[], json: string, dryRun = false) => kubectl(['create', '-n', b.name, '-f', '-', ...(dryRun ? ['--dry-run=server'] : []), ...who], json);

async function post(kind: keyof typeof resources, namespace: string | undefined, body: object) {
  await admin.request('POST', resourcePath(resources[kind], namespace), body);
}
async function bind(namespace: string, name: string, role: string, subject: string, accounts?: string[]) {
  await post('roleBindings', namespace, JSON.parse(bindingJson(name, role, subject, accounts)) as object);
}
const clusterPath = (kind: string, name: string) =>
  kind === 'ClusterRole' || kind === 'ClusterRoleBinding'
    ? `/apis/rbac.authorization.k8s.io/v1/${kind.toLowerCase()}s/${name}`
    : `/apis/admissionregistration.k8s.io/v1/${kind.toLowerCase().replace(/y$/, 'ie')}s/${name}`;
async function applyClusterObject(doc: KubeObject) {
  const p = clusterPath(doc.kind!, doc.metadata.name);
  await admin.apply(p, doc, 'tenancy-test');
  cleanup.push(p);
}
const policyFile = (file: string) => (loadAll(readFileSync(path.join(repoRoot, 'config/policy', file), 'utf8')) as KubeObject[]).filter(Boolean);

/** A POST to the operator's verification service with a service user's token. */
function verify(pathname: string, bearer: string, body: object): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, path: pathname, method: 'POST', ca: operator.authority.ca.certPem, headers: { 'content-type': 'application/json', authorization: `Bearer ${bearer}` } },
      (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> }));
      },
    );
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}
async function tokenOf(namespace: string, name: string): Promise<string> {
  return eventually(`${namespace}/${name}'s token`, async () => {
    const su = await api(admin, namespace).serviceUser(name);
    const secret = statusOf(su).phase === 'Active' ? await api(admin, namespace).secret(`${name}-credentials`) : undefined;
    return secret ? decodeSecret(secret).token : undefined;
  });
}

beforeAll(async () => {
  // Accounts: prod admits team A by name; shared admits every namespace; labelled admits
  // namespaces carrying this file's label.
  const byName = { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'In', values: [a.name] }] };
  for (const [name, selector] of [[prod, byName], [shared, {}], [labelled, { matchLabels: { [`tenancy.example.com/${s}`]: 'member' } }]] as const) {
    await admin.apply(resourcePath(resources.accounts, undefined, name), testAccount(name, selector), 'tenancy-test');
    cleanup.push(resourcePath(resources.accounts, undefined, name));
  }
  // The seed Roles (catalog data, shared by the run: applied, never deleted).
  await applyManifests(admin, manifestsIn('config/roles'), a.name, 'tenancy-test');

  // The operator as a ServiceAccount holding exactly config/rbac's rules.
  await admin.request('POST', `/api/v1/namespaces/${a.name}/serviceaccounts`, { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'operator' } });
  const subject = [{ kind: 'ServiceAccount', name: 'operator', namespace: a.name }];
  const [clusterRole] = loadAll(readFileSync(path.join(repoRoot, 'config/rbac/role.yaml'), 'utf8')) as KubeObject[];
  await applyClusterObject({ ...clusterRole!, metadata: { name: `${s}-operator` } });
  await applyClusterObject({ apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding', metadata: { name: `${s}-operator` }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: `${s}-operator` }, subjects: subject } as KubeObject);
  const [selfRole] = loadAll(readFileSync(path.join(repoRoot, 'config/rbac/self_role.yaml'), 'utf8')) as KubeObject[];
  await admin.request('POST', `/apis/rbac.authorization.k8s.io/v1/namespaces/${a.name}/roles`, { ...selfRole, metadata: { name: 'operator-self' } });
  await admin.request('POST', `/apis/rbac.authorization.k8s.io/v1/namespaces/${a.name}/rolebindings`, {
    apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'RoleBinding', metadata: { name: 'operator-self' },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'operator-self' }, subjects: subject,
  });
  const { status } = await admin.request<{ status: { token: string } }>('POST', `/api/v1/namespaces/${a.name}/serviceaccounts/operator/token`, {
    apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { expirationSeconds: 3600 },
  });
  const kc = new KubeConfig();
  kc.loadFromClusterAndUser(kubeConfig().getCurrentCluster()!, { name: 'operator', token: status.token });

  // The shipped policies and roles for people, under this file's names, policing its
  // namespaces only.
  const own = [a.name, b.name];
  for (const doc of policyFile('admission.yaml')) {
    const spec = doc.spec as { policyName?: string };
    if (doc.kind === 'ValidatingAdmissionPolicyBinding') {
      spec.policyName = `${s}-${spec.policyName}`;
      (doc.spec as Record<string, unknown>).matchResources = { namespaceSelector: { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'In', values: own }] } };
    }
    await applyClusterObject({ ...doc, metadata: { ...doc.metadata, name: `${s}-${doc.metadata.name}` } });
  }
  for (const doc of policyFile('roles-for-people.yaml')) await applyClusterObject({ ...doc, metadata: { ...doc.metadata, name: `${s}-${doc.metadata.name}` } });

  port = await freePort();
  operator = startOperator({
    kubeConfig: kc, log: testLogger(logs), metrics: createMetrics(), namespaces: own, operatorNamespace: a.name,
    accountStatus: true, verification: { address: `127.0.0.1:${port}` },
  });
  await operator.ready;
}, 120_000);

afterAll(async () => {
  await operator?.stop();
  for (const p of cleanup.reverse()) await admin.request('DELETE', p).catch(() => undefined);
  admin.close();
  expect(logs.join('')).not.toMatch(/ 403 |forbidden|denied request/i);
});

describe('accounts are objects', () => {
  let gateway = '';
  const authorize = async (body: object) => (await verify('/v1/authorize', gateway, body)).body as { allowed: boolean; reason: string };

  it('attack: a ServiceUser in team B naming team A\'s account and binding signer gets no signature there', async () => {
    // The verifier and a legitimate signer in team A.
    await inA().createServiceUser('gateway', { email: 'ops@example.com', accounts: [prod] });
    await bind(a.name, 'gateway-verifies', verifier, 'gateway');
    await inA().createServiceUser('releaser', { email: 'ops@example.com', accounts: [prod] });
    await bind(a.name, 'releaser-signs', signer, 'releaser', [prod]);
    // The attacker's objects in team B (created by a cluster admin: the operator is the line
    // of defence here, whoever wrote them).
    await inB().createServiceUser('intruder', { email: 'ops@example.com', accounts: [prod] });
    await bind(b.name, 'intruder-signs', signer, 'intruder', [prod]);

    await inA().waitFor('gateway', 'verifier permissions', (o) => (statusOf(o).permissions ?? []).length === 2);
    await inA().waitFor('releaser', 'signer permissions', (o) => (statusOf(o).permissions ?? []).some((p) => p.permission === 'signatures:sign'));
    const intruder = await inB().waitFor('intruder', 'AccountsAdmitted False', (o) => condition(o, 'AccountsAdmitted')?.status === 'False' && statusOf(o).phase === 'Active');
    expect(condition(intruder, 'AccountsAdmitted')).toMatchObject({ reason: 'NamespaceNotAdmitted', message: expect.stringContaining(`Account ${prod} admits kubernetes.io/metadata.name in (${a.name}), not namespace ${b.name}`) });
    expect(statusOf(intruder).accounts).toEqual([]);
    expect(statusOf(intruder).permissions).toEqual([]);
    await eventually('the refusal event', async () => ((await inB().events('intruder')).some((e) => e.type === 'Warning' && e.reason === 'NamespaceNotAdmitted' && e.message.includes(prod)) || undefined));
    const binding = await eventually('the binding refused', async () => {
      const o = await admin.get(resourcePath(resources.roleBindings, b.name, 'intruder-signs'));
      return condition(o, 'Ready')?.status === 'False' ? o : undefined;
    });
    expect(condition(binding, 'Ready')).toMatchObject({ reason: 'NamespaceNotAdmitted', message: expect.stringContaining(`grants nothing in account ${prod}`) });

    gateway = await tokenOf(a.name, 'gateway');
    const stolen = await tokenOf(b.name, 'intruder');
    expect(await authorize({ token: stolen, account: prod, permission: 'signatures:sign' })).toMatchObject({ allowed: false });
    expect(await authorize({ identity: `serviceuser:${b.name}:intruder`, account: prod, permission: 'signatures:sign' })).toMatchObject({ allowed: false });
    const introspected = (await verify('/v1/introspect', gateway, { token: stolen })).body;
    expect(introspected.accounts ?? []).not.toContain(prod);
    expect(JSON.stringify(introspected.permissions ?? [])).not.toContain(prod);
    // The same request for the legitimate signer is allowed: the refusal is the account's.
    expect(await authorize({ identity: `serviceuser:${a.name}:releaser`, account: prod, permission: 'signatures:sign' })).toMatchObject({ allowed: true });
  });

  it('follows the Account: widened, the intruder is admitted and counted; narrowed again, revoked', async () => {
    const account = () => admin.get(resourcePath(resources.accounts, undefined, prod));
    const counted = (n: number) => eventually(`${prod} counting ${n}`, async () => ((await account()).status as { serviceUsers?: number } | undefined)?.serviceUsers === n || undefined);
    await counted(2);
    const selector = (values: string[]) => ({ spec: { namespaceSelector: { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'In', values }] } } });
    await admin.mergePatch(resourcePath(resources.accounts, undefined, prod), selector([a.name, b.name]));
    await inB().waitFor('intruder', 'admitted', (o) => statusOf(o).accounts?.includes(prod) === true && (statusOf(o).permissions ?? []).length > 0);
    await eventually('authorized', async () => (await authorize({ identity: `serviceuser:${b.name}:intruder`, account: prod, permission: 'signatures:sign' })).allowed || undefined);
    await counted(3);
    const status = (await account()).status as { observedGeneration: number; conditions: { type: string; status: string; message: string }[] };
    expect(status.observedGeneration).toBe(2);
    expect(status.conditions.find((c) => c.type === 'Ready')).toMatchObject({ status: 'True', message: expect.stringContaining('3 ServiceUsers use it') });
    const listed = await kubectl(['get', 'suacct', prod]);
    expect(listed.out).toMatch(new RegExp(`^NAME\\s+DISPLAY NAME\\s+SERVICE USERS\\s+READY\\s+AGE\\n${prod}\\s+Test account ${prod}\\s+3\\s+True\\s`));

    await admin.mergePatch(resourcePath(resources.accounts, undefined, prod), selector([a.name]));
    await inB().waitFor('intruder', 'refused again', (o) => statusOf(o).accounts?.length === 0 && (statusOf(o).permissions ?? []).length === 0);
    await eventually('refused', async () => (!(await authorize({ identity: `serviceuser:${b.name}:intruder`, account: prod, permission: 'signatures:sign' })).allowed) || undefined);
    await counted(2);
    // Deleted, an Account admits no one.
    await inB().createServiceUser('member', { email: 'ops@example.com', accounts: [shared] });
    await inB().waitFor('member', 'admitted in shared', (o) => statusOf(o).accounts?.includes(shared) === true);
    await admin.request('DELETE', resourcePath(resources.accounts, undefined, shared));
    const gone = await inB().waitFor('member', 'AccountNotFound', (o) => condition(o, 'AccountsAdmitted')?.reason === 'AccountNotFound');
    expect(statusOf(gone).accounts).toEqual([]);
    await admin.apply(resourcePath(resources.accounts, undefined, shared), testAccount(shared, {}), 'tenancy-test');
    await inB().waitFor('member', 'admitted again', (o) => statusOf(o).accounts?.includes(shared) === true);
  });

  it('follows the namespace\'s labels', async () => {
    await inB().createServiceUser('labelled', { email: 'ops@example.com', accounts: [labelled] });
    await bind(b.name, 'labelled-signs', signer, 'labelled');
    await inB().waitFor('labelled', 'refused', (o) => condition(o, 'AccountsAdmitted')?.reason === 'NamespaceNotAdmitted');
    const label = (value: string | null) => admin.mergePatch(`/api/v1/namespaces/${b.name}`, { metadata: { labels: { [`tenancy.example.com/${s}`]: value } } });
    await label('member');
    await inB().waitFor('labelled', 'admitted by the label', (o) => statusOf(o).accounts?.includes(labelled) === true && (statusOf(o).permissions ?? []).some((p) => p.account === labelled));
    await label(null);
    await inB().waitFor('labelled', 'refused without it', (o) => condition(o, 'AccountsAdmitted')?.status === 'False' && (statusOf(o).permissions ?? []).length === 0);
  });
});

describe('admission checks who asks', () => {
  const alice = person('alice');
  const devs = `${s}-devs`;
  const aliceInTeam = person('alice', [devs]);

  beforeAll(async () => {
    // alice edits namespace B, bob views it: Kubernetes' own ClusterRoles, into which the
    // shipped roles for people are aggregated.
    for (const [user, role] of [['alice', 'edit'], ['bob', 'view']]) {
      await admin.request('POST', `/apis/rbac.authorization.k8s.io/v1/namespaces/${b.name}/rolebindings`, {
        apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'RoleBinding', metadata: { name: `${user}-${role}` },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role }, subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: user }],
      });
    }
  });

  const can = async (who: string[], ...args: string[]) => (await kubectl(['auth', 'can-i', '-n', b.name, ...args, ...who])).out.trim();

  it('aggregates the roles for people into view, edit and admin, without status for editors', async () => {
    await eventually('edit to include ServiceUsers', async () => ((await can(alice, 'create', 'serviceusers.serviceusers.dev')) === 'yes' ? true : undefined), 30_000);
    expect(await can(alice, 'create', 'rolebindings.serviceusers.dev')).toBe('yes');
    expect(await can(alice, 'patch', 'serviceusers.serviceusers.dev', '--subresource=status')).toBe('no');
    await eventually('view to include ServiceUsers', async () => ((await can(person('bob'), 'list', 'serviceusers.serviceusers.dev')) === 'yes' ? true : undefined), 30_000);
    expect(await can(person('bob'), 'create', 'serviceusers.serviceusers.dev')).toBe('no');
    expect(await can(person('bob'), 'get', 'serviceusers.serviceusers.dev', '--subresource=status')).toBe('yes');
  });

  it('refuses a namespace editor naming an account without use, or binding a Role without bind, saying what to grant', async () => {
    // The policy is loaded by the API server asynchronously: wait for the first refusal.
    const refusedUse = await eventually('the policy in force', async () => {
      const r = await create(alice, serviceUserJson('ci', [shared]), true);
      return r.ok ? undefined : r;
    }, 30_000);
    expect(refusedUse.err).toContain(`alice may not use account ${shared} in namespace ${b.name}`);
    expect(refusedUse.err).toContain(`verb use on accounts.serviceusers.dev named ${shared}`);
    expect(refusedUse.err).toContain(`resources: [accounts], verbs: [use], resourceNames: [${shared}]`);
    // Refused by two policies (bind, and use of the accounts a binding without spec.accounts
    // reaches): the API server reports one of them, in no fixed order. The bind refusal alone
    // is checked below, for someone who may use the account.
    const refusedBind = await create(alice, bindingJson('ci-signs', signer, 'ci'));
    expect(refusedBind.ok).toBe(false);
    expect(refusedBind.err).toMatch(new RegExp(`alice may not (bind Role ${signer}|use every account) in namespace ${b.name}`));
    expect(await inB().serviceUser('ci').then(() => 'exists', () => 'absent')).toBe('absent');
  });

  it('accepts them once a platform team grants use of the account and bind of the Role to the team', async () => {
    await applyClusterObject({
      apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', metadata: { name: `${s}-team-b` },
      rules: [
        { apiGroups: ['serviceusers.dev'], resources: ['accounts'], verbs: ['use'], resourceNames: [shared] },
        { apiGroups: ['serviceusers.dev'], resources: ['roles'], verbs: ['bind'], resourceNames: [signer] },
      ],
    } as KubeObject);
    await admin.request('POST', `/apis/rbac.authorization.k8s.io/v1/namespaces/${b.name}/rolebindings`, {
      apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'RoleBinding', metadata: { name: 'team-b-accounts' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: `${s}-team-b` }, subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'Group', name: devs }],
    });
    const created = await eventually('the grant in force', async () => {
      const r = await create(aliceInTeam, serviceUserJson('ci', [shared]));
      return r.ok ? r : undefined;
    });
    expect(created.out).toContain('serviceuser.serviceusers.dev/ci created');
    expect((await create(aliceInTeam, bindingJson('ci-signs', signer, 'ci', [shared]))).ok).toBe(true);
    // Only what was granted: another account, another Role.
    expect((await create(aliceInTeam, serviceUserJson('ci-prod', [shared, prod]), true)).err).toContain(`may not use account ${prod} in`);
    const refusedBind = (await create(aliceInTeam, bindingJson('ci-verifies', verifier, 'ci', [shared]), true)).err;
    expect(refusedBind).toContain(`alice may not bind Role ${verifier} in namespace ${b.name}`);
    expect(refusedBind).toContain(`resources: [roles], verbs: [bind], resourceNames: [${verifier}]`);
    // Each account named anew costs an authorizer check: at most 16 in one write.
    const many = Array.from({ length: 17 }, (_, i) => `${s}-many-${i}`);
    expect((await create(aliceInTeam, serviceUserJson('ci-many', many), true)).err).toContain('names 17 accounts anew; name at most 16 in one write');
    // Without the group, alice alone is still refused.
    expect((await create(alice, serviceUserJson('ci-alone', [shared]), true)).ok).toBe(false);
    // Granted, the binding works as any other.
    await inB().waitFor('ci', 'signer permissions in shared', (o) => (statusOf(o).permissions ?? []).some((p) => p.account === shared && p.permission === 'signatures:sign'));
  });

  it('asks only about accounts named anew on update, and about a binding only when its spec changes', async () => {
    const patch = (who: string[], kind: string, name: string, body: object) => kubectl(['patch', kind, name, '-n', b.name, '--type', 'merge', '-p', JSON.stringify(body), ...who]);
    // intruder names prod, which alice may not use: editing something else is still hers to do.
    expect((await patch(alice, 'serviceusers.serviceusers.dev', 'intruder', { spec: { description: 'edited by alice' } })).ok).toBe(true);
    const added = await patch(aliceInTeam, 'serviceusers.serviceusers.dev', 'ci', { spec: { accounts: [shared, prod] } });
    expect(added.ok).toBe(false);
    expect(added.err).toContain(`may not use account ${prod}`);
    expect(added.err).not.toContain(`account ${shared}`);
    // A label on a binding she could not have created is not a new grant...
    expect((await patch(alice, 'rolebindings.serviceusers.dev', 'intruder-signs', { metadata: { labels: { reviewed: 'yes' } } })).ok).toBe(true);
    // ...a new subject is.
    const widened = await patch(alice, 'rolebindings.serviceusers.dev', 'intruder-signs', { spec: { subjects: [{ kind: 'ServiceUser', name: 'intruder' }, { kind: 'ServiceUser', name: 'member' }] } });
    expect(widened.ok).toBe(false);
    expect(widened.err).toContain(`may not bind Role ${signer}`);
  });

  it('leaves cluster admins and the operator\'s own writes alone', async () => {
    // A cluster admin (system:masters) names any account and binds any Role.
    expect((await kubectl(['create', '-n', b.name, '-f', '-'], serviceUserJson('by-admin', [prod]))).ok).toBe(true);
    expect((await kubectl(['create', '-n', b.name, '-f', '-'], bindingJson('by-admin-verifies', verifier, 'by-admin', [prod]))).ok).toBe(true);
    // The operator (a ServiceAccount with neither bind nor use) adds its finalizer, writes
    // status on alice's ServiceUser and binding, and removes the finalizer on deletion.
    const ci = await inB().waitFor('ci', 'Active with its finalizer', (o) => statusOf(o).phase === 'Active' && (o.metadata.finalizers ?? []).includes('serviceusers.dev/revoke'));
    expect(statusOf(ci).accounts).toEqual([shared]);
    await eventually('the binding status', async () => (condition(await admin.get(resourcePath(resources.roleBindings, b.name, 'ci-signs')), 'Ready')?.status === 'True' ? true : undefined));
    expect((await kubectl(['delete', 'serviceusers.serviceusers.dev', 'ci', '-n', b.name, '--wait=false', ...alice])).ok).toBe(true);
    await eventually('deletion completed by the finalizer', () => inB().serviceUser('ci').then(() => undefined, () => true));
  });
});

describe('a RoleBinding grants only in accounts its author may use', () => {
  const restricted = `${s}-restricted`;
  const verifiers = `${s}-verifiers`;
  // alice (edit in B) may use shared and bind the verifier Role there; restricted admits
  // namespace B, but she was never let use it.
  const alice = person('alice', [verifiers]);
  const introspect = async (caller: string, token: string) => (await verify('/v1/introspect', caller, { token })).body;
  const permitted = (account: string) => (o: KubeObject) => (statusOf(o).permissions ?? []).some((p) => p.account === account && p.permission === 'verification:introspect');

  beforeAll(async () => {
    await admin.apply(resourcePath(resources.accounts, undefined, restricted), testAccount(restricted, {}), 'tenancy-test');
    cleanup.push(resourcePath(resources.accounts, undefined, restricted));
    await applyClusterObject({
      apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', metadata: { name: verifiers },
      rules: [
        { apiGroups: ['serviceusers.dev'], resources: ['accounts'], verbs: ['use'], resourceNames: [shared] },
        { apiGroups: ['serviceusers.dev'], resources: ['roles'], verbs: ['bind'], resourceNames: [verifier] },
      ],
    } as KubeObject);
    await admin.request('POST', `/apis/rbac.authorization.k8s.io/v1/namespaces/${b.name}/rolebindings`, {
      apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'RoleBinding', metadata: { name: verifiers },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: verifiers }, subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'Group', name: verifiers }],
    });
    // Written by whoever may use restricted: a gateway acting in shared and restricted, the
    // victim acting in restricted only, and a colleague in shared.
    await inB().createServiceUser('vault', { email: 'ops@example.com', accounts: [shared, restricted] });
    await inB().createServiceUser('payroll', { email: 'ops@example.com', accounts: [restricted] });
    await inB().createServiceUser('colleague', { email: 'ops@example.com', accounts: [shared] });
  });

  it('attack: an editor binding the verifier Role without spec.accounts to a ServiceUser in a refused account is refused, and its token cannot introspect there', async () => {
    await eventually('alice\'s grant in force', async () => ((await create(alice, bindingJson('vault-verifies', verifier, 'vault', [shared]), true)).ok || undefined), 30_000);
    // The attack: no spec.accounts, so the grant would reach every account vault names.
    const attack = await create(alice, bindingJson('vault-verifies-all', verifier, 'vault'));
    // What she may do: bind it in shared, by name.
    expect((await create(alice, bindingJson('vault-verifies', verifier, 'vault', [shared]))).ok).toBe(true);
    await inB().waitFor('vault', 'introspect in shared', permitted(shared));
    const vault = await tokenOf(b.name, 'vault');
    // The token works as a verifier in shared (so verification has vault's permissions as
    // recorded)...
    expect(await introspect(vault, await tokenOf(b.name, 'colleague'))).toMatchObject({ active: true, sub: `serviceuser:${b.name}:colleague` });
    // ...and learns nothing in restricted.
    expect(await introspect(vault, await tokenOf(b.name, 'payroll'))).toEqual({ active: false });
    expect(attack.ok).toBe(false);
    expect(attack.err).toContain('RoleBinding vault-verifies-all refused: it has no spec.accounts, so it would grant Role service-user-operator.verifier in every account its subjects name');
    expect(attack.err).toContain(`alice may not use every account in namespace ${b.name}: name the accounts to grant in with spec.accounts`);
  });

  it('attack: a binding written without spec.accounts does not follow an account its subject names later', async () => {
    // A platform auditor verifying in restricted: it sees gw once gw acts there.
    await inB().createServiceUser('auditor', { email: 'ops@example.com', accounts: [restricted] });
    await bind(b.name, 'auditor-verifies', verifier, 'auditor', [restricted]);
    await inB().waitFor('auditor', 'introspect in restricted', permitted(restricted));
    // Written without spec.accounts before the policy asked (a cluster admin stands in).
    await inB().createServiceUser('gw', { email: 'ops@example.com', accounts: [shared] });
    await bind(b.name, 'gw-verifies', verifier, 'gw');
    await eventually('the binding resolved', async () => (condition(await admin.get(resourcePath(resources.roleBindings, b.name, 'gw-verifies')), 'Ready')?.status === 'True' || undefined));
    await inB().waitFor('gw', 'introspect in shared', permitted(shared));
    const token = await tokenOf(b.name, 'gw');
    // Someone who may use restricted lets gw act there: that is not a verifier grant there.
    await admin.mergePatch(resourcePath(resources.serviceUsers, b.name, 'gw'), { spec: { accounts: [shared, restricted] } });
    const auditor = await tokenOf(b.name, 'auditor');
    await eventually('verification to see gw in restricted', async () => ((await introspect(auditor, token)).active === true || undefined));
    expect(await introspect(token, await tokenOf(b.name, 'colleague'))).toMatchObject({ active: true });
    expect(await introspect(token, await tokenOf(b.name, 'payroll'))).toEqual({ active: false });
    const gw = await inB().serviceUser('gw');
    expect(statusOf(gw).accounts).toEqual([shared, restricted]);
    expect(statusOf(gw).permissions).not.toContainEqual(expect.objectContaining({ account: restricted }));
    const binding = await eventually('the binding saying so', async () => {
      const o = await admin.get(resourcePath(resources.roleBindings, b.name, 'gw-verifies'));
      return condition(o, 'Ready')?.reason === 'AccountsAddedAfterBinding' ? o : undefined;
    });
    expect((binding.status as { pinnedAccounts?: unknown }).pinnedAccounts).toEqual([{ subject: 'gw', accounts: [shared] }]);
    expect(condition(binding, 'Ready')?.message).toContain(`grants nothing in ${restricted}: ServiceUser gw named it after this binding (without spec.accounts) was first resolved`);
    // Named in spec.accounts (a write the policy judges), restricted is granted.
    await admin.mergePatch(resourcePath(resources.roleBindings, b.name, 'gw-verifies'), { spec: { accounts: [shared, restricted] } });
    await inB().waitFor('gw', 'introspect in restricted', permitted(restricted));
    await eventually('introspection in restricted', async () => ((await introspect(token, await tokenOf(b.name, 'payroll'))).sub === `serviceuser:${b.name}:payroll` || undefined));
  });
});

describe('secretTemplate keys that have other controllers copy the Secret', () => {
  // mallory may manage ServiceUsers in B (the shipped editor role alone) but not read Secrets.
  const mallory = person('mallory');
  const replicateTo = 'replicator.v1.mittwald.de/replicate-to';
  const template = (annotations: Record<string, string>) => JSON.stringify({ spec: { credentials: { secretTemplate: { annotations } } } });
  const patchAs = (who: string[], body: string, dryRun = false) =>
    kubectl(['patch', 'serviceusers.serviceusers.dev', 'replicated', '-n', b.name, '--type', 'merge', '-p', body, ...(dryRun ? ['--dry-run=server'] : []), ...who]);
  const annotationsOfSecret = async () => (await inB().secret('replicated-credentials'))?.metadata.annotations ?? {};

  beforeAll(async () => {
    await admin.request('POST', `/apis/rbac.authorization.k8s.io/v1/namespaces/${b.name}/rolebindings`, {
      apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'RoleBinding', metadata: { name: 'mallory-edits-service-users' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: `${s}-serviceusers.dev-editor` }, subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: 'mallory' }],
    });
    await inB().createServiceUser('replicated', { email: 'ops@example.com', accounts: [shared] });
    await inB().waitFor('replicated', 'Active', (o) => statusOf(o).phase === 'Active');
  });

  it('attack: a ServiceUser editor who cannot read Secrets asks the replicator to copy one, and admission refuses, naming the field and key', async () => {
    await eventually('mallory\'s grant in force', async () => ((await patchAs(mallory, template({ 'example.com/owner': 'team-b' }), true)).ok || undefined));
    expect((await kubectl(['auth', 'can-i', 'get', 'secrets', '-n', b.name, ...mallory])).out.trim()).toBe('no');
    const refused = await patchAs(mallory, template({ [replicateTo]: 'mallory-playground', 'example.com/owner': 'team-b' }));
    expect(refused.ok).toBe(false);
    expect(refused.err).toContain(`ServiceUser replicated refused: spec.credentials.secretTemplate.annotations key ${replicateTo} may not be set on its Secret`);
    expect(refused.err).toContain('this platform refuses keys starting with replicator.v1.mittwald.de/, reflector.v1.k8s.emberstack.com/, kubed.appscode.com/');
    const reflected = await patchAs(mallory, JSON.stringify({ spec: { credentials: { secretTemplate: { labels: { 'reflector.v1.k8s.emberstack.com/reflection-allowed': 'true' } } } } }));
    expect(reflected.err).toContain('spec.credentials.secretTemplate.labels key reflector.v1.k8s.emberstack.com/reflection-allowed may not be set');
    // A cluster admin is refused as well: the platform allows a prefix with its values.
    expect((await kubectl(['patch', 'serviceusers.serviceusers.dev', 'replicated', '-n', b.name, '--type', 'merge', '-p', template({ [replicateTo]: 'elsewhere' })])).ok).toBe(false);
    // Other keys pass.
    expect((await patchAs(mallory, template({ 'example.com/owner': 'team-b' }))).ok).toBe(true);
    await eventually('the owner annotation on the Secret', async () => ((await annotationsOfSecret())['example.com/owner'] === 'team-b' || undefined));
  });

  it('attack: with the policy bypassed, the operator leaves the key off the Secret, says so, and removes it from the Secret', async () => {
    // The policy switched off (admissionPolicy.enabled: false, or a cluster without it).
    await admin.request('DELETE', clusterPath('ValidatingAdmissionPolicyBinding', `${s}-serviceusers.dev-secret-template`)).catch((err: unknown) => {
      if (!isNotFound(err)) throw err; // never installed: off already
    });
    await eventually('the policy gone', async () => ((await patchAs(mallory, template({ [replicateTo]: 'mallory-playground' }), true)).ok || undefined), 30_000);
    expect((await patchAs(mallory, template({ [replicateTo]: 'mallory-playground' }))).ok).toBe(true);
    // Reconciled (the Secret is written before status records the generation): not on the Secret.
    await inB().waitFor('replicated', 'the patch reconciled', (o) => (o.status as { observedGeneration?: number } | undefined)?.observedGeneration === o.metadata.generation);
    expect(await annotationsOfSecret()).not.toHaveProperty(replicateTo);
    const su = await inB().waitFor('replicated', 'SecretTemplateAdmitted False', (o) => condition(o, 'SecretTemplateAdmitted')?.status === 'False');
    expect(condition(su, 'SecretTemplateAdmitted')).toMatchObject({
      reason: 'SecretTemplateKeyRefused',
      message: expect.stringContaining(`not written to the Secret: spec.credentials.secretTemplate.annotations[${replicateTo}] (keys starting with replicator.v1.mittwald.de/ ask another controller to copy the Secret`),
    });
    await eventually('the Warning event', async () => ((await inB().events('replicated')).some((e) => e.type === 'Warning' && e.reason === 'SecretTemplateKeyRefused' && e.message.includes(replicateTo)) || undefined));
    expect(statusOf(su).phase).toBe('Active');
    // Put there by other means (an operator before this check wrote it): removed.
    await admin.mergePatch('/api/v1/namespaces/' + b.name + '/secrets/replicated-credentials', { metadata: { annotations: { [replicateTo]: 'mallory-playground' } } });
    await eventually('the annotation removed', async () => (!(replicateTo in (await annotationsOfSecret())) || undefined));
    // The key dropped from the spec, the all-clear.
    await admin.mergePatch(resourcePath(resources.serviceUsers, b.name, 'replicated'), { spec: { credentials: { secretTemplate: { annotations: { [replicateTo]: null } } } } });
    await inB().waitFor('replicated', 'SecretTemplateAdmitted True', (o) => condition(o, 'SecretTemplateAdmitted')?.status === 'True');
  });
});

describe('a tenant\'s requests are bounded (issue 22 item 4)', () => {
  const mallory = person('mallory');
  const name = 'churner';
  const dir = mkdtempSync(path.join(tmpdir(), 'tenancy-crl-'));
  /** The serials the CRL lists, as a consumer gets it: curl from /v1/crl, read and verified by openssl. */
  async function crlSerials(): Promise<Set<string>> {
    const ca = path.join(dir, 'ca.crt');
    writeFileSync(ca, operator.authority.ca.certPem);
    const crl = path.join(dir, 'crl.pem');
    expect((await run('curl', ['-sS', '-m', '10', '--cacert', ca, '-o', crl, `https://127.0.0.1:${port}/v1/crl`])).ok).toBe(true);
    const text = await run('openssl', ['crl', '-in', crl, '-noout', '-text', '-CAfile', ca, '-verify']);
    expect(text.output).toContain('verify OK');
    return new Set([...text.output.matchAll(/Serial Number: ([0-9A-F]+)/g)].map((m) => m[1]!));
  }

  beforeAll(async () => {
    // mallory edits namespace B with Kubernetes' own edit role; the ServiceUser is there already.
    await admin.request('POST', `/apis/rbac.authorization.k8s.io/v1/namespaces/${b.name}/rolebindings`, {
      apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'RoleBinding', metadata: { name: 'mallory-edit' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'edit' }, subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: 'mallory' }],
    });
    await post('serviceUsers', b.name, JSON.parse(serviceUserJson(name, [shared])) as object);
  });

  it('attack: a namespace editor firing 40 rotation and renewal requests in seconds adds a serial to the CRL and a token in grace at most once a minute; the last request is still acted on', { timeout: 600_000 }, async () => {
    await inB().waitFor(name, 'Active with a certificate', (o) => statusOf(o).phase === 'Active' && !!o.status?.certificate, 60_000);
    const before = await crlSerials();
    const requests = 40;
    const started = Date.now();
    for (let i = 1; i <= requests; i++) {
      const body = { spec: { credentials: { token: { rotationRequest: `r${i}` }, clientCertificate: { renewalRequest: `r${i}` } } } };
      const r = await kubectl(['patch', 'serviceusers.serviceusers.dev', name, '-n', b.name, '--type', 'merge', '-p', JSON.stringify(body), ...mallory]);
      expect(r.ok, r.err).toBe(true);
    }
    // Never dropped: the latest value of each is acted on, once the minute since the last allows.
    const done = await inB().waitFor(name, 'the last requests acted on', (o) => o.status?.lastRotationRequest === `r${requests}` && o.status?.lastRenewalRequest === `r${requests}`, 300_000);
    // At most one of each a minute from the first request to the last one acted on.
    const bound = Math.floor((Date.now() - started) / 60_000) + 1;
    const added = [...(await crlSerials())].filter((s) => !before.has(s));
    const tokens = (done.status?.tokens ?? []) as { state: string }[];
    expect(added.length).toBeGreaterThanOrEqual(1);
    expect(added.length, `serials added to the CRL by ${requests} renewal requests`).toBeLessThanOrEqual(bound);
    expect(tokens.filter((t) => t.state === 'Grace').length, `tokens in grace after ${requests} rotation requests`).toBeLessThanOrEqual(bound);
    expect(condition(done, 'RequestsThrottled')).toBeUndefined();
    const events = await inB().events(name);
    expect(events.some((e) => e.reason === 'RequestThrottled' && e.message.includes('at most one rotation and one renewal a minute'))).toBe(true);
  });
});
