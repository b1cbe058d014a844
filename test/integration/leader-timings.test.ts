// --leader-election-lease-duration and friends reach the Lease: a replica started with a 30 s
// lease writes leaseDurationSeconds 30, which is what other replicas wait out before taking it.
import { afterAll, expect, it } from 'vitest';
import { KubeClient } from '../../src/controller/kube.ts';
import { eventually, kubeConfig, useNamespace } from '../kube.ts';
import { useOperatorProcesses } from '../operator.ts';

const ns = useNamespace('leader-timings');
const client = new KubeClient(kubeConfig());
const processes = useOperatorProcesses(ns);
afterAll(() => client.close());

it('writes the configured lease duration into the Lease it holds', { timeout: 90_000 }, async () => {
  processes.start([
    '--leader-elect', '--leader-election-id', 'timed',
    '--leader-election-lease-duration=30s', '--leader-election-renew-deadline=20s', '--leader-election-retry-period=3s',
    '--verify-bind-address', '0', '--metrics-bind-address', '0', '--health-probe-bind-address', '0',
  ]);
  const lease = await eventually('the Lease to be held', async () => {
    const l = await client.get<{ spec: { holderIdentity?: string; leaseDurationSeconds?: number } }>(`/apis/coordination.k8s.io/v1/namespaces/${ns.name}/leases/service-user-operator`).catch(() => undefined);
    return l?.spec.holderIdentity === 'timed' ? l : undefined;
  }, 60_000);
  expect(lease.spec.leaseDurationSeconds).toBe(30);
});
