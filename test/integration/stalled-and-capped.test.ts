// Lifecycle at the edges (issue 12 items 7 and 8), against the real API server: a Stalled
// ServiceUser still expires at its end date (tokens and certificate revoked, our Secret wiped,
// a Secret that is not ours never touched), and permissions past status's cap of 4,096 are
// cut, said in a condition, and never granted, while the status write — and so the token
// record — goes through.
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { resources } from '../../src/api/resources.ts';
import { keyRingOf } from '../../src/authority/ledger-key.ts';
import { serviceUser } from '../../src/api/serviceuser.ts';
import { resourcePath, type KubeObject } from '../../src/controller/kube.ts';
import { tokenSha256 } from '../../src/credentials/token.ts';
import { authorize } from '../../src/verify/answers.ts';
import { Directory } from '../../src/verify/directory.ts';
import { verifyToken } from '../../src/verify/verdict.ts';
import { eventually, useNamespace } from '../kube.ts';
import { api, decodeSecret, useAccounts, useOperator, statusOf } from '../operator.ts';
import { platformWide } from '../../src/verify/scope.ts';

const ns = useNamespace('edges');
const running = useOperator(ns);
useAccounts(['acme', ...Array.from({ length: 17 }, (_, i) => `acct-${String(i).padStart(2, '0')}`)]);
const k = () => api(running.client, ns.name);
const condition = (o: KubeObject, type: string) => statusOf(o).conditions?.find((c) => c.type === type);
const base = { email: 'ops@example.com', accounts: ['acme'] };
/** An end date two days ahead, as a date (it ends at 23:59:59 UTC that day). */
const endDate = new Date(Date.now() + 2 * 86_400_000).toISOString().slice(0, 10);
const end = Date.parse(`${endDate}T23:59:59Z`);

/** Moves the operator's clock past the end date and wakes the ServiceUser (a label change). */
async function passEndDate(name: string) {
  running.clock.offsetMs = end - Date.now() + 5_000;
  await running.client.mergePatch(resourcePath(resources.serviceUsers, ns.name, name), { metadata: { labels: { poke: String(Date.now()) } } });
}
afterEach(() => {
  running.clock.offsetMs = 0;
});

async function activeWithCertificate(name: string, spec: Record<string, unknown> = {}) {
  await k().createServiceUser(name, { ...base, endDate, ...spec });
  const su = await k().waitFor(name, 'Active with a certificate', (o) => statusOf(o).phase === 'Active' && !!statusOf(o).certificate, 30_000);
  const secret = decodeSecret((await k().secret(`${name}-credentials`))!);
  expect(secret.token).toMatch(/^suo_/);
  expect(secret['tls.crt']).toContain('BEGIN CERTIFICATE');
  return { su, token: secret.token!, serial: statusOf(su).certificate!.serialNumber };
}

describe('a Stalled ServiceUser at its end date (item 7)', () => {
  it('stalled by a friendly-name conflict: tokens revoked, certificate on the CRL, its Secret wiped, phase Expired', { timeout: 90_000 }, async () => {
    await k().createServiceUser('holder', { ...base, friendlyName: 'Deployer' });
    await k().waitFor('holder', 'Active', (o) => statusOf(o).phase === 'Active', 30_000);
    const { token, serial } = await activeWithCertificate('latecomer');
    await k().patchServiceUser('latecomer', { friendlyName: 'Deployer' });
    const stalled = await k().waitFor('latecomer', 'Stalled', (o) => condition(o, 'Stalled')?.status === 'True');
    expect(condition(stalled, 'Stalled')!.reason).toBe('FriendlyNameConflict');
    // Stalled keeps its records: the certificate is still known, to revoke later.
    expect(statusOf(stalled).certificate?.serialNumber).toBe(serial);
    expect(await running.operator.authority.ledger.isListed(serial)).toBe(false);

    await passEndDate('latecomer');
    const expired = await k().waitFor('latecomer', 'phase Expired', (o) => statusOf(o).phase === 'Expired', 30_000);
    expect(statusOf(expired).tokens!.map((t) => `${t.state}:${t.reason}`)).toEqual(['Revoked:Expired']);
    expect(condition(expired, 'Expired')).toMatchObject({ status: 'True' });
    expect(condition(expired, 'Stalled')).toMatchObject({ status: 'True', reason: 'FriendlyNameConflict' });
    expect(verifyToken(serviceUser.parse(expired), token, Date.now() + running.clock.offsetMs)).toMatchObject({ active: false });
    const secret = decodeSecret((await k().secret('latecomer-credentials'))!);
    expect(Object.keys(secret).sort()).toEqual(['expires-at', 'identity']);
    expect(await running.operator.authority.ledger.isListed(serial)).toBe(true);
    const events = await k().events('latecomer');
    expect(events.map((e) => e.reason)).toEqual(expect.arrayContaining(['FriendlyNameConflict', 'Expired']));
    // The expiry is one event, naming the revoked token; no TokenRevoked beside it.
    expect(events.find((e) => e.reason === 'Expired')!.message).toContain(`(token ${statusOf(expired).tokens![0]!.id})`);
    expect(events.some((e) => e.reason === 'TokenRevoked')).toBe(false);
  });

  it('stalled because its Secret is not its own: revoked all the same, and that Secret is never written', { timeout: 90_000 }, async () => {
    const { serial } = await activeWithCertificate('disowned');
    const secretPath = resourcePath(resources.secrets, ns.name, 'disowned-credentials');
    // Someone takes the Secret over: it no longer belongs to the ServiceUser.
    await running.client.mergePatch(secretPath, { metadata: { ownerReferences: null } });
    await k().waitFor('disowned', 'Stalled', (o) => condition(o, 'Stalled')?.reason === 'SecretNotOwned');
    const before = await running.client.get(secretPath);

    await passEndDate('disowned');
    const expired = await k().waitFor('disowned', 'phase Expired', (o) => statusOf(o).phase === 'Expired', 30_000);
    expect(statusOf(expired).tokens!.map((t) => `${t.state}:${t.reason}`)).toEqual(['Revoked:Expired']);
    expect(await running.operator.authority.ledger.isListed(serial)).toBe(true);
    const after = await running.client.get(secretPath);
    expect(after.metadata.resourceVersion).toBe(before.metadata.resourceVersion);
    expect(after.data).toEqual(before.data);
  });
});

describe('permissions past the status cap (item 8)', () => {
  const roleName = `edges-${ns.name}.many`;
  const permissions = Array.from({ length: 256 }, (_, i) => `area-${String(i).padStart(3, '0')}:use`);
  const accounts = Array.from({ length: 17 }, (_, i) => `acct-${String(i).padStart(2, '0')}`);
  afterAll(async () => {
    await running.client.request('DELETE', resourcePath(resources.roles, undefined, roleName)).catch(() => undefined);
  });

  it('records the first 4,096, says so in a condition and an event, records the token, and grants nothing cut', { timeout: 90_000 }, async () => {
    await running.client.request('POST', resourcePath(resources.roles), {
      apiVersion: 'serviceusers.dev/v1alpha1',
      kind: 'Role',
      metadata: { name: roleName },
      spec: { displayName: 'Many', manager: 'software-trust-manager', permissions },
    });
    await k().createServiceUser('crowded', { email: 'ops@example.com', accounts, credentials: { clientCertificate: { enabled: false } } });
    await running.client.request('POST', resourcePath(resources.roleBindings, ns.name), {
      apiVersion: 'serviceusers.dev/v1alpha1',
      kind: 'RoleBinding',
      metadata: { name: 'crowded-many' },
      spec: { roleRef: { kind: 'Role', name: roleName }, subjects: [{ kind: 'ServiceUser', name: 'crowded' }] },
    });
    // 17 accounts × 256 permissions = 4,352 grants.
    const su = await k().waitFor('crowded', 'the permissions recorded and the cut said', (o) => condition(o, 'PermissionsTruncated')?.status === 'True', 30_000);
    expect(condition(su, 'PermissionsTruncated')).toMatchObject({ reason: 'TooManyPermissions' });
    expect(condition(su, 'PermissionsTruncated')!.message).toContain('grant 4352 permissions');
    expect(condition(su, 'PermissionsTruncated')!.message).toContain('the other 256 are refused');
    const recorded = statusOf(su).permissions!;
    expect(recorded).toHaveLength(4096);
    expect(recorded.at(-1)).toMatchObject({ account: 'acct-15', permission: 'area-255:use' });
    expect(recorded.some((p) => p.account === 'acct-16')).toBe(false);

    // The token in the Secret is recorded: the status write went through.
    expect(statusOf(su).phase).toBe('Active');
    const token = decodeSecret((await k().secret('crowded-credentials'))!).token!;
    expect(statusOf(su).tokens!.find((t) => t.state === 'Active')?.sha256).toBe(tokenSha256(token));
    const now = Date.now();
    expect(verifyToken(serviceUser.parse(su), token, now)).toMatchObject({ active: true });

    // Verification grants what is recorded and refuses what was cut.
    // The directory honours what carries the operator's seal: it needs the ledger key.
    const directory = new Directory({ ring: keyRingOf(await running.client.get(resourcePath(resources.secrets, ns.name, 'service-user-operator-ledger-key'))) });
    directory.observe('ADDED', su);
    expect(authorize(directory, { token, account: 'acct-00', permission: 'area-000:use' }, now, platformWide)).toMatchObject({ allowed: true });
    expect(authorize(directory, { token, account: 'acct-16', permission: 'area-000:use' }, now, platformWide)).toMatchObject({ allowed: false });

    const events = await eventually('the PermissionsTruncated event', async () => {
      const list = (await k().events('crowded')).filter((e) => e.reason === 'PermissionsTruncated');
      return list.length ? list : undefined;
    });
    expect(events[0]).toMatchObject({ type: 'Warning' });
  });
});
