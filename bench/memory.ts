// Memory and restart: N ServiceUsers (token and client certificate, the defaults) reconciled
// by the operator as a process run as the chart runs it (its Node options and log level, in a
// memory cgroup of its limit: operator-process.ts); its resident memory once converged;
// then the process stopped and started again: the time until it has reconciled every one
// with nothing left queued, and the writes that restart made (there should be none).
import { withControlPlane } from './cluster.ts';
import { chartRuntime } from '../test/image/runtime.ts';
import { apiServerWrites, createServiceUsers, difference, untilActive, untilQuiet } from './fleet.ts';
import { mutatingVerbs, startOperatorProcess, sumOf, type OperatorProcess } from './operator-process.ts';

const mib = (bytes: number) => Math.round((bytes / 2 ** 20) * 10) / 10;

/** V8's view, from the operator's own process metrics: what of the RSS is live JavaScript. */
const heapOf = (m: Map<string, number>) => ({
  usedMiB: mib(sumOf(m, 'nodejs_heap_size_used_bytes')),
  totalMiB: mib(sumOf(m, 'nodejs_heap_size_total_bytes')),
  externalMiB: mib(sumOf(m, 'nodejs_external_memory_bytes')),
});

/** Seconds from now until the operator has reconciled `count` ServiceUsers and has none queued. */
async function untilConverged(operator: OperatorProcess, count: number, started: number, timeoutMs = 600_000): Promise<number> {
  for (;;) {
    const m = await operator.metrics().catch(() => undefined);
    if (m) {
      const done = sumOf(m, 'serviceuser_operator_reconcile_total', (l) => l.controller === 'serviceuser');
      const queued = sumOf(m, 'serviceuser_operator_workqueue_depth', (l) => l.controller === 'serviceuser');
      if (done >= count && queued === 0) return (performance.now() - started) / 1000;
    }
    if (performance.now() - started > timeoutMs) throw new Error(`not converged after ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Is the chart's memory sized from what was measured: a request that covers the converged
 * working set without reserving half as much again, and a limit above the peak.
 */
function sizing(workingSet: number, peak: number) {
  const { memoryRequestBytes: request, memoryLimitBytes: limit } = chartRuntime();
  const fits = request >= workingSet && request <= 1.5 * workingSet && limit >= peak;
  return { fits, text: `the chart requests ${mib(request)} MiB and limits ${mib(limit)} MiB for a working set of ${mib(workingSet)} MiB, peak ${mib(peak)} MiB` };
}

export function benchMemory(count = 10_000) {
  return withControlPlane('memory', ['service-user-operator', 'memory'], async ({ controlPlane, kc, client }) => {
    // The live heap with no ServiceUser, what the bytes per ServiceUser are counted over, from
    // a process of its own: a heap snapshot leaves tens of MB of malloc'd memory resident
    // (glibc keeps what the snapshot's generator freed), which would count as the operator's.
    let operator = await startOperatorProcess(controlPlane.kubeconfig, ['memory'], 'service-user-operator');
    await new Promise((r) => setTimeout(r, 3000));
    const baseHeap = await operator.liveHeap();
    await operator.stop();
    operator = await startOperatorProcess(controlPlane.kubeconfig, ['memory'], 'service-user-operator');
    try {
      await new Promise((r) => setTimeout(r, 3000));
      // What any start reads of the operator's own objects (the CA's and ledger key's Secrets,
      // the CRL ConfigMap): the restart's reads beyond these are reads per ServiceUser.
      const startReads = sumOf(await operator.metrics(), 'serviceuser_operator_api_requests_total', (l) => l.verb === 'get');
      await createServiceUsers(client, 'memory', count);
      const rolloutSeconds = await untilActive(client, 'memory', count);
      await untilQuiet(kc);
      const first = operator.memory();
      const firstContainer = operator.container();
      const firstHeap = heapOf(await operator.metrics());
      await operator.stop();

      const before = await apiServerWrites(kc);
      const started = performance.now();
      operator = await startOperatorProcess(controlPlane.kubeconfig, ['memory'], 'service-user-operator');
      const restartSeconds = await untilConverged(operator, count, started);
      const writes = difference(await apiServerWrites(kc), before);
      const restarted = await operator.metrics();
      const ownWrites = sumOf(restarted, 'serviceuser_operator_api_requests_total', (l) => mutatingVerbs.has(l.verb!));
      // Reads of single objects (a Secret per ServiceUser, say): a restart should decide from its caches.
      const perObjectReads = sumOf(restarted, 'serviceuser_operator_api_requests_total', (l) => l.verb === 'get');
      await new Promise((r) => setTimeout(r, 10_000));
      const second = operator.memory();
      const secondContainer = operator.container();
      const secondHeap = heapOf(await operator.metrics());
      const live = await operator.liveHeap();
      return {
        name: 'memory',
        count,
        kubernetes: controlPlane.version,
        rolloutSeconds: Math.round(rolloutSeconds),
        rssMiB: {
          convergedAfterRollout: mib(first.rss),
          peakDuringRollout: mib(first.peak),
          convergedAfterRestart: mib(second.rss),
          peakDuringRestart: mib(second.peak),
          heapAfterRollout: firstHeap,
          heapAfterRestart: secondHeap,
          liveHeapAfterRestartMiB: mib(live),
          bytesPerServiceUser: Math.round((live - baseHeap) / count),
          target: count <= 1000 ? 120 : 250,
        },
        // The pod's view, under the chart's memory limit: what kubelet would report and act on.
        container: {
          limit: firstContainer.limit,
          workingSetMiB: { afterRollout: mib(firstContainer.workingSetBytes), afterRestart: mib(secondContainer.workingSetBytes) },
          peakMiB: { rollout: mib(firstContainer.peakBytes), restart: mib(secondContainer.peakBytes) },
          oomKills: firstContainer.oomKills + secondContainer.oomKills,
          sizing: sizing(Math.max(firstContainer.workingSetBytes, secondContainer.workingSetBytes), Math.max(firstContainer.peakBytes, secondContainer.peakBytes)),
        },
        restart: {
          secondsToConverged: Math.round(restartSeconds * 10) / 10,
          apiServerCountedWrites: Object.values(writes).reduce((a, b) => a + b, 0),
          apiServerWritesByVerb: writes,
          operatorCountedWrites: ownWrites,
          perObjectReads,
          readsAtAnyStart: startReads,
          perServiceUserReads: Math.max(0, perObjectReads - startReads),
          target: '≤ 8 s, 0 writes, 0 per-object reads',
        },
      };
    } finally {
      await operator.stop();
    }
  });
}
