// Each benchmark's own control plane: started in a temporary directory with the CRDs, the
// namespaces the benchmark names and the Account `bench` its ServiceUsers name (admitting
// every namespace, as a platform team would set one up: without it every user would be told
// AccountNotFound, an event the benchmark would count), handed to it, and torn down whatever
// happens.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { KubeClient } from '../src/controller/kube.ts';
import { startControlPlane, type ControlPlane } from '../test/cluster/controlplane.ts';
import { installCrds } from '../test/crds.ts';

export interface BenchCluster {
  controlPlane: ControlPlane;
  kc: KubeConfig;
  client: KubeClient;
}

export async function withControlPlane<T>(name: string, namespaces: string[], run: (cluster: BenchCluster) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(path.join(tmpdir(), `bench-${name}-`));
  const controlPlane = await startControlPlane({ dir });
  const kc = new KubeConfig();
  kc.loadFromFile(controlPlane.kubeconfig);
  const client = new KubeClient(kc);
  try {
    await installCrds(kc);
    for (const ns of namespaces) await client.request('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
    await client.request('POST', '/apis/serviceusers.dev/v1alpha1/accounts', { apiVersion: 'serviceusers.dev/v1alpha1', kind: 'Account', metadata: { name: 'bench' }, spec: { displayName: 'Benchmarks', namespaceSelector: {} } });
    return await run({ controlPlane, kc, client });
  } finally {
    client.close();
    await controlPlane.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
