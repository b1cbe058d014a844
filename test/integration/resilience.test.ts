// Faults the operator must survive: SIGKILL at random moments of a rollout, concurrent edits
// of the same objects, and deletion in the middle of a rotation.
import { once } from 'node:events';
import { afterAll, describe, expect, it } from 'vitest';
import { serviceUser } from '../../src/api/serviceuser.ts';
import { KubeClient, isConflict, resourcePath, type KubeObject } from '../../src/controller/kube.ts';
import { resources } from '../../src/api/resources.ts';
import { tokenSha256 } from '../../src/credentials/token.ts';
import { verifyToken } from '../../src/verify/verdict.ts';
import { eventually, kubeConfig, useNamespace } from '../kube.ts';
import { api, decodeSecret, useOperator, useOperatorProcesses } from '../operator.ts';

describe('SIGKILL during a rollout', () => {
  const ns = useNamespace('chaos');
  const client = new KubeClient(kubeConfig());
  const k = api(client, ns.name);
  const processes = useOperatorProcesses(ns);
  afterAll(() => client.close());
  const start = () => processes.start(['--metrics-bind-address', '0', '--health-probe-bind-address', '0', '--verify-bind-address', '0', '--concurrency', '8']);

  it('leaves every ServiceUser Ready, each Secret\'s token recorded, no orphan Secret, no unlisted valid token', { timeout: 240_000 }, async () => {
    const count = 300;
    let operator = start();
    const creating = (async () => {
      for (let i = 0; i < count; i += 25) {
        await Promise.all(Array.from({ length: 25 }, (_, j) => k.createServiceUser(`su-${i + j}`, { email: 'ops@example.com', accounts: ['acme'], credentials: { clientCertificate: { pkcs12: false } } })));
      }
    })();
    for (let kill = 0; kill < 5; kill++) {
      await new Promise((r) => setTimeout(r, 300 + Math.random() * 1500));
      operator.kill('SIGKILL');
      await once(operator, 'exit');
      operator = start();
    }
    await creating;

    const list = async () => (await client.get<{ items: KubeObject[] }>(resourcePath(resources.serviceUsers, ns.name))).items;
    await eventually('every ServiceUser Active', async () => {
      const items = await list();
      return items.length === count && items.every((o) => (o.status as { phase?: string } | undefined)?.phase === 'Active') ? true : undefined;
    }, 180_000);

    const secrets = (await client.get<{ items: KubeObject[] }>(`${resourcePath(resources.secrets, ns.name)}?labelSelector=serviceusers.dev%2Fname`)).items;
    const users = new Map((await list()).map((o) => [o.metadata.name, serviceUser.parse(o)]));
    expect(secrets).toHaveLength(count);
    for (const secret of secrets) {
      const owner = users.get(secret.metadata.labels!['serviceusers.dev/name']!);
      expect(owner, `${secret.metadata.name} has an owner`).toBeDefined();
      expect(secret.metadata.ownerReferences?.[0]?.uid).toBe(owner!.metadata.uid);
      const token = decodeSecret(secret).token!;
      const active = owner!.status!.tokens!.filter((t) => t.state === 'Active');
      expect(active, `${owner!.metadata.name}: exactly one active token`).toHaveLength(1);
      expect(active[0]!.sha256).toBe(tokenSha256(token));
      expect(verifyToken(owner, token, Date.now()).active).toBe(true);
      // Every token status lists as valid is the one in the Secret: nothing valid is unaccounted for.
      const valid = owner!.status!.tokens!.filter((t) => t.state === 'Active' || (t.state === 'Grace' && Date.parse(t.validUntil!) > Date.now()));
      expect(valid.map((t) => t.sha256)).toEqual([tokenSha256(token)]);
    }
    operator.kill('SIGTERM');
    await once(operator, 'exit');
  });
});

describe('concurrent edits and deletion mid-rotation', () => {
  const ns = useNamespace('races');
  const running = useOperator(ns);
  const k = () => api(running.client, ns.name);

  it('concurrent spec edits: no lost update, no duplicated token', async () => {
    await k().createServiceUser('edited', { email: 'ops@example.com', accounts: ['acme'] });
    await k().waitFor('edited', 'Active', (o) => (o.status as { phase?: string } | undefined)?.phase === 'Active');
    // Twenty writers, each adding its own label to the Secret template, optimistic concurrency.
    await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        for (;;) {
          const current = await k().serviceUser('edited');
          const spec = current.spec as { credentials: { secretTemplate?: { labels?: Record<string, string> } } };
          const labels = { ...(spec.credentials.secretTemplate?.labels ?? {}), [`writer-${i}`]: 'yes' };
          try {
            await running.client.request('PUT', resourcePath(resources.serviceUsers, ns.name, 'edited'), {
              ...current,
              spec: { ...(current.spec as object), credentials: { ...spec.credentials, secretTemplate: { ...spec.credentials.secretTemplate, labels } } },
            });
            return;
          } catch (err) {
            if (!isConflict(err)) throw err;
          }
        }
      }),
    );
    const secret = await eventually('all twenty labels on the Secret', async () => {
      const s = await k().secret('edited-credentials');
      return s && Array.from({ length: 20 }, (_, i) => s.metadata.labels?.[`writer-${i}`]).every((v) => v === 'yes') ? s : undefined;
    });
    const su = serviceUser.parse(await k().serviceUser('edited'));
    expect(su.status!.tokens!.filter((t) => t.state === 'Active')).toHaveLength(1);
    expect(su.status!.tokens).toHaveLength(1);
    expect(su.status!.tokens![0]!.sha256).toBe(tokenSha256(decodeSecret(secret).token!));
  });

  it('a ServiceUser deleted while its token is mid-rotation: everything revoked', async () => {
    await k().createServiceUser('rotating', { email: 'ops@example.com', accounts: ['acme'], credentials: { token: { rotateEvery: '1h', gracePeriod: '30m' } } });
    await k().waitFor('rotating', 'Active', (o) => (o.status as { phase?: string } | undefined)?.phase === 'Active');
    const first = decodeSecret((await k().secret('rotating-credentials'))!);
    running.clock.offsetMs += 3_600_000 + 1000;
    running.operator.controllers.serviceUsers.enqueue(`${ns.name}/rotating`);
    const rotated = await k().waitFor('rotating', 'mid-rotation: one in grace', (o) => ((o.status as { tokens?: { state: string }[] }).tokens ?? []).some((t) => t.state === 'Grace'));
    const serial = (rotated.status as { certificate: { serialNumber: string } }).certificate.serialNumber;
    const snapshot = serviceUser.parse(rotated);
    const second = decodeSecret((await k().secret('rotating-credentials'))!);
    expect(verifyToken(snapshot, first.token!, Date.now() + running.clock.offsetMs).active).toBe(true);
    await running.client.request('DELETE', resourcePath(resources.serviceUsers, ns.name, 'rotating'));
    const events = await eventually('the revocation event', async () => {
      const list = await k().events('rotating');
      return list.some((e) => e.reason === 'TokenRevoked' && e.message.includes('deleted')) ? list : undefined;
    });
    const revokedIds = events.find((e) => e.reason === 'TokenRevoked' && e.message.includes('deleted'))!.message;
    expect(revokedIds).toContain(first.token!.split('_')[1]);
    expect(revokedIds).toContain(second.token!.split('_')[1]);
    // The Secret holds no credential any more (or is gone), and the certificate is on the CRL.
    const secret = await k().secret('rotating-credentials');
    if (secret) expect(Object.keys(decodeSecret(secret)).sort()).toEqual(['identity']);
    expect(await running.operator.authority.ledger.isListed(serial)).toBe(true);
    running.clock.offsetMs = 0;
  });
});
