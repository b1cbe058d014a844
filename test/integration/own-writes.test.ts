// A reconcile never acts on a view older than its own writes, and events are recorded as
// client-go records them: off the reconcile's path, aggregated, none lost on shutdown.
// On the real API server: before the fix, a second reconcile woken by the first one's own
// Secret write read the ServiceUser without the status just written and announced
// "TokenRecorded" (the crash-recovery path) beside TokenIssued, with a second status write.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resources } from '../../src/api/resources.ts';
import { KubeClient, resourcePath, type KubeObject } from '../../src/controller/kube.ts';
import { EventRecorder } from '../../src/controller/events.ts';
import { createMetrics, type Metrics } from '../../src/observability/metrics.ts';
import { startOperator, type Operator } from '../../src/operator.ts';
import { testLogger } from '../logs.ts';
import { eventually, kubeConfig, useNamespace } from '../kube.ts';
import { useAccounts } from '../operator.ts';

const ns = useNamespace('own-writes');
// The Account its users name (admitting the test namespaces): without it each would be told AccountNotFound.
useAccounts(['acme-prod']);
const client = new KubeClient(kubeConfig());
const logs: string[] = [];
let metrics: Metrics;
let operator: Operator;

beforeAll(async () => {
  metrics = createMetrics();
  operator = startOperator({ kubeConfig: kubeConfig(), log: testLogger(logs), metrics, namespaces: [ns.name], operatorNamespace: ns.name, concurrency: 4 });
  await operator.ready;
});
afterAll(async () => {
  await operator.stop();
  client.close();
});

type Event = { reason: string; type: string; message: string; count?: number; involvedObject: { name: string; kind: string } };
const events = async () => (await client.get<{ items: Event[] }>(`/api/v1/namespaces/${ns.name}/events`)).items;
const requests = async (verb: string, resource: string) =>
  (await metrics.apiRequests.get()).values.filter((v) => v.labels.verb === verb && v.labels.resource === resource).reduce((a, v) => a + v.value, 0);
const phase = (o: KubeObject) => (o.status as { phase?: string } | undefined)?.phase;

/** Every ServiceUser Active, nothing queued or running, and the events written. */
async function settled(names: string[]) {
  await eventually('all Active', async () => {
    const list = await client.get<{ items: KubeObject[] }>(resourcePath(resources.serviceUsers, ns.name));
    return names.every((n) => list.items.some((o) => o.metadata.name === n && phase(o) === 'Active')) ? true : undefined;
  }, 60_000);
  // The watch events of the last writes arrive, wake their reconciles, and those finish.
  let quietSince = Date.now();
  await eventually('queue idle for 2 s', async () => {
    const { pending, processing } = operator.controllers.serviceUsers.queue.size;
    if (pending || processing || operator.controllers.roleBindings.queue.size.pending || operator.controllers.roleBindings.queue.size.processing) quietSince = Date.now();
    return Date.now() - quietSince > 2000 ? true : undefined;
  }, 60_000);
}

describe('own writes', () => {
  it('a fresh ServiceUser: one CredentialsIssued event (token and certificate), no TokenRecorded, one finalizer, Secret and status write each, no Secret read', async () => {
    const names = Array.from({ length: 20 }, (_, i) => `fresh-${i}`);
    const patches = await requests('patch', 'serviceusers');
    const statusPatches = await requests('patch', 'serviceusers/status');
    const secretPatches = await requests('patch', 'secrets');
    const secretCreates = await requests('create', 'secrets');
    const secretReads = await requests('get', 'secrets');
    await Promise.all(names.map((name) =>
      client.request('POST', resourcePath(resources.serviceUsers, ns.name), {
        apiVersion: 'serviceusers.dev/v1alpha1', kind: 'ServiceUser', metadata: { name },
        // Certificates as `npm run dev` issues them: the reconcile takes longer, as there.
        spec: { email: 'ops@example.com', accounts: ['acme-prod'] },
      })));
    await settled(names);
    const all = await eventually('the CredentialsIssued events', async () => {
      const list = await events();
      return names.every((n) => list.some((e) => e.involvedObject.name === n && e.reason === 'CredentialsIssued')) ? list : undefined;
    });
    for (const name of names) {
      const mine = all.filter((e) => e.involvedObject.name === name && e.involvedObject.kind === 'ServiceUser');
      // The first token and certificate are one event (an Event object less a user).
      expect(mine.map((e) => `${e.reason}×${e.count ?? 1}`).sort(), name).toEqual(['CredentialsIssued×1']);
    }
    expect(logs.filter((l) => l.includes('TokenRecorded'))).toEqual([]);
    expect(await requests('patch', 'serviceusers') - patches, 'finalizer applies').toBe(names.length);
    expect(await requests('patch', 'serviceusers/status') - statusPatches, 'status applies').toBe(names.length);
    // The Secret is created complete by its POST: no write after it, and no read before it (the
    // cache has none; it was a 404 per user). A later pass that no longer holds our own copy
    // (woken by a late watch event) may read one back, and the CA's and ledger key's Secrets
    // may be read at start: a few, not one a user.
    expect(await requests('create', 'secrets') - secretCreates, 'Secret creates').toBe(names.length);
    expect(await requests('patch', 'secrets') - secretPatches, 'Secret writes after the create').toBe(0);
    expect(await requests('get', 'secrets') - secretReads, 'live Secret reads').toBeLessThan(names.length / 2);
  });

  it('at the end date, a Secret as the operator last wrote it is wiped without being read back; one someone else changed since is read live', async () => {
    const names = ['ending-0', 'ending-1'];
    const end = new Date(Date.now() + 15_000);
    for (const name of names) {
      await client.request('POST', resourcePath(resources.serviceUsers, ns.name), {
        apiVersion: 'serviceusers.dev/v1alpha1', kind: 'ServiceUser', metadata: { name },
        // Token only: a certificate ending in 15 s would be renewed within them (a live read of its own).
        spec: { email: 'ops@example.com', accounts: ['acme-prod'], endDate: end.toISOString(), credentials: { clientCertificate: { enabled: false } } },
      });
    }
    await settled(names);
    // Someone else touches one Secret: its version is no longer the one the operator wrote.
    const readsBefore = await requests('get', 'secrets');
    await client.mergePatch(resourcePath(resources.secrets, ns.name, 'ending-1-credentials'), { metadata: { labels: { 'touched-by': 'someone-else' } } });
    await eventually('the edit reconciled (a live read)', async () => ((await requests('get', 'secrets')) > readsBefore ? true : undefined));
    await settled(names);
    expect(Date.now()).toBeLessThan(end.getTime());
    const [gets, secretPatches, statusPatches] = [await requests('get', 'secrets'), await requests('patch', 'secrets'), await requests('patch', 'serviceusers/status')];
    await eventually('both expired and wiped', async () => {
      const list = await client.get<{ items: KubeObject[] }>(resourcePath(resources.serviceUsers, ns.name));
      if (!names.every((n) => list.items.some((o) => o.metadata.name === n && phase(o) === 'Expired'))) return undefined;
      const secrets = await Promise.all(names.map((n) => client.get(resourcePath(resources.secrets, ns.name, `${n}-credentials`))));
      return secrets.every((s) => Object.keys((s.data as object | undefined) ?? {}).sort().join() === 'expires-at,identity') ? true : undefined;
    }, 30_000);
    let quietSince = Date.now();
    await eventually('queue idle for 2 s', async () => {
      const { pending, processing } = operator.controllers.serviceUsers.queue.size;
      if (pending || processing) quietSince = Date.now();
      return Date.now() - quietSince > 2000 ? true : undefined;
    }, 60_000);
    // The untouched Secret was known by the version the operator wrote: no read. The touched one was read.
    expect(await requests('get', 'secrets') - gets, 'live Secret reads at the end date').toBe(1);
    expect(await requests('patch', 'secrets') - secretPatches, 'Secret writes (the wipes)').toBe(2);
    expect(await requests('patch', 'serviceusers/status') - statusPatches, 'status writes').toBe(2);
    const all = await eventually('the Expired events', async () => {
      const list = await events();
      return names.every((n) => list.some((e) => e.involvedObject.name === n && e.reason === 'Expired')) ? list : undefined;
    });
    for (const name of names) {
      const atEnd = all.filter((e) => e.involvedObject.name === name && !['TokenIssued', 'CertificateIssued', 'CredentialsIssued', 'ExpiringSoon'].includes(e.reason));
      expect(atEnd.map((e) => `${e.reason}×${e.count ?? 1}`), name).toEqual(['Expired×1']);
    }
  });

  it('a name someone else\'s Secret holds (unlabelled: not in the cache) is never written; the user stalls on it once, not at every pass', async () => {
    const secrets = resourcePath(resources.secrets, ns.name);
    await client.request('POST', `${secrets}?fieldManager=kubectl-create`, { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'taken-credentials' }, stringData: { password: 'theirs' } });
    const creates = await requests('create', 'secrets');
    await client.request('POST', resourcePath(resources.serviceUsers, ns.name), {
      apiVersion: 'serviceusers.dev/v1alpha1', kind: 'ServiceUser', metadata: { name: 'taken' },
      spec: { email: 'ops@example.com', accounts: ['acme-prod'], credentials: { clientCertificate: { enabled: false } } },
    });
    await eventually('stalled on the Secret', async () => {
      const su = await client.get(resourcePath(resources.serviceUsers, ns.name, 'taken'));
      const stalled = ((su.status as { conditions?: { type: string; reason: string; message: string }[] } | undefined)?.conditions ?? []).find((c) => c.type === 'Stalled');
      return stalled?.reason === 'SecretNotOwned' && stalled.message.includes('kubectl-create') ? true : undefined;
    });
    // Woken again (a spec change), it reads the name live and stays stalled: no second POST.
    await client.mergePatch(resourcePath(resources.serviceUsers, ns.name, 'taken'), { spec: { friendlyName: 'taken-again' } });
    await eventually('the change observed', async () => {
      const su = await client.get(resourcePath(resources.serviceUsers, ns.name, 'taken'));
      return (su.status as { observedGeneration?: number } | undefined)?.observedGeneration === su.metadata.generation ? true : undefined;
    });
    expect(await requests('create', 'secrets') - creates, 'POSTs of the taken name').toBe(1);
    const theirs = await client.get(resourcePath(resources.secrets, ns.name, 'taken-credentials'));
    expect(Object.keys(theirs.data as object)).toEqual(['password']);
    expect(theirs.metadata.ownerReferences ?? []).toEqual([]);
  });

  it('a key the creating POST wrote goes when the plan drops it (the end date removed: expires-at)', async () => {
    const name = 'unending';
    await client.request('POST', resourcePath(resources.serviceUsers, ns.name), {
      apiVersion: 'serviceusers.dev/v1alpha1', kind: 'ServiceUser', metadata: { name },
      spec: { email: 'ops@example.com', accounts: ['acme-prod'], endDate: new Date(Date.now() + 86_400_000).toISOString(), credentials: { clientCertificate: { enabled: false } } },
    });
    await settled([name]);
    const path = resourcePath(resources.secrets, ns.name, `${name}-credentials`);
    expect(Object.keys((await client.get(path)).data as object).sort()).toEqual(['expires-at', 'identity', 'token', 'token-id']);
    await client.mergePatch(resourcePath(resources.serviceUsers, ns.name, name), { spec: { endDate: null } });
    const secret = await eventually('expires-at removed', async () => {
      const s = await client.get(path);
      return 'expires-at' in (s.data as object) ? undefined : s;
    });
    expect(Object.keys(secret.data as object).sort()).toEqual(['identity', 'token', 'token-id']);
  });

  it('a RoleBinding\'s verdict is announced once, though its subjects\' status writes wake it again', async () => {
    const role = `own-writes-${ns.name}`;
    await client.request('POST', resourcePath(resources.roles), {
      apiVersion: 'serviceusers.dev/v1alpha1', kind: 'Role', metadata: { name: role },
      spec: { displayName: role, manager: 'software-trust-manager', permissions: ['signatures:sign'], assignableToServiceUsers: true },
    });
    try {
      const names = ['bound-0', 'bound-1', 'bound-2'];
      await client.request('POST', resourcePath(resources.roleBindings, ns.name), {
        apiVersion: 'serviceusers.dev/v1alpha1', kind: 'RoleBinding', metadata: { name: 'signers' },
        spec: { roleRef: { kind: 'Role', name: role }, subjects: names.map((name) => ({ kind: 'ServiceUser', name })) },
      });
      for (const name of names) {
        await client.request('POST', resourcePath(resources.serviceUsers, ns.name), {
          apiVersion: 'serviceusers.dev/v1alpha1', kind: 'ServiceUser', metadata: { name },
          spec: { email: 'ops@example.com', accounts: ['acme-prod'], credentials: { clientCertificate: { enabled: false } } },
        });
      }
      await settled(names);
      const verdict = await eventually('the binding\'s verdict event', async () => {
        const list = (await events()).filter((e) => e.involvedObject.kind === 'RoleBinding' && e.involvedObject.name === 'signers');
        return list.length ? list : undefined;
      });
      // Each change of verdict (one subject, two, three) at most once; never the same one twice.
      const messages = verdict.map((e) => `${e.reason}: ${e.message}`);
      expect(new Set(messages).size).toBe(messages.length);
      expect(verdict.every((e) => (e.count ?? 1) === 1), JSON.stringify(verdict)).toBe(true);
    } finally {
      await client.request('DELETE', resourcePath(resources.roles, undefined, role)).catch(() => undefined);
      // The operator takes the Role's deletion in (its subjects lose the permission) before the
      // next test counts writes: on a busy machine its watch event may come after that test began.
      await eventually('the bound users without the deleted Role\'s permission', async () => {
        const list = (await client.get<{ items: KubeObject[] }>(resourcePath(resources.serviceUsers, ns.name))).items.filter((o) => o.metadata.name.startsWith('bound-'));
        return list.length === 3 && list.every((o) => !(o.status as { permissions?: unknown[] } | undefined)?.permissions?.length) ? true : undefined;
      }, 60_000);
      await settled([]);
    }
  });
});

describe('a restart', () => {
  it('decides from the data its first list carried: no Secret read a user, no write', async () => {
    const before = (await client.get<{ items: KubeObject[] }>(resourcePath(resources.serviceUsers, ns.name))).items;
    expect(before.length).toBeGreaterThan(20);
    // A user stalled on someone else's Secret reads that name live: it is not in the cache.
    const stalledOnName = before.filter((o) => ((o.status as { conditions?: { type: string; reason: string }[] } | undefined)?.conditions ?? []).some((c) => c.type === 'Stalled' && c.reason === 'SecretNotOwned')).length;
    await operator.stop();
    metrics = createMetrics();
    operator = startOperator({ kubeConfig: kubeConfig(), log: testLogger(logs), metrics, namespaces: [ns.name], operatorNamespace: ns.name, concurrency: 4 });
    await operator.ready;
    await eventually('every user reconciled once', async () => ((await metrics.reconciles.get()).values.filter((v) => v.labels.controller === 'serviceuser').reduce((a, v) => a + v.value, 0) >= before.length ? true : undefined), 60_000);
    await settled([]);
    // Beside those: the CA's and the ledger key's Secrets, read once at start (the operator's namespace is this one).
    expect(await requests('get', 'secrets'), 'live Secret reads').toBe(stalledOnName + 2);
    const writes = (await metrics.apiRequests.get()).values.filter((v) => ['create', 'patch', 'update', 'delete'].includes(String(v.labels.verb)) && String(v.labels.resource).match(/^(secrets|serviceusers)/));
    expect(writes.reduce((a, v) => a + v.value, 0), JSON.stringify(writes)).toBe(0);
  });
});

describe('the event recorder', () => {
  const target = (name: string): KubeObject => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: ns.name, uid: `uid-${name}` } });

  it('the same event again within the window is one Event with a count; another message is another Event', async () => {
    const recorder = new EventRecorder(client, testLogger(logs));
    const object = target('aggregated');
    const first = recorder.record(object, { type: 'Warning', reason: 'IssuerNotReady', message: 'Issuer ca is not ready' });
    void recorder.record(object, { type: 'Warning', reason: 'IssuerNotReady', message: 'Issuer ca is not ready' });
    await first;
    await recorder.record(object, { type: 'Warning', reason: 'IssuerNotReady', message: 'Issuer ca is not ready' });
    await recorder.record(object, { type: 'Warning', reason: 'IssuerNotReady', message: 'Issuer other is not ready' });
    await recorder.flush();
    const mine = (await events()).filter((e) => e.involvedObject.name === 'aggregated');
    expect(mine.map((e) => [e.message, e.count]).sort()).toEqual([['Issuer ca is not ready', 3], ['Issuer other is not ready', 1]]);
  });

  it('a repeat after the window starts a new Event', async () => {
    let now = Date.now();
    const recorder = new EventRecorder(client, testLogger(logs), { now: () => now, windowMs: 1000 });
    const object = target('windowed');
    await recorder.record(object, { type: 'Normal', reason: 'Granted', message: 'same' });
    now += 1001;
    await recorder.record(object, { type: 'Normal', reason: 'Granted', message: 'same' });
    const mine = (await events()).filter((e) => e.involvedObject.name === 'windowed');
    expect(mine.map((e) => e.count)).toEqual([1, 1]);
  });

  it('record() does not wait for the API server; flush() writes everything queued', async () => {
    const recorder = new EventRecorder(client, testLogger(logs), { concurrency: 2 });
    const objects = Array.from({ length: 30 }, (_, i) => target(`queued-${i}`));
    for (const o of objects) void recorder.record(o, { type: 'Normal', reason: 'TokenIssued', message: `token for ${o.metadata.name}` });
    await recorder.flush();
    const names = new Set((await events()).map((e) => e.involvedObject.name));
    expect(objects.filter((o) => !names.has(o.metadata.name))).toEqual([]);
  });

  it('past its high-water mark the recorder makes callers wait instead of dropping events', async () => {
    const recorder = new EventRecorder(client, testLogger(logs), { concurrency: 1, highWater: 3 });
    const objects = Array.from({ length: 8 }, (_, i) => target(`backlog-${i}`));
    for (const o of objects) void recorder.record(o, { type: 'Normal', reason: 'TokenIssued', message: 'x' });
    let waited = false;
    const room = recorder.whenRoom().then(() => (waited = true));
    expect(waited).toBe(false);
    await room;
    await recorder.flush();
    const names = new Set((await events()).map((e) => e.involvedObject.name));
    expect(objects.filter((o) => !names.has(o.metadata.name))).toEqual([]);
    await expect(recorder.whenRoom()).resolves.toBeUndefined();
  });

  it('a failed write is logged once and does not block later events', async () => {
    const recorder = new EventRecorder(client, testLogger(logs));
    const before = logs.filter((l) => l.includes('could not record event')).length;
    // A namespace that does not exist: the API server refuses the Event.
    await recorder.record({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'x', namespace: `missing-${ns.name}`, uid: 'u' } }, { type: 'Normal', reason: 'R', message: 'm' });
    await recorder.record(target('after-failure'), { type: 'Normal', reason: 'R', message: 'm' });
    expect(logs.filter((l) => l.includes('could not record event')).length - before).toBe(1);
    expect((await events()).some((e) => e.involvedObject.name === 'after-failure')).toBe(true);
  });
});
