// A fleet of ServiceUsers for the benchmarks: created with bounded concurrency, waited for
// until every one is Active, and the API server's own count of writes to the resources the
// operator writes.
import { request, type RequestOptions } from 'node:https';
import type { KubeConfig } from '@kubernetes/client-node';
import { resourcePath, type KubeClient } from '../src/controller/kube.ts';
import { resources } from '../src/api/resources.ts';
import { parseMetrics, sumOf } from './operator-process.ts';

export async function createServiceUsers(client: KubeClient, namespace: string, count: number, spec: (i: number) => object = () => ({}), concurrency = 16): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) {
        const i = next++;
        await client.request('POST', resourcePath(resources.serviceUsers, namespace), {
          apiVersion: 'serviceusers.dev/v1alpha1', kind: 'ServiceUser', metadata: { name: `su-${i}` },
          spec: { email: 'bench@example.com', accounts: ['bench'], ...spec(i) },
        });
      }
    }),
  );
}

/** Waits until `count` ServiceUsers in `namespace` are Active; returns the seconds waited. */
export async function untilActive(client: KubeClient, namespace: string, count: number, timeoutMs = 1_800_000): Promise<number> {
  const started = performance.now();
  for (;;) {
    let active = 0;
    let cont: string | undefined;
    do {
      const page = await client.get<{ items: { status?: { phase?: string } }[]; metadata: { continue?: string } }>(
        `${resourcePath(resources.serviceUsers, namespace)}?limit=2000${cont ? `&continue=${encodeURIComponent(cont)}` : ''}`,
      );
      active += page.items.filter((o) => o.status?.phase === 'Active').length;
      cont = page.metadata.continue || undefined;
    } while (cont);
    if (active >= count) return (performance.now() - started) / 1000;
    if (performance.now() - started > timeoutMs) throw new Error(`${namespace}: ${active} of ${count} Active after ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 1000));
  }
}

/** Resources the operator writes; the API server's writes to anything else are not its. */
const operatorWritten = new Set(['serviceusers', 'rolebindings', 'roles', 'secrets', 'configmaps', 'events', 'certificates']);

/**
 * Mutating requests the API server has served (its apiserver_request_total) on the
 * resources the operator writes, by verb. Nothing else writes to them during a measurement.
 */
export async function apiServerWrites(kc: KubeConfig): Promise<Record<string, number>> {
  const metrics = await apiServerMetrics(kc);
  const out: Record<string, number> = {};
  for (const verb of mutatingHttpVerbs) {
    out[verb] = sumOf(metrics, 'apiserver_request_total', (l) => l.verb === verb && operatorWritten.has(l.resource ?? ''));
  }
  return out;
}

const mutatingHttpVerbs = ['POST', 'PUT', 'PATCH', 'APPLY', 'DELETE', 'DELETECOLLECTION'];

/** Every mutating request the API server has served, as `VERB resource[/subresource]` → count. */
export async function apiServerMutations(kc: KubeConfig): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const [series, value] of await apiServerMetrics(kc)) {
    if (!series.startsWith('apiserver_request_total{')) continue;
    const labels = Object.fromEntries([...series.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1]!, m[2]!]));
    if (!mutatingHttpVerbs.includes(labels.verb ?? '')) continue;
    const key = `${labels.verb} ${labels.resource}${labels.subresource ? `/${labels.subresource}` : ''}`;
    out[key] = (out[key] ?? 0) + value;
  }
  return out;
}

/** The API server's own /metrics. */
export async function apiServerMetrics(kc: KubeConfig): Promise<Map<string, number>> {
  const opts: RequestOptions = {};
  await kc.applyToHTTPSOptions(opts);
  const url = new URL('/metrics', kc.getCurrentCluster()!.server);
  const text = await new Promise<string>((resolve, reject) => {
    const req = request(url, { ...opts, method: 'GET' }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`GET /metrics: ${res.statusCode}`))));
    });
    req.on('error', reject);
    req.end();
  });
  return parseMetrics(text);
}

export const difference = (after: Record<string, number>, before: Record<string, number>): Record<string, number> =>
  Object.fromEntries(Object.entries(after).map(([k, v]) => [k, v - (before[k] ?? 0)] as const).filter(([, v]) => v !== 0));

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
