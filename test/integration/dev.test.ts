// `npm run dev` end to end, on a control plane of its own: the sample ServiceUser becomes
// Ready with a token in its Secret whose SHA-256 status records, admitted by the sample
// Accounts and granted by the sample RoleBinding; the verification service answers where it
// says it listens; the admission policies police tenants as in a real install; Ctrl-C stops
// everything.
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { KubeConfig } from '@kubernetes/client-node';
import { expect, it } from 'vitest';
import { KubeClient } from '../../src/controller/kube.ts';
import { repoRoot } from '../cluster/controlplane.ts';
import { eventually } from '../kube.ts';
import { findSecrets, recordLog } from '../logs.ts';
import { freePort } from '../net.ts';

const run = promisify(execFile);

it('npm run dev shows a sample ServiceUser Ready, its token matching status, where verification listens, polices tenants, and stops on Ctrl-C', { timeout: 180_000 }, async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'suo-dev-'));
  const verifyAddress = `127.0.0.1:${await freePort()}`;
  const child = spawn(process.execPath, [path.join(repoRoot, 'test/cluster/dev.ts')], {
    env: { ...process.env, SUO_DEV_DIR: dir, SUO_DEV_VERIFY_ADDRESS: verifyAddress },
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
    await eventually('the commands', async () => (out.includes('Ctrl-C stops') ? true : undefined), 150_000);
    expect(out).toMatch(/\[dev\] ServiceUser ci\/release-signer is Ready; its token's SHA-256 matches status\.tokens/);
    // The README's namespace and commands.
    expect(out).toContain(`kubectl get secret release-signer-credentials -n ci -o jsonpath='{.data.token}' | base64 -d`);
    expect(findSecrets(out)).toEqual([]);
    // Where the verification service listens, and a real client reaching it with the CA the
    // printed command reads.
    expect(out).toContain(`[dev] verification service: https://${verifyAddress} `);
    const env = { ...process.env, KUBECONFIG: path.join(dir, 'kubeconfig') };
    const caCommand = /^ {2}(kubectl get secret service-user-operator-ca .*)$/m.exec(out)?.[1];
    expect(caCommand).toBeDefined();
    const ca = await run('sh', ['-c', caCommand!], { env, cwd: dir });
    expect(ca.stderr).toBe('');
    const curlCommand = /^ {2}(curl --cacert ca\.crt \S+)$/m.exec(out)?.[1];
    expect(curlCommand).toBe(`curl --cacert ca.crt https://${verifyAddress}/v1/ca.crt`);
    const served = await run('sh', ['-c', `${curlCommand} --fail --silent --show-error`], { env, cwd: dir });
    expect(served.stdout).toContain('-----BEGIN CERTIFICATE-----');
    // The cert-manager sample, on a cluster without cert-manager, says so and what to do.
    const kc = new KubeConfig();
    kc.loadFromFile(path.join(dir, 'kubeconfig'));
    const client = new KubeClient(kc);
    const gitops = await eventually('the cert-manager sample to report', async () => {
      const su = await client.get<{ status?: { conditions?: { type: string; reason: string; message: string }[] } }>('/apis/serviceusers.dev/v1alpha1/namespaces/ci/serviceusers/gitops-deployer');
      const readyCondition = su.status?.conditions?.find((c) => c.type === 'Ready');
      return readyCondition?.reason === 'CertManagerMissing' ? readyCondition : undefined;
    });
    expect(gitops.message).toContain('cert-manager is not installed');
    // The sample Accounts admit the ci namespace: release-signer may sign in acme-prod.
    const signer = await eventually('release-signer admitted and granted', async () => {
      const su = await client.get<{ status?: { accounts?: string[]; permissions?: { account: string; permission: string }[] } }>('/apis/serviceusers.dev/v1alpha1/namespaces/ci/serviceusers/release-signer');
      return su.status?.accounts?.length === 2 && su.status.permissions?.length ? su.status : undefined;
    });
    expect(signer.accounts).toEqual(['acme-prod', 'acme-staging']);
    expect(signer.permissions).toContainEqual(expect.objectContaining({ account: 'acme-prod', permission: 'signatures:sign' }));
    // Tenancy as in a real install: a namespace editor (the standard edit role, which the
    // roles for people extend) may declare service users, but not in an account nobody let
    // them use — the admission policy says so.
    await client.request('POST', '/apis/rbac.authorization.k8s.io/v1/namespaces/ci/rolebindings', {
      apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'RoleBinding', metadata: { name: 'dev-test-editor' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'edit' },
      subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: 'dev-test-editor' }],
    });
    client.close();
    const manifest = path.join(dir, 'intruder.json');
    writeFileSync(manifest, JSON.stringify({ apiVersion: 'serviceusers.dev/v1alpha1', kind: 'ServiceUser', metadata: { name: 'intruder' }, spec: { email: 'x@example.com', accounts: ['acme-prod'] } }));
    const refused = await eventually('the policy to refuse an editor', async () => {
      const r = await run('kubectl', ['create', '-n', 'ci', '--dry-run=server', '--as', 'dev-test-editor', '-f', manifest], { env }).then(
        () => 'accepted',
        (err: { stderr: string }) => err.stderr,
      );
      // RBAC's aggregation of the roles for people into edit takes a moment.
      return /may not use account acme-prod/.test(r) ? r : undefined;
    }, 30_000);
    expect(refused).toContain('that needs verb use on accounts.serviceusers.dev named acme-prod');
    child.kill('SIGINT');
    const [code] = (await once(child, 'exit')) as [number];
    expect(code).toBe(0);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});
