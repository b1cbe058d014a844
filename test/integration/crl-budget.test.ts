// A ServiceUser over its CRL budget (issue 22 item 4), on the real API server: a user deleted
// and re-created in a loop leaves a serial on the CRL each time, under the same
// namespace/name; past --crl-owner-budget its renewal requests are slowed to one an hour —
// said by the RequestsThrottled condition and a Warning event — and still acted on, never
// refused. The operator runs with a budget of 1 and its clock under the test's control.
import { describe, expect, it } from 'vitest';
import { resourcePath } from '../../src/controller/kube.ts';
import { resources } from '../../src/api/resources.ts';
import { eventually, useNamespace } from '../kube.ts';
import { api, useAccounts, useOperator, statusOf } from '../operator.ts';

const ns = useNamespace('crl-budget');
const running = useOperator(ns, { crlOwnerBudget: 1 });
useAccounts(['acme']);
const k = () => api(running.client, ns.name);
const throttled = (o: { status?: unknown }) => statusOf(o).conditions?.find((c) => c.type === 'RequestsThrottled');
const active = (o: { status?: unknown }) => statusOf(o).phase === 'Active' && !!statusOf(o).certificate;

describe('over the CRL budget', () => {
  it('a user re-created in a loop has its renewal requests slowed to one an hour, said so, and still acted on', { timeout: 180_000 }, async () => {
    const path = resourcePath(resources.serviceUsers, ns.name, 'looper');
    for (let round = 0; round < 2; round++) {
      await k().createServiceUser('looper', { email: 'ops@example.com', accounts: ['acme'] });
      await k().waitFor('looper', 'Active with a certificate', active, 30_000);
      await running.client.request('DELETE', path);
      await eventually('deleted (its certificate revoked)', () => k().serviceUser('looper').then(() => undefined, () => true), 30_000);
      // The garbage collector removes the Secret the deleted user owned; a user of the same
      // name created before that would find the name taken (SecretNotOwned).
      await eventually('its Secret collected', async () => ((await k().secret('looper-credentials')) ? undefined : true), 60_000);
    }
    expect(running.operator.authority.ledger.listedFor(`${ns.name}/looper`)).toBe(2);
    await k().createServiceUser('looper', { email: 'ops@example.com', accounts: ['acme'] });
    const before = await k().waitFor('looper', 'Active with a certificate', active, 30_000);

    await k().patchServiceUser('looper', { credentials: { clientCertificate: { renewalRequest: 'after-the-loop' } } });
    const waiting = await k().waitFor('looper', 'the request waiting', (o) => throttled(o)?.reason === 'CrlBudgetExceeded', 30_000);
    expect(throttled(waiting)!.message).toContain('renewalRequest "after-the-loop" is acted on at');
    expect(throttled(waiting)!.message).toContain('this ServiceUser has 2 serials on the CRL, over the budget of 1 a user: one renewal an hour');
    expect(statusOf(waiting).lastRenewalRequest).toBeUndefined();
    expect(statusOf(waiting).certificate!.serialNumber).toBe(statusOf(before).certificate!.serialNumber);
    const events = await k().events('looper');
    expect(events).toContainEqual(expect.objectContaining({ type: 'Warning', reason: 'RequestThrottled' }));

    // An hour later (the operator's clock), the request is acted on: slowed, not refused.
    running.clock.offsetMs += 61 * 60_000;
    await running.client.mergePatch(path, { metadata: { labels: { poke: '1' } } });
    const renewed = await k().waitFor('looper', 'renewed', (o) => statusOf(o).lastRenewalRequest === 'after-the-loop', 30_000);
    expect(statusOf(renewed).certificate!.serialNumber).not.toBe(statusOf(before).certificate!.serialNumber);
    expect(throttled(renewed)).toBeUndefined();
    expect(await running.operator.authority.ledger.isRevoked(statusOf(before).certificate!.serialNumber)).toBe(true);
  });
});
