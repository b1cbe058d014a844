// A leader stopped with SIGTERM (a pod's deletion, a rollout, `helm uninstall`) releases its
// Lease once it has stopped reconciling, as controller-runtime's LeaderElectionReleaseOnCancel:
// the standby takes it on its next retry instead of waiting the lease out. A follower stopped
// the same way leaves the leader's Lease alone. The lease here is 600 s, longer than the test
// may run: a standby that took it can only have found it released, never expired.
import { once } from 'node:events';
import type { ChildProcess } from 'node:child_process';
import { afterAll, expect, it } from 'vitest';
import { KubeClient } from '../../src/controller/kube.ts';
import { eventually, kubeConfig, useNamespace } from '../kube.ts';
import { api, useOperatorProcesses } from '../operator.ts';

const ns = useNamespace('leader-release');
const client = new KubeClient(kubeConfig());
const k = api(client, ns.name);
const processes = useOperatorProcesses(ns);
afterAll(() => client.close());

interface Lease { spec: { holderIdentity?: string; leaseDurationSeconds?: number } }
const lease = () => client.get<Lease>(`/apis/coordination.k8s.io/v1/namespaces/${ns.name}/leases/service-user-operator`).catch(() => undefined);
const holding = (id: string, timeoutMs: number) =>
  eventually(`${id} to hold the Lease`, async () => ((await lease())?.spec.holderIdentity === id ? true : undefined), timeoutMs);

function replica(id: string, output: string[] = []): ChildProcess {
  return processes.start([
    '--leader-elect', '--leader-election-id', id,
    '--leader-election-lease-duration=600s', '--leader-election-renew-deadline=20s', '--leader-election-retry-period=2s',
    '--verify-bind-address', '0', '--metrics-bind-address', '0', '--health-probe-bind-address', '0',
  ], { output });
}

async function terminate(child: ChildProcess): Promise<number | null> {
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const [code] = (await exited) as [number | null];
  return code;
}

it('a leader stopped with SIGTERM releases its Lease and the standby takes it without waiting it out; a stopped follower leaves it', { timeout: 180_000 }, async () => {
  const leaderOutput: string[] = [];
  const a = replica('replica-a', leaderOutput);
  await holding('replica-a', 60_000);
  const b = replica('replica-b');
  await k.createServiceUser('before', { email: 'ops@example.com', accounts: ['acme'] });
  await k.waitFor('before', 'Active', (o) => (o.status as { phase?: string } | undefined)?.phase === 'Active', 60_000);
  expect((await lease())?.spec).toMatchObject({ holderIdentity: 'replica-a', leaseDurationSeconds: 600 });

  expect(await terminate(a)).toBe(0);
  // The stopped leader's last word on the Lease: released, in its log after it stopped reconciling.
  expect(leaderOutput.join('')).toContain('released the leader lease');
  // 600 s unexpired: only a release lets replica-b in within this test's time.
  await holding('replica-b', 60_000);
  await k.createServiceUser('after', { email: 'ops@example.com', accounts: ['acme'] });
  await k.waitFor('after', 'Active under the new leader', (o) => (o.status as { phase?: string } | undefined)?.phase === 'Active', 60_000);

  // A follower's SIGTERM: it never held the Lease, so the leader's stays as it is.
  const followerOutput: string[] = [];
  const c = replica('replica-c', followerOutput);
  // Its caches synced, it has campaigned (the elector starts with the process) and lost.
  await eventually('replica-c to sync its caches', async () => (followerOutput.join('').includes('caches synced') ? true : undefined), 60_000);
  expect(await terminate(c)).toBe(0);
  expect((await lease())?.spec).toMatchObject({ holderIdentity: 'replica-b', leaseDurationSeconds: 600 });
  expect(await terminate(b)).toBe(0);
  expect((await lease())?.spec).toMatchObject({ holderIdentity: '', leaseDurationSeconds: 1 });
});
