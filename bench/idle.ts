// Idle: N converged ServiceUsers (token and client certificate, the defaults), then a quiet
// window (10 minutes by default) in which the operator should write nothing: counted by the
// API server's own request metrics on the resources the operator writes, and cross-checked
// with the operator's count of its own requests.
import { withControlPlane } from './cluster.ts';
import { apiServerWrites, createServiceUsers, difference, untilActive, untilQuiet } from './fleet.ts';
import { mutatingVerbs, startOperatorProcess, sumOf } from './operator-process.ts';

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
        operatorCountedWrites: own((v) => mutatingVerbs.has(v)),
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
