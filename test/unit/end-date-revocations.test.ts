// Certificates revoked at their end date by their own timer, whatever the reconcile backlog:
// all of those due together reach the ledger in the same turn (one batch there), never
// before the end date, and not when the cache says the end date has moved.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { EndDateRevocations } from '../../src/serviceuser/end-date-revocations.ts';
import { createLogger } from '../../src/observability/logger.ts';

const cert = (serialNumber: string) => ({ serialNumber, notAfter: '2030-01-01T00:00:00.000Z' });

function harness(due: (owner: string) => boolean = () => true) {
  const calls: { owner: string; serial: string; at: number; turn: number }[] = [];
  let turn = 0;
  const tick = setInterval(() => turn++, 1);
  const revocations = new EndDateRevocations({
    revoke: async (owner, entries) => {
      for (const e of entries) calls.push({ owner, serial: e.serialNumber, at: Date.now(), turn });
      expect(entries.every((e) => e.reason === 'cessationOfOperation')).toBe(true);
    },
    stillDue: (owner) => due(owner),
    log: createLogger('silent'),
  });
  return { calls, revocations, done: () => (clearInterval(tick), revocations.stop()) };
}

describe('EndDateRevocations', () => {
  // The clock is the test's: timers fire when it advances, whatever the machine's load.
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('revokes every certificate due at the same instant in one turn, none before its end date', async () => {
    const { calls, revocations, done } = harness();
    const end = Date.now() + 150;
    for (let i = 0; i < 500; i++) revocations.track(`ns/su-${i}`, end, cert((i + 1).toString(16)));
    revocations.track('ns/later', end + 10_000, cert('ff'));
    expect(revocations.size).toBe(501);
    await vi.advanceTimersByTimeAsync(400);
    expect(calls).toHaveLength(500);
    expect(calls.every((c) => c.at >= end)).toBe(true);
    // Timers armed a millisecond apart may fire a millisecond apart: a turn or two, not 500.
    expect(new Set(calls.map((c) => c.turn)).size).toBeLessThanOrEqual(3);
    expect(revocations.size).toBe(1);
    done();
  });

  it('follows the last call: a renewed serial, a moved end date, no certificate, forgotten', async () => {
    const { calls, revocations, done } = harness();
    const end = Date.now() + 100;
    revocations.track('ns/renewed', end, cert('01'));
    revocations.track('ns/renewed', end, cert('02'));
    revocations.track('ns/extended', end, cert('03'));
    revocations.track('ns/extended', end + 60_000, cert('03'));
    revocations.track('ns/none', end, cert('04'));
    revocations.track('ns/none', end, undefined);
    revocations.track('ns/no-end', end, cert('05'));
    revocations.track('ns/no-end', undefined, cert('05'));
    revocations.track('ns/deleted', end, cert('06'));
    revocations.forget('ns/deleted');
    await vi.advanceTimersByTimeAsync(300);
    expect(calls.map((c) => `${c.owner} ${c.serial}`)).toEqual(['ns/renewed 02']);
    done();
  });

  it('asks the cache at the end date: an end date moved since the last reconcile revokes nothing', async () => {
    const { calls, revocations, done } = harness((owner) => owner !== 'ns/extended');
    const end = Date.now() + 50;
    revocations.track('ns/extended', end, cert('0a'));
    revocations.track('ns/due', end, cert('0b'));
    await vi.advanceTimersByTimeAsync(250);
    expect(calls.map((c) => c.owner)).toEqual(['ns/due']);
    done();
  });

  it('a failed revocation is logged, not thrown (the reconcile revokes again), and stop clears the timers', async () => {
    const warnings: string[] = [];
    const log = createLogger('silent');
    log.warn = ((_: object, msg: string) => void warnings.push(msg)) as typeof log.warn;
    const revocations = new EndDateRevocations({ revoke: () => Promise.reject(new Error('API down')), stillDue: () => true, log });
    revocations.track('ns/a', Date.now() + 20, cert('0c'));
    await vi.advanceTimersByTimeAsync(150);
    expect(warnings).toEqual(['could not revoke the certificate at the end date; its reconcile will']);
    revocations.track('ns/b', Date.now() + 20, cert('0d'));
    revocations.stop();
    expect(revocations.size).toBe(0);
    revocations.track('ns/c', Date.now() + 20, cert('0e'));
    expect(revocations.size).toBe(0);
  });
});
