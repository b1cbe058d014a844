// restartTargets with real Deployments: the local control plane runs the deployment
// controller, so a changed pod template makes a new ReplicaSet — what a rollout is. Credential
// changes (issue, revocation, scheduled rotation) roll out; status-only changes and a new end
// date do not; a missing workload or one that does not read the Secret is a condition and an
// event, never a failure, and is left untouched.
import { describe, expect, it } from 'vitest';
import { resources } from '../../src/api/resources.ts';
import { resourcePath, type KubeObject } from '../../src/controller/kube.ts';
import { credentialsDigest, digestAnnotation } from '../../src/serviceuser/restarts.ts';
import { eventually, useNamespace } from '../kube.ts';
import { api, useOperator, statusOf } from '../operator.ts';

const ns = useNamespace('restarts');
// Another tenant's namespace, with a workload of the same name as a target.
const other = useNamespace('restarts-other');
const running = useOperator(ns);
const k = () => api(running.client, ns.name);
const c = () => running.client;

const apps = (plural: string, name?: string) => `/apis/apps/v1/namespaces/${ns.name}/${plural}${name ? `/${name}` : ''}`;
type Template = { metadata?: { annotations?: Record<string, string> } };

function workload(kind: 'Deployment' | 'StatefulSet', name: string, secretName: string | undefined) {
  const container = {
    name: 'app',
    image: 'registry.example/app:1',
    // The SM_API_KEY habit: a token read once, at start, from an environment variable.
    ...(secretName ? { env: [{ name: 'API_TOKEN', valueFrom: { secretKeyRef: { name: secretName, key: 'token' } } }] } : {}),
  };
  return {
    apiVersion: 'apps/v1',
    kind,
    metadata: { name },
    spec: {
      replicas: 1,
      selector: { matchLabels: { app: name } },
      ...(kind === 'StatefulSet' ? { serviceName: name } : {}),
      template: { metadata: { labels: { app: name } }, spec: { containers: [container] } },
    },
  };
}

const annotationOf = async (plural: string, name: string) =>
  ((await c().get(apps(plural, name))).spec as { template: Template }).template.metadata?.annotations?.[digestAnnotation];

const replicaSets = async (app: string) =>
  (await c().get<{ items: (KubeObject & { spec: { template: Template } })[] }>(`${apps('replicasets')}?labelSelector=app%3D${app}`)).items;

/** The digest of the credential keys the Secret holds now. */
async function secretDigest(name: string): Promise<string> {
  const secret = (await k().secret(name))!;
  return credentialsDigest(Object.fromEntries(Object.entries((secret.data as Record<string, string>) ?? {}).map(([key, v]) => [key, Buffer.from(v, 'base64')])));
}

const activeToken = (o: KubeObject) => statusOf(o).tokens?.find((t) => t.state === 'Active')?.id;

/** Waits until the Deployment carries the Secret's current digest and has a ReplicaSet for it. */
async function rolledOut(app: string, secret: string): Promise<string> {
  return eventually(`${app} rolled out with the current credentials`, async () => {
    const digest = await secretDigest(secret);
    if ((await annotationOf('deployments', app)) !== digest) return undefined;
    return (await replicaSets(app)).some((rs) => rs.spec.template.metadata?.annotations?.[digestAnnotation] === digest) ? digest : undefined;
  });
}

describe('restartTargets', () => {
  it('rolls a Deployment out when the credentials change: issue, revocation, scheduled rotation', { timeout: 120_000 }, async () => {
    await c().request('POST', apps('deployments'), workload('Deployment', 'web', 'web-credentials'));
    await eventually('the first ReplicaSet', async () => ((await replicaSets('web')).length === 1 ? true : undefined));
    await k().createServiceUser('web', { email: 'ops@example.com', accounts: ['acme'], credentials: { token: { rotateEvery: '1h', gracePeriod: '10m' }, restartTargets: [{ kind: 'Deployment', name: 'web' }] } });
    const issued = await rolledOut('web', 'web-credentials');
    expect((await replicaSets('web')).length).toBe(2);
    const su = await k().waitFor('web', 'RestartTargetsReady', (o) => statusOf(o).conditions?.some((x) => x.type === 'RestartTargetsReady' && x.status === 'True') ?? false);
    expect(statusOf(su).phase).toBe('Active');
    // The annotation is a digest, not a credential, and only it is the operator's.
    const token = Buffer.from(((await k().secret('web-credentials'))!.data as Record<string, string>).token!, 'base64').toString();
    expect(JSON.stringify(await c().get(apps('deployments', 'web')))).not.toContain(token);
    const managers = ((await c().get(apps('deployments', 'web'))).metadata.managedFields as { manager: string; fieldsV1: unknown }[]).filter((m) => m.manager === 'service-user-operator');
    expect(managers).toHaveLength(1);
    expect(JSON.stringify(managers[0]!.fieldsV1)).toBe(JSON.stringify({ 'f:spec': { 'f:template': { 'f:metadata': { 'f:annotations': { [`f:${digestAnnotation}`]: {} } } } } }));

    // Revocation of the active token: a new token, a new digest, a new ReplicaSet.
    const first = activeToken(su)!;
    await k().patchServiceUser('web', { credentials: { token: { revokedTokenIds: [first] } } });
    const afterRevoke = await eventually('a new digest after the revocation', async () => {
      const d = await rolledOut('web', 'web-credentials');
      return d !== issued ? d : undefined;
    });
    expect((await replicaSets('web')).length).toBe(3);
    const events = await k().events('web');
    expect(events.some((e) => e.reason === 'RolloutTriggered' && e.message.includes('Deployment/web rolls out'))).toBe(true);

    // Scheduled rotation, an hour later on the operator's clock.
    running.clock.offsetMs += 2 * 3_600_000;
    running.operator.controllers.serviceUsers.enqueue(`${ns.name}/web`);
    await eventually('a new digest after the rotation', async () => {
      const d = await rolledOut('web', 'web-credentials');
      return d !== afterRevoke ? d : undefined;
    });
    expect((await replicaSets('web')).length).toBe(4);
    running.clock.offsetMs = 0;
  });

  it('never restarts for a status-only change or a new end date', { timeout: 60_000 }, async () => {
    await c().request('POST', apps('deployments'), workload('Deployment', 'calm', 'calm-credentials'));
    await k().createServiceUser('calm', { email: 'ops@example.com', accounts: ['acme'], credentials: { restartTargets: [{ kind: 'Deployment', name: 'calm' }] } });
    const digest = await rolledOut('calm', 'calm-credentials');
    const before = (await replicaSets('calm')).length;
    const generation = (await c().get(apps('deployments', 'calm'))).metadata.generation;
    // Status: permissions from a new binding (to a role that need not exist: status changes all the same).
    await c().request('POST', resourcePath(resources.roleBindings, ns.name), {
      apiVersion: 'serviceusers.dev/v1alpha1', kind: 'RoleBinding', metadata: { name: 'calm-binding' },
      spec: { roleRef: { name: 'no-such-role' }, subjects: [{ kind: 'ServiceUser', name: 'calm' }] },
    });
    // A new end date changes the Secret's expires-at, not a credential.
    await k().patchServiceUser('calm', { endDate: '2099-01-01', description: 'changed' });
    await k().waitFor('calm', 'the new end date in status', (o) => (o.status as { expiresAt?: string }).expiresAt === '2099-01-01T23:59:59Z');
    await eventually('the Secret to carry the new end date', async () => {
      const s = (await k().secret('calm-credentials'))!;
      return Buffer.from((s.data as Record<string, string>)['expires-at'] ?? '', 'base64').toString() === '2099-01-01T23:59:59Z' || undefined;
    });
    expect(await annotationOf('deployments', 'calm')).toBe(digest);
    expect((await c().get(apps('deployments', 'calm'))).metadata.generation).toBe(generation);
    expect((await replicaSets('calm')).length).toBe(before);
  });

  it('attack: a digest forged into status (a tenant with status write) is put back; the target ends at the credentials the Secret holds', { timeout: 60_000 }, async () => {
    await c().request('POST', apps('deployments'), workload('Deployment', 'forged', 'forged-credentials'));
    await k().createServiceUser('forged', { email: 'ops@example.com', accounts: ['acme'], credentials: { restartTargets: [{ kind: 'Deployment', name: 'forged' }] } });
    const digest = await rolledOut('forged', 'forged-credentials');
    const fake = 'f'.repeat(64);
    const patched = await c().mergePatch(resourcePath(resources.serviceUsers, ns.name, 'forged', 'status'), { status: { credentialsDigest: fake } });
    expect((patched.status as { credentialsDigest?: string }).credentialsDigest).toBe(fake);
    // The ServiceUser reconcile owns the field: it writes the digest of what it placed back.
    await k().waitFor('forged', 'the true digest back in status', (o) => (o.status as { credentialsDigest?: string }).credentialsDigest === digest);
    await eventually('the Deployment back at the true digest', async () => ((await annotationOf('deployments', 'forged')) === digest ? true : undefined));
    expect(await secretDigest('forged-credentials')).toBe(digest);
  });

  it("its condition is the restarts controller's own: under its field manager, kept through the ServiceUser reconcile's writes, released when the targets go", { timeout: 60_000 }, async () => {
    await c().request('POST', apps('deployments'), workload('Deployment', 'owned', 'owned-credentials'));
    await k().createServiceUser('owned', { email: 'ops@example.com', accounts: ['acme'], credentials: { clientCertificate: { enabled: false }, restartTargets: [{ kind: 'Deployment', name: 'owned' }] } });
    const issued = await rolledOut('owned', 'owned-credentials');
    const ready = (o: KubeObject) => statusOf(o).conditions?.some((x) => x.type === 'RestartTargetsReady' && x.status === 'True') ?? false;
    const su = await k().waitFor('owned', 'RestartTargetsReady', ready);
    // The digest status records is the one the targets carry.
    expect((su.status as { credentialsDigest?: string }).credentialsDigest).toBe(issued);
    const statusFields = (o: KubeObject, manager: string) => JSON.stringify((o.metadata.managedFields as { manager: string; subresource?: string; fieldsV1: unknown }[]).filter((m) => m.manager === manager && m.subresource === 'status').map((m) => m.fieldsV1));
    expect(statusFields(su, 'service-user-operator-restarts')).toContain('RestartTargetsReady');
    expect(statusFields(su, 'service-user-operator-restarts')).not.toContain('f:phase');
    expect(statusFields(su, 'service-user-operator')).not.toContain('RestartTargetsReady');
    expect(statusFields(su, 'service-user-operator')).toContain('f:credentialsDigest');
    // A status write of the ServiceUser reconcile (a revocation) keeps the condition.
    await k().patchServiceUser('owned', { credentials: { token: { revokedTokenIds: [activeToken(su)!] } } });
    await eventually('a new digest after the revocation', async () => {
      const d = await rolledOut('owned', 'owned-credentials');
      return d !== issued ? d : undefined;
    });
    expect(ready(await k().waitFor('owned', 'the new digest recorded', (o) => (o.status as { credentialsDigest?: string }).credentialsDigest !== issued))).toBe(true);
    // No targets: the condition goes.
    await k().patchServiceUser('owned', { credentials: { restartTargets: null } });
    await k().waitFor('owned', 'the condition released', (o) => !(statusOf(o).conditions ?? []).some((x) => x.type === 'RestartTargetsReady') && statusOf(o).phase === 'Active');
  });

  it('a missing workload, or one that does not read the Secret, is a condition and an event, never a failure', { timeout: 60_000 }, async () => {
    await c().request('POST', apps('statefulsets'), workload('StatefulSet', 'db', undefined));
    const elsewhere = `/apis/apps/v1/namespaces/${other.name}/deployments`;
    await c().request('POST', elsewhere, workload('Deployment', 'ghost', 'lonely-credentials'));
    await k().createServiceUser('lonely', {
      email: 'ops@example.com', accounts: ['acme'],
      credentials: { restartTargets: [{ kind: 'Deployment', name: 'ghost' }, { kind: 'StatefulSet', name: 'db' }] },
    });
    const su = await k().waitFor('lonely', 'the condition', (o) => statusOf(o).conditions?.some((x) => x.type === 'RestartTargetsReady') ?? false);
    expect(statusOf(su).phase).toBe('Active');
    const condition = statusOf(su).conditions!.find((x) => x.type === 'RestartTargetsReady')!;
    expect(condition).toMatchObject({ status: 'False', reason: 'TargetNotConsumer' });
    expect(condition.message).toContain('Deployment/ghost not found in this namespace');
    expect(condition.message).toContain('StatefulSet/db does not read Secret lonely-credentials');
    const events = await eventually('the warning', async () => {
      const list = (await k().events('lonely')).filter((e) => e.reason === 'TargetNotConsumer');
      return list.length ? list : undefined;
    });
    expect(events[0]!.type).toBe('Warning');
    expect(await annotationOf('statefulsets', 'db')).toBeUndefined();
    // A workload created later starts with the current credentials; the next change annotates it.
    await c().request('POST', apps('deployments'), workload('Deployment', 'ghost', 'lonely-credentials'));
    expect(await annotationOf('deployments', 'ghost')).toBeUndefined();
    const first = activeToken(su)!;
    await k().patchServiceUser('lonely', { credentials: { token: { revokedTokenIds: [first] } } });
    await rolledOut('ghost', 'lonely-credentials');
    // The same name in another namespace was never touched.
    const foreign = await c().get(`${elsewhere}/ghost`);
    expect((foreign.spec as { template: Template }).template.metadata?.annotations?.[digestAnnotation]).toBeUndefined();
    expect(JSON.stringify(foreign.metadata.managedFields)).not.toContain('service-user-operator');
  });
});
