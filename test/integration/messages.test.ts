// What the product says when something is off (issue 21, item 10), on the real API server
// with the operator, kubectl and the kubectl plugin as a person meets them:
//   - a ServiceUser created with an end date already past is admitted with a warning (the
//     shipped policy's Warn binding), and its Expired event claims no revocation of
//     credentials that never existed;
//   - Warning events are logged at warn;
//   - a 403 from the verification service names the Role that grants the permission;
//   - `kubectl service-user list` says why an ACCOUNTS column is empty.
// (CEL errors showing the offending value, and 30d meaning 720h, are checked by the
// bad-input corpus in api.test.ts: `# shows:` lines.)
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import path from 'node:path';
import { loadAll } from 'js-yaml';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { resourcePath, type KubeObject } from '../../src/controller/kube.ts';
import { resources } from '../../src/api/resources.ts';
import { verifierRole } from '../../src/verify/callers.ts';
import { repoRoot } from '../cluster/controlplane.ts';
import { eventually, useNamespace } from '../kube.ts';
import { api, decodeSecret, useAccounts, useOperator } from '../operator.ts';

const ns = useNamespace('messages');
const running = useOperator(ns, { verification: { address: '127.0.0.1:0' } });
const account = `msg-${randomBytes(3).toString('hex')}`;
useAccounts([account]);
const suffix = randomBytes(3).toString('hex');
const policyPaths: string[] = [];

/** kubectl as a person runs it, with the plugin on PATH (flags after a plugin's name: kubectl's rule). */
function kubectl(args: string[], input?: string): Promise<{ ok: boolean; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = execFile(
      'kubectl',
      args,
      { encoding: 'utf8', timeout: 60_000, env: { ...process.env, KUBECONFIG: inject('kubeconfig'), PATH: `${path.join(repoRoot, 'bin')}:${process.env.PATH}` } },
      (error, out, err) => resolve({ ok: !error, out, err }),
    );
    child.stdin!.end(input ?? '');
  });
}
const serviceUserJson = (name: string, spec: object) => JSON.stringify({ apiVersion: 'serviceusers.dev/v1alpha1', kind: 'ServiceUser', metadata: { name }, spec });

// The shipped end-date policy, under this file's name, bound to its namespace only.
beforeAll(async () => {
  const docs = (loadAll(readFileSync(path.join(repoRoot, 'config/policy/admission.yaml'), 'utf8')) as KubeObject[]).filter((d) => d?.metadata.name === 'serviceusers.dev-end-date-passed');
  expect(docs.map((d) => d.kind)).toEqual(['ValidatingAdmissionPolicy', 'ValidatingAdmissionPolicyBinding']);
  for (const doc of docs) {
    const name = `${suffix}-${doc.metadata.name}`;
    const spec = doc.spec as Record<string, unknown>;
    if (doc.kind === 'ValidatingAdmissionPolicyBinding') {
      spec.policyName = `${suffix}-${spec.policyName as string}`;
      spec.matchResources = { namespaceSelector: { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'In', values: [ns.name] }] } };
    }
    const plural = doc.kind === 'ValidatingAdmissionPolicy' ? 'validatingadmissionpolicies' : 'validatingadmissionpolicybindings';
    const p = `/apis/admissionregistration.k8s.io/v1/${plural}/${name}`;
    await running.client.apply(p, { ...doc, metadata: { name } }, 'messages-test');
    policyPaths.push(p);
  }
});
afterAll(async () => {
  for (const p of policyPaths.reverse()) await running.client.request('DELETE', p).catch(() => undefined);
});

describe('an end date already past', () => {
  it('is admitted with a warning, and its event says nothing was issued rather than revoked; the Warning logs at warn', { timeout: 90_000 }, async () => {
    // A policy takes effect a moment after it is written: a dry run says when.
    const json = serviceUserJson('back-dated', { email: 'ops@example.com', accounts: [account], endDate: '2020-01-01' });
    await eventually('the end-date policy to warn', async () => {
      const r = await kubectl(['create', '-n', ns.name, '--dry-run=server', '-f', '-'], json);
      return r.err.includes('has already passed') ? true : undefined;
    }, 30_000);
    const created = await kubectl(['create', '-n', ns.name, '-f', '-'], json);
    expect(created.ok, created.err).toBe(true);
    expect(created.out).toContain('serviceuser.serviceusers.dev/back-dated created');
    expect(created.err).toMatch(/Warning: .*ServiceUser back-dated: spec\.endDate "2020-01-01" has already passed: admitted, but it gets no credentials/);

    const su = api(running.client, ns.name);
    await su.waitFor('back-dated', 'phase Expired', (o) => (o.status as { phase?: string } | undefined)?.phase === 'Expired');
    const expired = await eventually('the Expired event', async () => (await su.events('back-dated')).find((e) => e.reason === 'Expired'));
    expect(expired.type).toBe('Warning');
    expect(expired.message).toMatch(/^end date 2020-01-01T23:59:59Z had already passed when it was created \(.+\): no credentials were issued; extend spec\.endDate to issue them$/);
    expect(expired.message).not.toMatch(/revoked/);
    const secret = await su.secret('back-dated-credentials');
    if (secret) expect(Object.keys(decodeSecret(secret))).not.toContain('token');

    // The same event in the operator's log, at warn (pino level 40).
    const records = running.logs.join('').split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { level: number; reason?: string; msg: string });
    const line = records.find((l) => l.reason === 'Expired' && l.msg.includes('no credentials were issued'));
    expect(line?.level).toBe(40);
  });

  it('a future end date, in any zone, is admitted without a warning', async () => {
    const r = await kubectl(['create', '-n', ns.name, '--dry-run=server', '-f', '-'], serviceUserJson('future', { email: 'ops@example.com', accounts: [account], endDate: '2099-01-01T00:00:00+02:00' }));
    expect(r.ok, r.err).toBe(true);
    expect(r.err).not.toContain('Warning');
  });
});

describe('the verification service', () => {
  it('refuses a service user without the verifier Role with a 403 naming that Role', { timeout: 60_000 }, async () => {
    const su = api(running.client, ns.name);
    await su.createServiceUser('plain', { email: 'ops@example.com', accounts: [account] });
    const { token } = decodeSecret(
      await eventually('plain\'s token', async () => ((await su.serviceUser('plain')).status as { phase?: string } | undefined)?.phase === 'Active' ? su.secret('plain-credentials') : undefined),
    );
    const answer = await new Promise<{ status: number; body: { message?: string } }>((resolve, reject) => {
      const req = request(
        {
          host: '127.0.0.1', port: running.operator.verificationPort(), path: '/v1/introspect', method: 'POST',
          ca: running.operator.authority.ca.certPem, headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        },
        (res) => {
          let text = '';
          res.on('data', (c: Buffer) => (text += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as { message?: string } }));
        },
      );
      req.on('error', reject);
      req.end(JSON.stringify({ token }));
    });
    expect(answer.status).toBe(403);
    expect(answer.body.message).toContain(`is not granted verification:introspect: the Role ${verifierRole} grants it`);
    // The Role it names exists in the seed catalog and grants exactly that.
    const catalog = loadAll(readFileSync(path.join(repoRoot, 'config/roles/service-user-operator.yaml'), 'utf8')) as KubeObject[];
    const role = catalog.find((d) => d?.metadata.name === verifierRole);
    expect((role?.spec as { permissions: string[] }).permissions).toContain('verification:introspect');
  });
});

describe('kubectl service-user list', () => {
  it('says why the ACCOUNTS column of a user no Account admits is empty', { timeout: 60_000 }, async () => {
    const su = api(running.client, ns.name);
    await su.createServiceUser('stranger', { email: 'ops@example.com', accounts: [`${account}-nowhere`] });
    await su.waitFor('stranger', 'status.accounts judged', (o) => Array.isArray((o.status as { accounts?: unknown } | undefined)?.accounts));
    const listed = await kubectl(['service-user', 'list', '-n', ns.name]);
    expect(listed.ok, listed.err).toBe(true);
    expect(listed.out).toMatch(/^stranger\s.*<none admitted>$/m);
    expect(listed.err).toContain('<none admitted>: no Account admits the namespace for the accounts spec.accounts names');
  });
});

describe('RoleBinding events in the log', () => {
  it('a refused RoleBinding\'s Warning is logged at warn beside its event', { timeout: 60_000 }, async () => {
    await api(running.client, ns.name).createServiceUser('bound', { email: 'ops@example.com', accounts: [account] });
    await running.client.request('POST', resourcePath(resources.roleBindings, ns.name), {
      apiVersion: 'serviceusers.dev/v1alpha1', kind: 'RoleBinding', metadata: { name: 'to-nothing' },
      spec: { roleRef: { name: 'no-such-role.anywhere' }, subjects: [{ kind: 'ServiceUser', name: 'bound' }], accounts: [account] },
    });
    const line = await eventually('the Warning in the operator\'s log', async () => {
      const records = running.logs.join('').split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { level: number; roleBinding?: string; msg: string });
      return records.find((l) => l.roleBinding === `${ns.name}/to-nothing`);
    }, 30_000);
    expect(line.level).toBe(40);
    expect(line.msg).toContain('no-such-role.anywhere');
  });
});
