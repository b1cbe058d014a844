// `npm run dev` end to end, on a control plane of its own: the sample ServiceUser becomes
// Ready with a token in its Secret whose SHA-256 status records, admitted by the sample
// Accounts and granted by the sample RoleBinding; Ctrl-C stops everything.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { expect, it } from 'vitest';
import { KubeClient } from '../../src/controller/kube.ts';
import { repoRoot } from '../cluster/controlplane.ts';
import { eventually } from '../kube.ts';
import { findSecrets, recordLog } from '../logs.ts';

it('npm run dev shows a sample ServiceUser Ready, its token matching status, and stops on Ctrl-C', { timeout: 180_000 }, async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'suo-dev-'));
  const child = spawn(process.execPath, [path.join(repoRoot, 'test/cluster/dev.ts')], {
    env: { ...process.env, SUO_DEV_DIR: dir },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const capture = (c: Buffer) => {
    out += c.toString();
    recordLog(c.toString());
  };
  child.stdout.on('data', capture);
  child.stderr.on('data', capture);
  try {
    await eventually('the Ready line', async () => (out.includes('is Ready;') ? true : undefined), 150_000);
    expect(out).toMatch(/\[dev\] ServiceUser demo\/release-signer is Ready; its token's SHA-256 matches status\.tokens/);
    expect(out).toContain(`kubectl get secret release-signer-credentials -n demo -o jsonpath='{.data.token}' | base64 -d`);
    expect(findSecrets(out)).toEqual([]);
    // The cert-manager sample, on a cluster without cert-manager, says so and what to do.
    const kc = new KubeConfig();
    kc.loadFromFile(path.join(dir, 'kubeconfig'));
    const client = new KubeClient(kc);
    const gitops = await eventually('the cert-manager sample to report', async () => {
      const su = await client.get<{ status?: { conditions?: { type: string; reason: string; message: string }[] } }>('/apis/serviceusers.dev/v1alpha1/namespaces/demo/serviceusers/gitops-deployer');
      const readyCondition = su.status?.conditions?.find((c) => c.type === 'Ready');
      return readyCondition?.reason === 'CertManagerMissing' ? readyCondition : undefined;
    });
    expect(gitops.message).toContain('cert-manager is not installed');
    // The sample Accounts admit the demo namespace: release-signer may sign in acme-prod.
    const signer = await eventually('release-signer admitted and granted', async () => {
      const su = await client.get<{ status?: { accounts?: string[]; permissions?: { account: string; permission: string }[] } }>('/apis/serviceusers.dev/v1alpha1/namespaces/demo/serviceusers/release-signer');
      return su.status?.accounts?.length === 2 && su.status.permissions?.length ? su.status : undefined;
    });
    client.close();
    expect(signer.accounts).toEqual(['acme-prod', 'acme-staging']);
    expect(signer.permissions).toContainEqual(expect.objectContaining({ account: 'acme-prod', permission: 'signatures:sign' }));
    child.kill('SIGINT');
    const [code] = (await once(child, 'exit')) as [number];
    expect(code).toBe(0);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});
