// The operator against the real API server: declared ServiceUsers become working,
// expiring, revocable tokens in Secrets; RoleBindings become permissions.
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { serviceUser, type ServiceUser } from '../../src/api/serviceuser.ts';
import { resourcePath, type KubeObject } from '../../src/controller/kube.ts';
import { resources } from '../../src/api/resources.ts';
import { parseToken, tokenSha256 } from '../../src/credentials/token.ts';
import { verifyToken } from '../../src/verify/verdict.ts';
import { eventually, useNamespace } from '../kube.ts';
import { api, decodeSecret, useAccounts, useOperator, statusOf } from '../operator.ts';
import { findSecrets } from '../logs.ts';
import { createMetrics } from '../../src/observability/metrics.ts';

const ns = useNamespace('operator');
const metrics = createMetrics();
const running = useOperator(ns, { metrics });
const revokedTotal = async (reason: string) => (await metrics.registry.getSingleMetric('serviceuser_tokens_revoked_total')!.get()).values.filter((v) => v.labels.reason === reason).reduce((a, v) => a + v.value, 0);
useAccounts(['acme-prod', 'acme-dev']);
const seenTokens = new Set<string>();

const condition = (o: KubeObject, type: string) => statusOf(o).conditions?.find((c) => c.type === type);

function k() {
  return api(running.client, ns.name);
}

/** The Secret's token once status records it Active: a consistent view of both. */
async function activeToken(name: string, secretName = `${name}-credentials`) {
  return eventually(`${name}: a token in ${secretName} recorded Active`, async () => {
    const su = await k().serviceUser(name);
    const secret = await k().secret(secretName);
    const token = secret && decodeSecret(secret).token;
    if (!token || statusOf(su).phase !== 'Active') return undefined;
    const recorded = statusOf(su).tokens?.find((t) => t.state === 'Active' && t.sha256 === tokenSha256(token));
    if (!recorded) return undefined;
    seenTokens.add(token);
    return { su, secret, token, id: recorded.id };
  });
}

/** verifyToken against the live object, as the verification service will. */
async function valid(name: string, token: string): Promise<boolean> {
  const su = serviceUser.parse(await k().serviceUser(name)) as ServiceUser;
  return verifyToken(su, token, Date.now() + running.clock.offsetMs).active;
}

const base = { email: 'ops@example.com', accounts: ['acme-prod', 'acme-dev'] };

describe('issuing', () => {
  it('writes a token into an owned, labelled Secret and only its SHA-256 into status', async () => {
    await k().createServiceUser('signer', {
      ...base,
      friendlyName: 'Release signer',
      endDate: '2099-12-31',
      credentials: { secretTemplate: { labels: { team: 'release' }, annotations: { 'example.com/owner': 'platform' } } },
    });
    const { su, secret, token, id } = await activeToken('signer');
    const data = decodeSecret(secret);
    expect(data).toMatchObject({ 'token-id': id, identity: `serviceuser:${ns.name}:signer`, 'expires-at': '2099-12-31T23:59:59Z' });
    expect(secret.metadata.labels).toMatchObject({ 'app.kubernetes.io/managed-by': 'service-user-operator', 'serviceusers.dev/name': 'signer', team: 'release' });
    expect(secret.metadata.annotations).toMatchObject({ 'example.com/owner': 'platform' });
    expect(secret.metadata.ownerReferences).toEqual([expect.objectContaining({ kind: 'ServiceUser', name: 'signer', uid: su.metadata.uid, controller: true })]);
    expect(statusOf(su).tokens).toEqual([expect.objectContaining({ id, sha256: tokenSha256(token), state: 'Active' })]);
    expect(JSON.stringify(su)).not.toContain(token);
    expect(condition(su, 'Ready')).toMatchObject({ status: 'True' });
    expect(su.metadata.finalizers).toContain('serviceusers.dev/revoke');
    expect((su.status as { observedGeneration?: number }).observedGeneration).toBe(su.metadata.generation);
    expect(await valid('signer', token)).toBe(true);
    // CredentialsIssued when the certificate came with it (the CA loaded), else TokenIssued.
    const events = await eventually('the event announcing the token', async () => {
      const list = await k().events('signer');
      return list.some((e) => (e.reason === 'TokenIssued' || e.reason === 'CredentialsIssued') && e.message.includes(id)) ? list : undefined;
    });
    expect(JSON.stringify(events)).not.toContain(token);
  });

  it('writes the digicert-smctl layout into the named Secret', async () => {
    await k().createServiceUser('smctl', { ...base, credentials: { profile: 'digicert-smctl', secretName: 'smctl-env' } });
    await k().waitFor('smctl', 'smctl Active', (o) => statusOf(o).phase === 'Active');
    const data = decodeSecret((await k().secret('smctl-env'))!);
    expect(Object.keys(data).sort()).toEqual(['SM_API_KEY', 'SM_CLIENT_CERT_PASSWORD', 'ca.crt', 'client.p12', 'identity', 'tls.crt', 'tls.key']);
    expect(parseToken(data.SM_API_KEY!).ok).toBe(true);
    seenTokens.add(data.SM_API_KEY!);
  });
});

describe('end dates', () => {
  it('at the end date: Expired, Secret wiped, Warning event, within a second', async () => {
    const end = new Date(Date.now() + 4000);
    const endDate = end.toISOString();
    await k().createServiceUser('short-lived', { ...base, endDate });
    const { token } = await activeToken('short-lived');
    const revokedBefore = await revokedTotal('Expired');
    let wipedAt = 0;
    await eventually(
      'the token to be wiped from the Secret',
      async () => {
        const s = await k().secret('short-lived-credentials');
        if (s && !decodeSecret(s).token) return (wipedAt = Date.now());
        return undefined;
      },
      15_000,
    );
    const lag = wipedAt - end.getTime();
    expect(lag).toBeGreaterThanOrEqual(0);
    expect(lag).toBeLessThan(1000);
    const su = await k().waitFor('short-lived', 'phase Expired', (o) => statusOf(o).phase === 'Expired');
    expect(statusOf(su).tokens).toEqual([expect.objectContaining({ state: 'Revoked', reason: 'Expired' })]);
    expect(condition(su, 'Expired')).toMatchObject({ status: 'True' });
    expect(await valid('short-lived', token)).toBe(false);
    const events = await eventually('Expired event', async () => {
      const list = await k().events('short-lived');
      return list.some((e) => e.reason === 'Expired' && e.type === 'Warning') ? list : undefined;
    });
    // One event tells the expiry and names the token; the metric still counts the revocation.
    expect(events.find((e) => e.reason === 'Expired')!.message).toContain(`(token ${statusOf(su).tokens![0]!.id})`);
    expect(events.some((e) => e.reason === 'TokenRevoked')).toBe(false);
    expect(await revokedTotal('Expired')).toBe(revokedBefore + 1);
  });

  it('extending after expiry issues a new token; the old one stays revoked', async () => {
    const endDate = new Date(Date.now() + 1500).toISOString();
    await k().createServiceUser('extended', { ...base, endDate });
    const first = await activeToken('extended');
    await k().waitFor('extended', 'phase Expired', (o) => statusOf(o).phase === 'Expired');
    await k().patchServiceUser('extended', { endDate: '2099-01-01' });
    const second = await eventually('a new token', async () => {
      const t = await activeToken('extended');
      return t.token !== first.token ? t : undefined;
    });
    expect(await valid('extended', first.token)).toBe(false);
    expect(await valid('extended', second.token)).toBe(true);
  });

  it('warns expiryWarning ahead: ExpiringSoon condition and a Warning event', async () => {
    await k().createServiceUser('ending', { ...base, endDate: new Date(Date.now() + 86_400_000).toISOString(), expiryWarning: '48h' });
    const su = await k().waitFor('ending', 'ExpiringSoon', (o) => condition(o, 'ExpiringSoon')?.status === 'True');
    expect(statusOf(su).phase).toBe('Active');
    await eventually('ExpiringSoon event', async () => ((await k().events('ending')).some((e) => e.reason === 'ExpiringSoon' && e.type === 'Warning') ? true : undefined));
  });

  it('extending before expiry keeps the token', async () => {
    await k().createServiceUser('kept', { ...base, endDate: '2098-01-01' });
    const first = await activeToken('kept');
    await k().patchServiceUser('kept', { endDate: '2099-01-01' });
    await k().waitFor('kept', 'the new end date', (o) => (o.status as { expiresAt?: string }).expiresAt === '2099-01-01T23:59:59Z');
    expect((await activeToken('kept')).token).toBe(first.token);
  });
});

describe('rotation, revocation, suspension', () => {
  it('rotates; the old token is valid for the grace period, then revoked', async () => {
    await k().createServiceUser('rotating', { ...base, credentials: { token: { rotateEvery: '1h', gracePeriod: '30m' } } });
    const first = await activeToken('rotating');
    running.clock.offsetMs += 3_600_000 + 1000;
    running.operator.controllers.serviceUsers.enqueue(`${ns.name}/rotating`);
    const second = await eventually('the rotated token', async () => {
      const t = await activeToken('rotating');
      return t.token !== first.token ? t : undefined;
    });
    const su = await k().waitFor('rotating', 'both recorded', (o) => (statusOf(o).tokens ?? []).length === 2);
    expect(statusOf(su).tokens!.find((t) => t.id === first.id)).toMatchObject({ state: 'Grace', validUntil: expect.any(String) });
    expect(await valid('rotating', first.token)).toBe(true);
    expect(await valid('rotating', second.token)).toBe(true);
    running.clock.offsetMs += 31 * 60_000;
    running.operator.controllers.serviceUsers.enqueue(`${ns.name}/rotating`);
    await k().waitFor('rotating', 'the grace period to end', (o) => statusOf(o).tokens!.find((t) => t.id === first.id)?.state === 'Revoked');
    expect(await valid('rotating', first.token)).toBe(false);
    expect(await valid('rotating', second.token)).toBe(true);
  });

  it('revokedTokenIds revokes that token and issues another', async () => {
    await k().createServiceUser('revoking', base);
    const first = await activeToken('revoking');
    await k().patchServiceUser('revoking', { credentials: { token: { revokedTokenIds: [first.id] } } });
    const second = await eventually('a replacement', async () => {
      const t = await activeToken('revoking');
      return t.token !== first.token ? t : undefined;
    });
    const su = await k().serviceUser('revoking');
    expect(statusOf(su).tokens!.find((t) => t.id === first.id)).toMatchObject({ state: 'Revoked', reason: 'RevokedBySpec' });
    expect(await valid('revoking', first.token)).toBe(false);
    expect(await valid('revoking', second.token)).toBe(true);
  });

  it('disabled suspends without destroying; enabled restores', async () => {
    await k().createServiceUser('pausable', base);
    const { token } = await activeToken('pausable');
    await k().patchServiceUser('pausable', { disabled: true });
    await k().waitFor('pausable', 'phase Disabled', (o) => statusOf(o).phase === 'Disabled');
    expect(decodeSecret((await k().secret('pausable-credentials'))!).token).toBe(token);
    expect(await valid('pausable', token)).toBe(false);
    await k().patchServiceUser('pausable', { disabled: false });
    await k().waitFor('pausable', 'phase Active', (o) => statusOf(o).phase === 'Active');
    expect(await valid('pausable', token)).toBe(true);
  });
});

describe('repair', () => {
  it('a deleted Secret: a new token, the old one revoked', async () => {
    await k().createServiceUser('lost-secret', base);
    const first = await activeToken('lost-secret');
    await running.client.request('DELETE', resourcePath(resources.secrets, ns.name, 'lost-secret-credentials'));
    const second = await eventually('a new token', async () => {
      const t = await activeToken('lost-secret');
      return t.token !== first.token ? t : undefined;
    });
    const su = await k().serviceUser('lost-secret');
    expect(statusOf(su).tokens!.find((t) => t.id === first.id)).toMatchObject({ state: 'Revoked', reason: 'SecretDeleted' });
    expect(await valid('lost-secret', second.token)).toBe(true);
  });

  it('an edited Secret: the planted token is never valid; repaired with a new one', async () => {
    await k().createServiceUser('edited', base);
    const first = await activeToken('edited');
    const planted = `suo_${'a'.repeat(16)}_${'B'.repeat(43)}xxxxxx`;
    await running.client.mergePatch(resourcePath(resources.secrets, ns.name, 'edited-credentials'), { data: { token: Buffer.from(planted).toString('base64') } });
    const repaired = await eventually('the repair', async () => {
      const t = await activeToken('edited');
      return t.token !== first.token && t.token !== planted ? t : undefined;
    });
    expect(await valid('edited', planted)).toBe(false);
    expect(await valid('edited', first.token)).toBe(false);
    expect(await valid('edited', repaired.token)).toBe(true);
  });

  it('an edited non-secret key is put back, the token kept', async () => {
    await k().createServiceUser('relabelled', base);
    const first = await activeToken('relabelled');
    await running.client.mergePatch(resourcePath(resources.secrets, ns.name, 'relabelled-credentials'), { data: { identity: Buffer.from('someone-else').toString('base64') } });
    await eventually('identity restored', async () => {
      const data = decodeSecret((await k().secret('relabelled-credentials'))!);
      return data.identity === `serviceuser:${ns.name}:relabelled` ? true : undefined;
    });
    expect((await activeToken('relabelled')).token).toBe(first.token);
  });

  it('a lost status: rebuilt from the Secret, same token', async () => {
    await k().createServiceUser('amnesia', base);
    const first = await activeToken('amnesia');
    await running.client.mergePatch(resourcePath(resources.serviceUsers, ns.name, 'amnesia', 'status'), { status: null });
    await k().waitFor('amnesia', 'status rebuilt', (o) => statusOf(o).tokens?.[0]?.id === first.id && statusOf(o).phase === 'Active');
    expect((await activeToken('amnesia')).token).toBe(first.token);
    expect(await valid('amnesia', first.token)).toBe(true);
  });

  it('deletion revokes before the Secret goes', async () => {
    await k().createServiceUser('doomed', base);
    await activeToken('doomed');
    await running.client.request('DELETE', resourcePath(resources.serviceUsers, ns.name, 'doomed'));
    await eventually('the ServiceUser to be gone', () => k().serviceUser('doomed').then(() => undefined, () => true));
    // Garbage collection removes the Secret later; until then it holds no credential.
    const secret = await k().secret('doomed-credentials');
    if (secret) expect(Object.keys(decodeSecret(secret)).sort()).toEqual(['identity']);
    const events = await k().events('doomed');
    expect(events.some((e) => e.reason === 'TokenRevoked' && e.message.includes('deleted'))).toBe(true);
  });
});

describe('friendly names and roles', () => {
  it('the second ServiceUser with a friendly name is Stalled, naming the first', async () => {
    await k().createServiceUser('first-deployer', { ...base, friendlyName: 'Deployer' });
    await k().waitFor('first-deployer', 'Active', (o) => statusOf(o).phase === 'Active');
    await k().createServiceUser('second-deployer', { ...base, friendlyName: 'Deployer' });
    const su = await k().waitFor('second-deployer', 'Stalled', (o) => condition(o, 'Stalled')?.status === 'True');
    expect(condition(su, 'Stalled')).toMatchObject({ reason: 'FriendlyNameConflict', message: expect.stringContaining('first-deployer') });
    expect(await k().secret('second-deployer-credentials')).toBeUndefined();
  });

  describe('RoleBindings', () => {
    const suffix = randomBytes(3).toString('hex');
    const signer = `test-${suffix}.signer`;
    const admin = `test-${suffix}.admin`;
    const createRole = (name: string, permissions: string[], assignableToServiceUsers = true) =>
      running.client.request('POST', resourcePath(resources.roles), {
        apiVersion: 'serviceusers.dev/v1alpha1',
        kind: 'Role',
        metadata: { name },
        spec: { displayName: name, manager: 'software-trust-manager', permissions, assignableToServiceUsers },
      });
    const bind = (name: string, spec: Record<string, unknown>) =>
      running.client.request('POST', resourcePath(resources.roleBindings, ns.name), { apiVersion: 'serviceusers.dev/v1alpha1', kind: 'RoleBinding', metadata: { name }, spec });
    const binding = (name: string) => running.client.get(resourcePath(resources.roleBindings, ns.name, name));
    const bindingReady = (name: string, status: string) =>
      eventually(`${name} Ready=${status}`, async () => {
        const b = await binding(name);
        return condition(b, 'Ready')?.status === status ? b : undefined;
      });
    afterAll(async () => {
      for (const r of [signer, admin]) await running.client.request('DELETE', resourcePath(resources.roles, undefined, r)).catch(() => undefined);
    });

    it('grant permissions per account into the ServiceUser status', async () => {
      await createRole(signer, ['signatures:sign', 'keypairs:view']);
      await k().createServiceUser('bound', base);
      await bind('bound-signs-prod', { roleRef: { kind: 'Role', name: signer }, subjects: [{ kind: 'ServiceUser', name: 'bound' }], accounts: ['acme-prod'] });
      const su = await k().waitFor('bound', 'permissions', (o) => (statusOf(o).permissions ?? []).length === 2);
      expect(statusOf(su).permissions).toEqual([
        { account: 'acme-prod', manager: 'software-trust-manager', permission: 'keypairs:view', roles: [signer] },
        { account: 'acme-prod', manager: 'software-trust-manager', permission: 'signatures:sign', roles: [signer] },
      ]);
      expect(condition(await bindingReady('bound-signs-prod', 'True'), 'Ready')!.message).toContain('bound');
      const role = await eventually('the Role status', async () => {
        const r = await running.client.get(resourcePath(resources.roles, undefined, signer));
        return (r.status as { permissionCount?: number } | undefined)?.permissionCount ? r : undefined;
      });
      expect((role.status as { permissionCount: number }).permissionCount).toBe(2);
    });

    it('refuse, with a condition and an event, what breaks a rule', async () => {
      await createRole(admin, ['accounts:manage'], false);
      await k().createServiceUser('narrow', { ...base, accounts: ['acme-dev'] });
      await bind('to-nobody', { roleRef: { name: signer }, subjects: [{ kind: 'ServiceUser', name: 'ghost' }] });
      await bind('to-admin', { roleRef: { name: admin }, subjects: [{ kind: 'ServiceUser', name: 'narrow' }] });
      await bind('elsewhere', { roleRef: { name: signer }, subjects: [{ kind: 'ServiceUser', name: 'narrow', namespace: 'other' }] });
      await bind('too-wide', { roleRef: { name: signer }, subjects: [{ kind: 'ServiceUser', name: 'narrow' }], accounts: ['acme-prod'] });
      await bind('no-role', { roleRef: { name: `test-${suffix}.missing` }, subjects: [{ kind: 'ServiceUser', name: 'narrow' }] });
      const expected: Record<string, string> = {
        'to-nobody': 'SubjectNotFound',
        'to-admin': 'RoleNotAssignable',
        elsewhere: 'SubjectInOtherNamespace',
        'too-wide': 'AccountsOutsideSubject',
        'no-role': 'RoleNotFound',
      };
      for (const [name, reason] of Object.entries(expected)) {
        const b = await bindingReady(name, 'False');
        expect(condition(b, 'Ready')!.reason).toBe(reason);
        await eventually(`${name} ${reason} event`, async () => ((await k().events(name)).some((e) => e.reason === reason && e.type === 'Warning') ? true : undefined));
      }
      const su = await k().waitFor('narrow', 'Active', (o) => statusOf(o).phase === 'Active');
      expect(statusOf(su).permissions).toEqual([]);
    });
  });
});

afterAll(() => {
  // Nothing secret in the operator's log.
  const log = running.logs.join('');
  expect(log.length).toBeGreaterThan(0);
  for (const token of seenTokens) expect(log).not.toContain(token);
  expect(findSecrets(log)).toEqual([]);
});
