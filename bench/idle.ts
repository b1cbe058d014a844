// Idle: N converged ServiceUsers (token and client certificate, the defaults), then a quiet
// window (10 minutes by default) in which the operator should write nothing: counted by the
// API server's own request metrics on the resources the operator writes, and cross-checked
// with the operator's count of its own requests.
import type { KubeConfig } from '@kubernetes/client-node';
import { withControlPlane } from './cluster.ts';
import { apiServerWrites, createServiceUsers, difference, untilActive } from './fleet.ts';
import { startOperatorProcess, sumOf } from './operator-process.ts';

const mutating = new Set(['create', 'update', 'patch', 'delete', 'deletecollection']);

/** Waits until the API server has seen no operator-resource write for `quietMs`; returns the seconds it took. */
export async function untilQuiet(kc: KubeConfig, quietMs = 15_000, timeoutMs = 300_000): Promise<number> {
  const started = performance.now();
  let last = JSON.stringify(await apiServerWrites(kc));
  let since = performance.now();
  while (performance.now() - since < quietMs) {
    if (performance.now() - started > timeoutMs) throw new Error(`writes still going on after ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 1000));
    const now = JSON.stringify(await apiServerWrites(kc));
    if (now !== last) {
      last = now;
      since = performance.now();
    }
  }
  return (performance.now() - started) / 1000;
}

export function benchIdle(count = 1000, seconds = 600) {
  return withControlPlane('idle', ['service-user-operator', 'idle'], async ({ controlPlane, kc, client }) => {
    const operator = await startOperatorProcess(controlPlane.kubeconfig, ['idle'], 'service-user-operator');
    try {
      await createServiceUsers(client, 'idle', count);
      const rolloutSeconds = await untilActive(client, 'idle', count);
      const settleSeconds = await untilQuiet(kc);
      const apiBefore = await apiServerWrites(kc);
      const ownBefore = await operator.metrics();
      await new Promise((r) => setTimeout(r, seconds * 1000));
      const apiWrites = difference(await apiServerWrites(kc), apiBefore);
      const ownAfter = await operator.metrics();
      const own = (verbs: (v: string) => boolean) =>
        sumOf(ownAfter, 'serviceuser_operator_api_requests_total', (l) => verbs(l.verb!)) - sumOf(ownBefore, 'serviceuser_operator_api_requests_total', (l) => verbs(l.verb!));
      const reconciles = sumOf(ownAfter, 'serviceuser_operator_reconcile_total') - sumOf(ownBefore, 'serviceuser_operator_reconcile_total');
      return {
        name: 'idle',
        count,
        seconds,
        kubernetes: controlPlane.version,
        rolloutSeconds: Math.round(rolloutSeconds * 10) / 10,
        settleSeconds: Math.round(settleSeconds),
        apiServerCountedWrites: Object.values(apiWrites).reduce((a, b) => a + b, 0),
        apiServerWritesByVerb: apiWrites,
        operatorCountedWrites: own((v) => mutating.has(v)),
        operatorReads: own((v) => v === 'get' || v === 'list'),
        operatorWatchesOpened: own((v) => v === 'watch'),
        reconciles,
        target: 0,
      };
    } finally {
      await operator.stop();
    }
  });
}
