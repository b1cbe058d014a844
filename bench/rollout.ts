// Rollout: N ServiceUsers applied at once until all are Active, against the floor — a plain
// script making the same essential API writes with the same client (N ServiceUsers, N
// Secrets, N status writes), same concurrency. Token only, then with client certificates
// from the built-in CA. Same run, same API server, the operator as its own process (as the
// image runs it).
//
// Both sides are timed the same way: from the first create until a watch on the namespace
// has seen every ServiceUser Active — no polling that loads one side only. Each variant runs
// `runs` times, alternating (floor, tokens, certificates, then rotated), each in a fresh
// namespace; the report gives the median with the spread, CPU seconds per 1,000
// ServiceUsers of the operator, the control plane and this client, and the writes and
// events per ServiceUser the API server counted.
import type { KubeConfig } from '@kubernetes/client-node';
import { resourcePath, type KubeClient } from '../src/controller/kube.ts';
import { resources } from '../src/api/resources.ts';
import { issueToken } from '../src/credentials/token.ts';
import { withControlPlane } from './cluster.ts';
import { cpuSecondsOf, ownCpuSeconds } from './cpu.ts';
import { whenAll } from './peer.ts';
import { apiServerMutations } from './fleet.ts';
import { startOperatorProcess, sumOf, type OperatorProcess } from './operator-process.ts';

const concurrency = 8;
export type Variant = 'floor' | 'tokens' | 'certificates';
export const rolloutTargets = { tokens: 1.3, certificates: 1.6 } as const;

async function pool<T>(items: T[], worker: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < items.length) await worker(items[next++]!);
  }));
}

const serviceUser = (name: string, certificates: boolean) => ({
  apiVersion: 'serviceusers.dev/v1alpha1', kind: 'ServiceUser', metadata: { name },
  spec: { email: 'bench@example.com', accounts: ['bench'], credentials: { clientCertificate: { enabled: certificates, pkcs12: false } } },
});

/** Resolves with the time (performance.now()) a watch has seen `count` ServiceUsers of `ns` Active. */
function whenAllActive(client: KubeClient, ns: string, count: number, timeoutMs = 1_800_000): { done: Promise<number>; stop: () => void } {
  const { at, stop } = whenAll(client, resourcePath(resources.serviceUsers, ns), count, (o) => (o.status as { phase?: string } | undefined)?.phase === 'Active', timeoutMs);
  return { done: at, stop };
}

async function floorWrites(client: KubeClient, ns: string, names: string[]): Promise<void> {
  await pool(names, async (name) => {
    const su = await client.request<{ metadata: { uid: string } }>('POST', resourcePath(resources.serviceUsers, ns), serviceUser(name, false));
    const token = issueToken();
    await client.apply(resourcePath(resources.secrets, ns, `${name}-credentials`), {
      apiVersion: 'v1', kind: 'Secret', type: 'Opaque',
      metadata: { name: `${name}-credentials`, namespace: ns, ownerReferences: [{ apiVersion: 'serviceusers.dev/v1alpha1', kind: 'ServiceUser', name, uid: su.metadata.uid, controller: true }] },
      data: { token: Buffer.from(token.token).toString('base64') },
    }, 'floor');
    await client.apply(resourcePath(resources.serviceUsers, ns, name, 'status'), {
      apiVersion: 'serviceusers.dev/v1alpha1', kind: 'ServiceUser', metadata: { name, namespace: ns },
      status: { phase: 'Active', tokens: [{ id: token.id, sha256: token.sha256, createdAt: new Date().toISOString(), state: 'Active' }], conditions: [{ type: 'Ready', status: 'True', reason: 'Active', message: 'floor', lastTransitionTime: new Date().toISOString().replace(/\.\d+Z$/, 'Z') }] },
    }, 'floor');
  });
}

/** Waits until the operator has nothing queued and has made no request for `quietMs`. */
export async function operatorQuiet(operator: OperatorProcess, quietMs = 3000, timeoutMs = 300_000): Promise<void> {
  const started = performance.now();
  const requests = (m: Map<string, number>) => sumOf(m, 'serviceuser_operator_api_requests_total', (l) => l.verb !== 'watch');
  let last = -1;
  let since = performance.now();
  while (performance.now() - since < quietMs) {
    if (performance.now() - started > timeoutMs) throw new Error(`operator still busy after ${timeoutMs / 1000} s`);
    const m = await operator.metrics();
    const now = requests(m);
    if (now !== last || sumOf(m, 'serviceuser_operator_workqueue_depth') > 0) {
      last = now;
      since = performance.now();
    }
    // Each scrape costs the operator CPU (prom-client renders every series): once a second.
    await new Promise((r) => setTimeout(r, 1000));
  }
}

const round = (x: number, digits = 2) => Math.round(x * 10 ** digits) / 10 ** digits;
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const perUser = (after: Record<string, number>, before: Record<string, number>, count: number) =>
  Object.fromEntries(Object.entries(after).map(([k, v]) => [k, round((v - (before[k] ?? 0)) / count)] as const).filter(([, v]) => v > 0).sort());

interface RunResult {
  seconds: number;
  cpuPer1000: { operator: number; controlPlane: number; client: number };
  apiServerWritesPerServiceUser: Record<string, number>;
  operatorRequestsPerServiceUser: Record<string, number>;
  eventsPerServiceUser: { objects: number; occurrences: number };
}

async function runOnce(variant: Variant, ns: string, count: number, ctx: { client: KubeClient; kc: KubeConfig; operator: OperatorProcess; controlPlanePid: number }): Promise<RunResult> {
  const { client, kc, operator } = ctx;
  await client.request('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
  const names = Array.from({ length: count }, (_, i) => `su-${i}`);
  const requests = async () => {
    const out: Record<string, number> = {};
    for (const [series, value] of await operator.metrics()) {
      const m = /^serviceuser_operator_api_requests_total\{(.*)\}$/.exec(series);
      if (!m) continue;
      const labels = Object.fromEntries([...m[1]!.matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1]!, x[2]!]));
      if (labels.verb === 'watch') continue;
      const key = `${labels.verb} ${labels.resource}`;
      out[key] = (out[key] ?? 0) + value;
    }
    return out;
  };
  const writes0 = await apiServerMutations(kc);
  const requests0 = await requests();
  const cpu0 = { operator: operator.cpuSeconds(), controlPlane: cpuSecondsOf(ctx.controlPlanePid), client: ownCpuSeconds() };
  const watch = whenAllActive(client, ns, count);
  const started = performance.now();
  if (variant === 'floor') await floorWrites(client, ns, names);
  else await pool(names, (name) => client.request('POST', resourcePath(resources.serviceUsers, ns), serviceUser(name, variant === 'certificates')));
  const doneAt = await watch.done;
  // The work a rollout causes includes what follows the last Active (events, no-op reconciles).
  await operatorQuiet(operator);
  const cpu = { operator: operator.cpuSeconds() - cpu0.operator, controlPlane: cpuSecondsOf(ctx.controlPlanePid) - cpu0.controlPlane, client: ownCpuSeconds() - cpu0.client };
  const events = await client.get<{ items: { count?: number }[] }>(`/api/v1/namespaces/${ns}/events`);
  return {
    seconds: (doneAt - started) / 1000,
    cpuPer1000: { operator: round((cpu.operator / count) * 1000), controlPlane: round((cpu.controlPlane / count) * 1000), client: round((cpu.client / count) * 1000) },
    apiServerWritesPerServiceUser: perUser(await apiServerMutations(kc), writes0, count),
    operatorRequestsPerServiceUser: perUser(await requests(), requests0, count),
    eventsPerServiceUser: { objects: round(events.items.length / count), occurrences: round(events.items.reduce((a, e) => a + (e.count ?? 1), 0) / count) },
  };
}

function summarize(results: RunResult[]) {
  const seconds = results.map((r) => r.seconds);
  const med = (pick: (r: RunResult) => number) => round(median(results.map(pick)));
  return {
    seconds: { median: round(median(seconds)), min: round(Math.min(...seconds)), max: round(Math.max(...seconds)), runs: seconds.map((s) => round(s)) },
    cpuSecondsPer1000: { operator: med((r) => r.cpuPer1000.operator), controlPlane: med((r) => r.cpuPer1000.controlPlane), client: med((r) => r.cpuPer1000.client) },
    apiServerWritesPerServiceUser: results.at(-1)!.apiServerWritesPerServiceUser,
    operatorRequestsPerServiceUser: results.at(-1)!.operatorRequestsPerServiceUser,
    eventsPerServiceUser: results.at(-1)!.eventsPerServiceUser,
  };
}

export function benchRollout(count = 1000, runs = 3, variants: Variant[] = ['floor', 'tokens', 'certificates']) {
  const namespaces = (v: Variant) => Array.from({ length: runs }, (_, r) => `${v}-${r + 1}`);
  const watched = variants.filter((v) => v !== 'floor').flatMap(namespaces);
  return withControlPlane('rollout', ['service-user-operator'], async ({ controlPlane, kc, client }) => {
    // The operator watches only its variants' namespaces: the floor's ServiceUsers are the floor's.
    const operator = await startOperatorProcess(controlPlane.kubeconfig, watched, 'service-user-operator', concurrency);
    try {
      await untilServing(operator);
      const results: Partial<Record<Variant, RunResult[]>> = {};
      for (let r = 0; r < runs; r++) {
        // Alternate, and rotate the order: no variant always runs first on a fresher cluster.
        const order = variants.map((_, i) => variants[(i + r) % variants.length]!);
        for (const v of order) {
          process.stderr.write(`rollout run ${r + 1}/${runs}: ${v}…\n`);
          (results[v] ??= []).push(await runOnce(v, `${v}-${r + 1}`, count, { client, kc, operator, controlPlanePid: controlPlane.pid }));
        }
      }
      const floor = results.floor;
      const out: Record<string, unknown> = { name: 'rollout', count, concurrency, runs, kubernetes: controlPlane.version, operator: 'node dist/main.js, its own process' };
      for (const v of variants) {
        const s = summarize(results[v]!);
        if (v === 'floor' || !floor) {
          out[v] = s;
          continue;
        }
        const target = rolloutTargets[v];
        const ratio = round(s.seconds.median / median(floor.map((f) => f.seconds)));
        // Paired within each round: how the ratio itself spreads.
        const paired = results[v]!.map((x, i) => round(x.seconds / floor[i]!.seconds));
        out[v] = { ...s, ratioToFloor: ratio, ratioPerRun: paired, target, met: ratio <= target };
      }
      return out;
    } finally {
      await operator.stop();
    }
  });
}

/** The operator process is up once its metrics answer and its start-up requests (lists, CA, CRL) are done. */
export async function untilServing(operator: OperatorProcess, timeoutMs = 120_000): Promise<void> {
  const started = performance.now();
  while (!(await operator.metrics().catch(() => undefined))) {
    if (performance.now() - started > timeoutMs) throw new Error('operator not serving metrics');
    await new Promise((r) => setTimeout(r, 250));
  }
  await operatorQuiet(operator);
}
