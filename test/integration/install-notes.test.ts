// The chart's install notes (templates/NOTES.txt, what `helm install` prints), run as a
// newcomer runs them (issue 21, item 5): each `kubectl apply … <<'YAML'` block through a
// shell and real kubectl, in order, then the commands that read the result. They must create
// what they need — an Account admitting the namespace before the ServiceUser that names it —
// so the ServiceUser ends up with its account admitted, not silently without permissions.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, expect, inject, it } from 'vitest';
import { resourcePath } from '../../src/controller/kube.ts';
import { resources } from '../../src/api/resources.ts';
import { repoRoot } from '../cluster/controlplane.ts';
import { useNamespace } from '../kube.ts';
import { api, useOperator } from '../operator.ts';

const ns = useNamespace('notes');
const running = useOperator(ns);
// Accounts are cluster-scoped and shared by the run: this file's is its own.
const account = `notes-${randomBytes(3).toString('hex')}`;
afterAll(async () => {
  await running.client.request('DELETE', resourcePath(resources.accounts, undefined, account)).catch(() => undefined);
});

const notes = readFileSync(path.join(repoRoot, 'charts/service-user-operator/templates/NOTES.txt'), 'utf8')
  .replaceAll('my-namespace', ns.name)
  .replaceAll('acme-prod', account);

function sh(script: string): Promise<{ ok: boolean; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile('sh', ['-c', script], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, KUBECONFIG: inject('kubeconfig') } }, (error, out, err) =>
      resolve({ ok: !error, out, err }),
    );
  });
}

it('the install notes create an Account, then a ServiceUser it admits, and read its Secret', { timeout: 90_000 }, async () => {
  // Each block: the command line, the manifest, the closing YAML — indented two spaces.
  const blocks = [...notes.matchAll(/^ {2}kubectl apply [^\n]*<<'YAML'\n[\s\S]*?^ {2}YAML$/gm)].map((m) => m[0].replace(/^ {2}/gm, ''));
  expect(blocks.map((b) => /^kind: (\w+)$/m.exec(b)?.[1])).toEqual(['Account', 'ServiceUser']);
  for (const block of blocks) {
    const r = await sh(block);
    expect(r.ok, r.err).toBe(true);
    expect(r.err).toBe('');
  }

  const su = await api(running.client, ns.name).waitFor('release-signer', 'its account admitted and credentials issued', (o) => {
    const status = o.status as { phase?: string; accounts?: string[] } | undefined;
    return status?.phase === 'Active' && (status.accounts ?? []).includes(account);
  }, 60_000);
  const admitted = (su.status as { conditions?: { type: string; status: string }[] }).conditions?.find((c) => c.type === 'AccountsAdmitted');
  expect(admitted?.status).toBe('True');

  // The notes' read commands, as printed.
  const reads = [...notes.matchAll(/^ {2}(kubectl get (?:service-users|secret release-signer-credentials) [^\n]+)$/gm)].map((m) => m[1]!);
  expect(reads).toHaveLength(2);
  const listed = await sh(reads[0]!);
  expect(listed.out).toMatch(/^serviceuser\.serviceusers\.dev\/release-signer\s+release-signer\s+Active\s/m);
  const token = await sh(reads[1]!);
  // Never printed: a failed match would show the token in the report.
  expect(/^suo_[a-z2-7]{16}_[0-9A-Za-z]{49}$/.test(token.out.trim())).toBe(true);
});
