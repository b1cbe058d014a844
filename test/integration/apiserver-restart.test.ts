// The API server restarted under a running operator (a control plane of this file's own,
// restarted with its data): the operator recovers without a restart of its own.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { expect, it } from 'vitest';
import { KubeClient } from '../../src/controller/kube.ts';
import { testLogger } from '../logs.ts';
import { createMetrics } from '../../src/observability/metrics.ts';
import { startOperator } from '../../src/operator.ts';
import { startControlPlane } from '../cluster/controlplane.ts';
import { installCrds } from '../crds.ts';
import { eventually } from '../kube.ts';
import { freePort } from '../net.ts';
import { api, decodeSecret } from '../operator.ts';

it('recovers from an API server restart without restarting itself', { timeout: 240_000 }, async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'restart-'));
  const port = await freePort();
  let controlPlane = await startControlPlane({ dir, port, keepState: true });
  const kc = new KubeConfig();
  kc.loadFromFile(controlPlane.kubeconfig);
  const client = new KubeClient(kc);
  await installCrds(kc);
  await client.request('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'apps' } });
  const logs: string[] = [];
  const operator = startOperator({ kubeConfig: kc, log: testLogger(logs), metrics: createMetrics(), operatorNamespace: 'apps', namespaces: ['apps'] });
  const k = api(client, 'apps');
  const active = (o: object) => (o as { status?: { phase?: string } }).status?.phase === 'Active';
  try {
    await operator.ready;
    await k.createServiceUser('before', { email: 'ops@example.com', accounts: ['acme'] });
    await k.waitFor('before', 'Active', active);
    const token = decodeSecret((await k.secret('before-credentials'))!).token;

    await controlPlane.stop();
    // The operator's watches fail and back off before the API server comes back.
    const stoppedAt = logs.length;
    await eventually("the operator's watches to fail", async () => (logs.slice(stoppedAt).some((l) => l.includes('list/watch failed; restarting')) ? true : undefined), 30_000);
    controlPlane = await startControlPlane({ dir, port, keepState: true });

    await k.createServiceUser('after', { email: 'ops@example.com', accounts: ['acme'] });
    await k.waitFor('after', 'Active after the restart', active, 90_000);
    expect(active(await k.serviceUser('before'))).toBe(true);
    expect(decodeSecret((await k.secret('before-credentials'))!).token).toBe(token);
  } finally {
    await operator.stop();
    client.close();
    await controlPlane.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
