// One Kubernetes API server for the whole test run, with the project's CRDs installed,
// chosen in this order:
//   1. KUBECONFIG, when set: an existing cluster (kind, say); nothing is started or stopped.
//   2. KUBEBUILDER_ASSETS, when set: envtest's etcd and kube-apiserver, run by the local
//      control plane's launcher (which adds the controller manager).
//   3. Otherwise the local control plane built from test/cluster/.
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { KubeConfig, VersionApi } from '@kubernetes/client-node';
import type { TestProject } from 'vitest/node';
import { kubernetesVersion, startControlPlane, type ControlPlane } from '../cluster/controlplane.ts';
import { installCrds } from '../crds.ts';
import { buildCertManager } from '../certmanager/certmanager.ts';
import { helmBinary } from '../helm/helm.ts';
import { promtoolBinary } from '../promtool/promtool.ts';
import { buildMailpit } from '../mailpit/mailpit.ts';
import { krewBinary } from '../krew/krew.ts';
import { findSecrets } from '../logs.ts';
import { KubeClient } from '../../src/controller/kube.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    kubeconfig: string;
    /** The Kubernetes release of the built-in control plane, when the run uses it. */
    localVersion: string | undefined;
    /** Where every operator log of the run is written, to be scanned at the end. */
    logDir: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  // The other Go tools the suite runs are built here, one after the other and outside any
  // test's timeout: a cold build takes minutes on two cores.
  buildCertManager();
  helmBinary();
  promtoolBinary();
  buildMailpit();
  krewBinary();

  let kubeconfig: string;
  let source: string;
  let controlPlane: ControlPlane | undefined;
  let dir: string | undefined;

  if (process.env.KUBECONFIG) {
    kubeconfig = process.env.KUBECONFIG;
    source = `KUBECONFIG=${kubeconfig}`;
  } else {
    dir = mkdtempSync(path.join(tmpdir(), 'suo-controlplane-'));
    const assets = process.env.KUBEBUILDER_ASSETS;
    controlPlane = await startControlPlane(assets ? { dir, assets } : { dir });
    kubeconfig = controlPlane.kubeconfig;
    source = assets ? `envtest binaries in ${assets}` : 'local control plane (test/cluster)';
  }

  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  const version = await kc.makeApiClient(VersionApi).getCode();
  console.log(`integration tests run against Kubernetes ${version.gitVersion} at ${kc.getCurrentCluster()?.server} (${source})`);

  // Installed once, before any test: every test file shares them, and the garbage
  // collector has learnt them by the time tests delete owners.
  await installCrds(kc);

  project.provide('kubeconfig', kubeconfig);
  const logDir = mkdtempSync(path.join(tmpdir(), 'suo-test-logs-'));
  project.provide('logDir', logDir);
  project.provide('localVersion', controlPlane && !process.env.KUBEBUILDER_ASSETS ? kubernetesVersion() : undefined);
  return async () => {
    // Accounts are cluster-scoped and shared by the files (test/operator.ts useAccounts).
    const cleanup = new KubeClient(kc);
    await cleanup.request('DELETE', '/apis/serviceusers.dev/v1alpha1/accounts?labelSelector=serviceusers.dev%2Ftest%3Dtrue').catch(() => undefined);
    cleanup.close();
    await controlPlane?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
    // The whole run's operator logs: no token, no private key, in any of them.
    const leaks: string[] = [];
    let bytes = 0;
    for (const file of readdirSync(logDir)) {
      const text = readFileSync(path.join(logDir, file), 'utf8');
      bytes += text.length;
      leaks.push(...findSecrets(text).map((where) => `${file} ${where}`));
    }
    console.log(`log scan: ${Math.round(bytes / 1024)} KiB of operator logs from this run, ${leaks.length} credential leaks`);
    if (leaks.length) {
      // An error thrown here is only printed; the exit code is what CI reads.
      process.exitCode = 1;
      throw new Error(`credential material in the operator's logs (kept in ${logDir}):\n${leaks.join('\n')}`);
    }
    rmSync(logDir, { recursive: true, force: true });
  };
}
