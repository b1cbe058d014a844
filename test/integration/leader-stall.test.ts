// Leader election bounded by the renew deadline (issue 12 item 9): two operator processes, the
// leader reaching the API server through a local TCP proxy. The proxy stops forwarding: the
// leader's renewals hang. It must stop acting (exit) before leaseDuration has passed since its
// last successful renewal — before the other replica can take the Lease — and the other one
// takes over and reconciles.
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { KubeClient } from '../../src/controller/kube.ts';
import { eventually, kubeConfig, useNamespace } from '../kube.ts';
import { api, useOperatorProcesses } from '../operator.ts';
import { stallableProxy } from '../net.ts';

const ns = useNamespace('stall');
const client = new KubeClient(kubeConfig());
const k = api(client, ns.name);
const processes = useOperatorProcesses(ns);
const dir = mkdtempSync(path.join(tmpdir(), 'suo-stall-'));
let closeProxy: (() => Promise<unknown>) | undefined;
afterAll(async () => {
  client.close();
  await closeProxy?.();
  rmSync(dir, { recursive: true, force: true });
});

// The operator's defaults (client-go's): a 15 s lease, a 10 s renew deadline.
const leaseDurationMs = 15_000;

type Lease = { spec: { holderIdentity?: string; renewTime?: string; acquireTime?: string; leaseTransitions?: number } };
const lease = async () => client.get<Lease>(`/apis/coordination.k8s.io/v1/namespaces/${ns.name}/leases/service-user-operator`).catch(() => undefined);

it('a leader whose API traffic stalls stops before its Lease can be taken, and the other replica takes over', { timeout: 120_000 }, async () => {
  const server = client.server;
  const proxy = await stallableProxy({ host: server.hostname, port: Number(server.port) });
  closeProxy = () => proxy.close();
  // The same credentials, through the proxy.
  const kc = kubeConfig();
  const proxied = path.join(dir, 'kubeconfig');
  const config = JSON.parse(kc.exportConfig()) as { clusters: { cluster: { server: string } }[] };
  for (const c of config.clusters) c.cluster.server = `https://127.0.0.1:${proxy.port}`;
  writeFileSync(proxied, JSON.stringify(config));

  const flags = (id: string) => ['--leader-elect', '--leader-election-id', id, '--verify-bind-address', '0', '--metrics-bind-address', '0', '--health-probe-bind-address', '0'];
  const aOutput: string[] = [];
  const a = processes.start([...flags('replica-a'), '--kubeconfig', proxied], { output: aOutput });
  await eventually('replica-a to lead', async () => ((await lease())?.spec.holderIdentity === 'replica-a' ? true : undefined), 30_000);
  const b = processes.start(flags('replica-b'));
  await k.createServiceUser('before', { email: 'ops@example.com', accounts: ['acme'], credentials: { clientCertificate: { enabled: false } } });
  await k.waitFor('before', 'Active under replica-a', (o) => (o.status as { phase?: string } | undefined)?.phase === 'Active', 30_000);
  // Wait for a fresh renewal, so the stall starts in the middle of a renew period.
  const seen = (await lease())!.spec.renewTime;
  await eventually('a renewal', async () => ((await lease())?.spec.renewTime !== seen ? true : undefined), 10_000);

  proxy.stall();
  const exited = once(a, 'exit').then(([code]) => ({ code: code as number, at: Date.now() }));
  // What got through before the stall is committed by now; this is the last renewal there is.
  await new Promise((r) => setTimeout(r, 300));
  const last = (await lease())!;
  expect(last.spec.holderIdentity).toBe('replica-a');
  const lastRenewal = Date.parse(last.spec.renewTime!);

  const { code, at } = await exited;
  expect(code).toBe(1);
  expect(aOutput.join('')).toContain('lost the leader lease; exiting');
  // It stopped before anyone could take the Lease: within leaseDuration of its last renewal...
  expect(at).toBeLessThan(lastRenewal + leaseDurationMs);

  // ...and the other replica took it only afterwards, and reconciles.
  const taken = await eventually('replica-b to lead', async () => {
    const l = await lease();
    return l?.spec.holderIdentity === 'replica-b' ? l : undefined;
  }, 30_000);
  expect(Date.parse(taken.spec.acquireTime!)).toBeGreaterThan(at);
  await k.createServiceUser('after', { email: 'ops@example.com', accounts: ['acme'], credentials: { clientCertificate: { enabled: false } } });
  await k.waitFor('after', 'Active under replica-b', (o) => (o.status as { phase?: string } | undefined)?.phase === 'Active', 30_000);
  expect(b.exitCode).toBeNull();
  console.log(`stalled leader exited ${at - lastRenewal} ms after its last renewal (lease ${leaseDurationMs} ms); replica-b acquired ${Date.parse(taken.spec.acquireTime!) - at} ms after that`);
});
