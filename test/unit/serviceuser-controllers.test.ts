// The restarts and notices controllers beside the ServiceUser reconcile, without a cluster:
// their pure decisions (what each does for a user as cached), and their reconciles against a
// client that records requests — who writes which status field, under which field manager,
// and in what order. Time is the fake clock's.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { serviceUser, type NoticeStatus, type ServiceUser } from '../../src/api/serviceuser.ts';
import { typedServiceUser, type ServiceUserEntry } from '../../src/api/stores.ts';
import { ApiError, type KubeClient, type KubeObject } from '../../src/controller/kube.ts';
import type { Condition } from '../../src/controller/conditions.ts';
import { createMetrics } from '../../src/observability/metrics.ts';
import { noticesReconciler, noticesToSend } from '../../src/serviceuser/notices-controller.ts';
import { pendingOutbox, sentRecord, withNotices } from '../../src/serviceuser/notices.ts';
import { noticeDelivery } from '../../src/serviceuser/notify.ts';
import { restartsReconciler } from '../../src/serviceuser/restarts-controller.ts';
import { digestAnnotation, restartCondition, restartIntent, sameCondition } from '../../src/serviceuser/restarts.ts';
import { createLogger } from '../../src/observability/logger.ts';

const testLogger = () => createLogger('silent');

const t0 = Date.parse('2027-01-01T00:00:00Z');
const iso = (ms: number) => new Date(ms).toISOString();
const digest = 'd'.repeat(64);
/** The signal of a replica that acts, and of one that stopped (manager.ts aborts it). */
const acting = new AbortController().signal;
const stopped = AbortSignal.abort(new Error('the operator is stopping'));

function user(spec: Record<string, unknown> = {}, status?: Record<string, unknown>, meta: Record<string, unknown> = {}): ServiceUser {
  return serviceUser.parse({
    apiVersion: 'serviceusers.dev/v1alpha1',
    kind: 'ServiceUser',
    metadata: { name: 'ci', namespace: 'team', uid: 'uid-1', generation: 2, resourceVersion: '10', ...meta },
    spec: { email: 'ops@example.com', accounts: ['acme'], ...spec },
    ...(status ? { status } : {}),
  });
}
const withTargets = { credentials: { restartTargets: [{ kind: 'Deployment', name: 'web' }] } };
const entry = (su: ServiceUser): ServiceUserEntry => typedServiceUser(su as unknown as KubeObject);

/** A client that records requests; workloads by path, status applies answered as the server merges them. */
function fakeClient(workloads: Record<string, KubeObject | number>, current: () => ServiceUser) {
  const requests: string[] = [];
  const applied: { path: string; body: { status?: Record<string, unknown>; spec?: unknown }; manager: string }[] = [];
  let rv = 10;
  const client = {
    get(path: string) {
      requests.push(`get ${path}`);
      const w = workloads[path];
      if (w === undefined) return Promise.reject(new ApiError(404, 'not found'));
      if (typeof w === 'number') return Promise.reject(new ApiError(w, 'refused'));
      return Promise.resolve(w);
    },
    apply(path: string, body: { status?: Record<string, unknown> }, manager: string) {
      requests.push(`apply ${path.split('/').slice(-2).join('/')} as ${manager}`);
      applied.push({ path, body, manager });
      const su = current();
      rv += 1;
      return Promise.resolve({ ...su, metadata: { ...su.metadata, resourceVersion: String(rv) }, status: { ...su.status, ...body.status } });
    },
  } as unknown as KubeClient;
  return { client, requests, applied };
}

const deployment = (annotation?: string, reads = 'ci-credentials'): KubeObject => ({
  apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'web', namespace: 'team' },
  spec: { template: { metadata: { annotations: annotation ? { [digestAnnotation]: annotation } : {} }, spec: { containers: [{ envFrom: [{ secretRef: { name: reads } }] }] } } },
});
const webPath = '/apis/apps/v1/namespaces/team/deployments/web';

describe('restartIntent', () => {
  it('judges the targets once status records the digest of the credentials, never before', () => {
    expect(restartIntent(user(withTargets), false)).toEqual({ kind: 'none' });
    expect(restartIntent(user(withTargets, { credentialsDigest: digest, secretName: 'ci-credentials' }), false)).toEqual({ kind: 'judge', targets: [{ kind: 'Deployment', name: 'web' }], digest, secretName: 'ci-credentials' });
  });

  it('has nothing to do without targets or a spec that parses, and leaves a user being deleted alone', () => {
    expect(restartIntent(user({}, { credentialsDigest: digest }), false)).toEqual({ kind: 'none' });
    expect(restartIntent(undefined, false)).toEqual({ kind: 'none' });
    expect(restartIntent(user(withTargets, { credentialsDigest: digest }), true)).toBeUndefined();
  });
});

describe('restartCondition', () => {
  beforeEach(() => {
    vi.useFakeTimers();
    vi.setSystemTime(t0);
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('moves lastTransitionTime only when its status changes, and is written only when it differs', () => {
    const first = restartCondition([{ target: { kind: 'Deployment', name: 'web' }, state: 'missing' }], 'ci-credentials', undefined, 2, Date.now());
    expect(first.condition).toMatchObject({ type: 'RestartTargetsReady', status: 'False', reason: 'TargetNotFound', observedGeneration: 2, lastTransitionTime: '2027-01-01T00:00:00Z' });
    expect(first.events).toHaveLength(1);
    vi.advanceTimersByTime(60_000);
    const again = restartCondition([{ target: { kind: 'Deployment', name: 'web' }, state: 'missing' }], 'ci-credentials', first.condition, 2, Date.now());
    expect(sameCondition(first.condition, again.condition)).toBe(true);
    expect(again.events).toEqual([]);
    vi.advanceTimersByTime(60_000);
    const ready = restartCondition([{ target: { kind: 'Deployment', name: 'web' }, state: 'due' }], 'ci-credentials', again.condition, 3, Date.now());
    expect(ready.condition).toMatchObject({ status: 'True', lastTransitionTime: '2027-01-01T00:02:00Z', observedGeneration: 3 });
    expect(sameCondition(again.condition, ready.condition)).toBe(false);
  });
});

describe('the restarts reconcile', () => {
  const run = async (su: ServiceUser, workloads: Record<string, KubeObject | number>, signal = acting) => {
    const recorded: string[] = [];
    const fake = fakeClient(workloads, () => su);
    const reconcile = restartsReconciler({
      client: fake.client, serviceUsers: { get: () => entry(su), list: () => [], byIndex: () => [] },
      events: { record: (_o, e) => (recorded.push(`${e.type} ${e.reason}`), Promise.resolve()), whenRoom: () => Promise.resolve() },
      fieldManager: 'service-user-operator', now: () => t0, log: testLogger(),
    });
    await reconcile('team/ci', signal).catch((err: unknown) => recorded.push(`threw ${String(err)}`));
    return { ...fake, recorded };
  };

  it('writes its condition under its own field manager, then annotates the target under the operator\'s, to the digest status records', async () => {
    const { requests, applied, recorded } = await run(user(withTargets, { credentialsDigest: digest, secretName: 'ci-credentials' }), { [webPath]: deployment('old') });
    expect(requests).toEqual([`get ${webPath}`, 'apply ci/status as service-user-operator-restarts', 'apply deployments/web as service-user-operator']);
    expect(applied[0]!.body.status).toEqual({ conditions: [expect.objectContaining({ type: 'RestartTargetsReady', status: 'True', reason: 'Annotated' })] });
    expect(applied[1]!.body.spec).toEqual({ template: { metadata: { annotations: { [digestAnnotation]: digest } } } });
    expect(recorded).toEqual(['Normal RolloutTriggered']);
  });

  it('restarts nothing before status records a digest, nor when the target already carries it (a status-only change)', async () => {
    expect((await run(user(withTargets, { secretName: 'ci-credentials' }), { [webPath]: deployment('old') })).requests).toEqual([]);
    const condition: Condition = { type: 'RestartTargetsReady', status: 'True', reason: 'Annotated', message: 'Deployment/web roll out when the credentials change', observedGeneration: 2, lastTransitionTime: '2026-12-01T00:00:00Z' };
    const settled = user(withTargets, { credentialsDigest: digest, secretName: 'ci-credentials', phase: 'Active', conditions: [condition] });
    const { requests, recorded } = await run(settled, { [webPath]: deployment(digest) });
    expect(requests).toEqual([`get ${webPath}`]);
    expect(recorded).toEqual([]);
  });

  it('writes and annotates nothing once its replica stopped acting: it reads, judges, and stops there', async () => {
    const { requests, recorded } = await run(user(withTargets, { credentialsDigest: digest, secretName: 'ci-credentials' }), { [webPath]: deployment('old') }, stopped);
    expect(requests).toEqual([`get ${webPath}`]);
    expect(recorded).toEqual(['threw Error: the operator is stopping']);
  });

  it('leaves a workload that does not read the Secret alone, and says so', async () => {
    const { requests, recorded } = await run(user(withTargets, { credentialsDigest: digest, secretName: 'ci-credentials' }), { [webPath]: deployment(undefined, 'other') });
    expect(requests).toEqual([`get ${webPath}`, 'apply ci/status as service-user-operator-restarts']);
    expect(recorded).toEqual(['Warning TargetNotConsumer']);
  });

  it('releases its condition when the targets go, and touches nothing of a user being deleted', async () => {
    const condition: Condition = { type: 'RestartTargetsReady', status: 'True', reason: 'Annotated', message: 'x', lastTransitionTime: '2026-12-01T00:00:00Z' };
    const { applied } = await run(user({}, { credentialsDigest: digest, conditions: [condition] }), {});
    expect(applied).toEqual([expect.objectContaining({ manager: 'service-user-operator-restarts', body: expect.objectContaining({ status: {} }) })]);
    const deleting = user(withTargets, { credentialsDigest: digest, conditions: [condition] }, { deletionTimestamp: iso(t0), finalizers: ['serviceusers.dev/revoke'] });
    expect((await run(deleting, { [webPath]: deployment('old') })).requests).toEqual([]);
  });
});

const notice = (key: string, sentAt?: number): NoticeStatus => ({ key, kind: 'Disabled', detail: key, dueAt: iso(t0), ...(sentAt !== undefined ? { sentAt: iso(sentAt) } : {}) });

describe('the outbox, split between two field managers', () => {
  it('the reconcile applies the pending entries only, not adding a key already recorded, sent or not', () => {
    expect(pendingOutbox([notice('a', t0), notice('b')], [notice('a'), notice('b'), notice('c')]).map((n) => n.key)).toEqual(['b', 'c']);
  });

  it('the notices controller applies the sent entries: the latest 16, and always those marked now', () => {
    const sent = Array.from({ length: 16 }, (_, i) => notice(`s${i}`, t0 + i));
    const record = sentRecord([...sent, notice('p1'), notice('p2')], ['p1'], t0 + 100);
    expect(record.every((n) => n.sentAt)).toBe(true);
    expect(record.map((n) => n.key)).toEqual([...sent.slice(1).map((n) => n.key), 'p1']);
    // More marked at once than are kept: none is left pending under the reconcile's ownership.
    const many = Array.from({ length: 20 }, (_, i) => notice(`m${i}`));
    expect(sentRecord(many, many.map((n) => n.key), t0).map((n) => n.key)).toEqual(many.map((n) => n.key));
    // What one manager would have kept of the same list, sent entries alike.
    expect(withNotices(record, []).filter((n) => n.sentAt).map((n) => n.key)).toEqual(record.map((n) => n.key));
  });

  it('sends nothing to a user who opted out, is being deleted, or does not parse', () => {
    const pending = { notices: [notice('a'), notice('b', t0)] };
    expect(noticesToSend(entry(user({}, pending))).map((n) => n.key)).toEqual(['a']);
    expect(noticesToSend(entry(user({ notifications: { email: false } }, pending)))).toEqual([]);
    expect(noticesToSend(entry(user({}, pending, { deletionTimestamp: iso(t0) })))).toEqual([]);
    expect(noticesToSend({ valid: false, metadata: { name: 'ci' }, raw: { metadata: { name: 'ci' } }, problem: 'bad' })).toEqual([]);
    expect(noticesToSend(undefined)).toEqual([]);
  });
});

describe('the notices reconcile', () => {
  beforeEach(() => {
    vi.useFakeTimers();
    vi.setSystemTime(t0);
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  function setup(failures: number) {
    let su = user({}, { phase: 'Disabled', notices: [notice('Disabled/2')] });
    const sent: string[] = [];
    let failing = failures;
    const sender = { send: (m: { messageId: string }) => (failing-- > 0 ? Promise.reject(new Error('SMTP down')) : (sent.push(m.messageId), Promise.resolve())) };
    const fake = fakeClient({}, () => su);
    const deliver = noticeDelivery({ sender: sender as never, metrics: createMetrics(), log: testLogger(), now: Date.now });
    // The cache: the object before any mark (a watch event of the mark not yet arrived).
    const reconcile = noticesReconciler({ client: fake.client, serviceUsers: { get: () => entry(su), list: () => [], byIndex: () => [] }, deliver, fieldManager: 'service-user-operator', now: Date.now });
    return { reconcile, sent, ...fake, setCached: (next: ServiceUser) => (su = next) };
  }

  it('sends a pending notice, then marks it sent under its own field manager, with only the sent entries', async () => {
    const { reconcile, sent, applied } = setup(0);
    expect(await reconcile('team/ci', acting)).toEqual({});
    expect(sent).toHaveLength(1);
    expect(applied).toEqual([expect.objectContaining({ manager: 'service-user-operator-notices', body: expect.objectContaining({ status: { notices: [{ ...notice('Disabled/2'), sentAt: iso(t0) }] } }) })]);
  });

  it('sends nothing once its replica stopped acting: the notice stays pending for the next leader', async () => {
    const { reconcile, sent, applied } = setup(0);
    await expect(reconcile('team/ci', stopped)).rejects.toThrow('the operator is stopping');
    expect(sent).toEqual([]);
    expect(applied).toEqual([]);
  });

  it('never sends twice: the next pass reads its own mark even while the cache still shows the notice pending', async () => {
    const { reconcile, sent, applied } = setup(0);
    await reconcile('team/ci', acting);
    await reconcile('team/ci', acting);
    expect(sent).toHaveLength(1);
    expect(applied).toHaveLength(1);
  });

  it('retries a failed send with backoff through the requeue (1 s doubling), writing nothing meanwhile', async () => {
    const { reconcile, sent, applied } = setup(2);
    expect(await reconcile('team/ci', acting)).toEqual({ requeueAfterMs: 1000 });
    // Woken early (another change): the notice waits out its backoff, nothing is sent or written.
    vi.advanceTimersByTime(500);
    expect(await reconcile('team/ci', acting)).toEqual({ requeueAfterMs: 500 });
    vi.advanceTimersByTime(500);
    expect(await reconcile('team/ci', acting)).toEqual({ requeueAfterMs: 2000 });
    expect(applied).toEqual([]);
    vi.advanceTimersByTime(2000);
    expect(await reconcile('team/ci', acting)).toEqual({});
    expect(sent).toHaveLength(1);
    expect(applied).toHaveLength(1);
  });
});
