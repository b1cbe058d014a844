// Real cert-manager for the tests that need it: builds the wrapper module in this folder
// (cached like the control plane), installs cert-manager's CRDs from the same module
// version, and runs its controllers out of cluster against the test API server.
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { KubeConfig } from '@kubernetes/client-node';
import { loadAll } from 'js-yaml';
import { KubeClient, type KubeObject } from '../../src/controller/kube.ts';
import { buildGoModule } from '../cluster/controlplane.ts';

const moduleDir = path.dirname(fileURLToPath(import.meta.url));

export interface CertManager {
  version: string;
  /** The controller process (the only one: no webhook, no cainjector), for /proc readings. */
  pid: number;
  stop(): Promise<void>;
}

function certManagerModule(): { dir: string; version: string } {
  const out = execFileSync('go', ['list', '-m', '-f', '{{.Dir}} {{.Version}}', 'github.com/cert-manager/cert-manager'], {
    cwd: moduleDir,
    encoding: 'utf8',
    env: { ...process.env, GOTOOLCHAIN: 'local' },
  }).trim();
  const [dir, version] = out.split(' ');
  return { dir: dir!, version: version! };
}

export function buildCertManager(): string {
  return buildGoModule(moduleDir, 'certmanager');
}

/** cert-manager's CRDs, from the module version the tests build, applied and served. */
export async function installCertManagerCrds(kubeconfig: string): Promise<void> {
  const { dir } = certManagerModule();
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  const client = new KubeClient(kc);
  try {
    const crdDir = path.join(dir, 'deploy', 'crds');
    for (const file of readdirSync(crdDir).filter((f) => f.endsWith('.yaml'))) {
      for (const crd of loadAll(readFileSync(path.join(crdDir, file), 'utf8')) as (KubeObject | null)[]) {
        if (!crd) continue;
        await client.apply(`/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${crd.metadata.name}`, crd, 'service-user-operator-tests');
      }
    }
    // Every CRD established, and its API served (discovery lags "Established" a little).
    for (const plural of ['certificates', 'certificaterequests', 'issuers', 'clusterissuers']) {
      for (let i = 0; ; i++) {
        const crd = await client.get<{ status?: { conditions?: { type: string; status: string }[] } }>(`/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${plural}.cert-manager.io`);
        const established = crd.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True');
        const served = established && (await client.get(`/apis/cert-manager.io/v1/${plural}?limit=1`).then(() => true, () => false));
        if (served) break;
        if (i > 300) throw new Error(`cert-manager CRD ${plural} not served after 30s`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  } finally {
    client.close();
  }
}

export async function startCertManager(kubeconfig: string): Promise<CertManager> {
  const binary = buildCertManager();
  const { version } = certManagerModule();
  await installCertManagerCrds(kubeconfig);
  const child = spawn(binary, ['--kubeconfig', kubeconfig], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stderr.on('data', (c: Buffer) => (log = (log + c.toString()).slice(-8192)));
  const started = new Promise<void>((resolve, reject) => {
    createInterface({ input: child.stdout }).on('line', (line) => line.includes('controllers started') && resolve());
    child.once('exit', (code) => reject(new Error(`cert-manager exited (${code}):\n${log}`)));
  });
  await started;
  return {
    version,
    pid: child.pid!,
    async stop() {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await once(child, 'exit');
      clearTimeout(timer);
    },
  };
}
