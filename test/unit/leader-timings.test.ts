// The leader election timing flags (--leader-election-lease-duration, -renew-deadline,
// -retry-period): Go durations judged together, with client-go's orderings; a bad value stops
// the start with an error naming the flag.
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseLeaderTimings } from '../../src/controller/leader.ts';
import { unreachableKubeconfig } from '../kube.ts';

describe('parseLeaderTimings', () => {
  it('reads Go durations', () => {
    expect(parseLeaderTimings({ leaseDuration: '1m', renewDeadline: '40s', retryPeriod: '5s' })).toEqual({ ok: true, timings: { leaseDurationMs: 60_000, renewDeadlineMs: 40_000, retryPeriodMs: 5_000 } });
    expect(parseLeaderTimings({ leaseDuration: '15s', renewDeadline: '10s', retryPeriod: '2s' })).toEqual({ ok: true, timings: { leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000 } });
  });

  it.each([
    [{ leaseDuration: '15', renewDeadline: '10s', retryPeriod: '2s' }, '--leader-election-lease-duration must be a positive duration'],
    [{ leaseDuration: '15s', renewDeadline: '0s', retryPeriod: '2s' }, '--leader-election-renew-deadline must be a positive duration'],
    [{ leaseDuration: '15s', renewDeadline: '10s', retryPeriod: '-2s' }, '--leader-election-retry-period must be a positive duration'],
    [{ leaseDuration: '15500ms', renewDeadline: '10s', retryPeriod: '2s' }, '--leader-election-lease-duration must be whole seconds'],
    [{ leaseDuration: '10s', renewDeadline: '10s', retryPeriod: '2s' }, 'must be longer than --leader-election-renew-deadline'],
    [{ leaseDuration: '30s', renewDeadline: '10s', retryPeriod: '9s' }, 'must be longer than 1.2 × --leader-election-retry-period'],
  ])('refuses %o, naming the flag', (raw, message) => {
    const r = parseLeaderTimings(raw);
    expect(r.ok).toBe(false);
    expect(!r.ok && r.message).toContain(message);
  });
});

const dir = mkdtempSync(path.join(tmpdir(), 'leader-timings-'));
// A kubeconfig that loads (nothing is contacted before the flags are judged).
const kubeconfig = unreachableKubeconfig(dir);

// Starts a Node process: slow on a loaded machine, not a timing claim.
describe('the operator process', { timeout: 60_000 }, () => {
  it('refuses timings a leader could outlive, before contacting the API server', () => {
    const main = fileURLToPath(new URL('../../src/main.ts', import.meta.url));
    const r = spawnSync(process.execPath, [main, '--kubeconfig', kubeconfig, '--leader-elect', '--leader-election-lease-duration=10s', '--leader-election-renew-deadline=20s'], { encoding: 'utf8', timeout: 30_000 });
    expect(r.status, r.stdout + r.stderr).toBe(2);
    expect(r.stdout + r.stderr).toContain('--leader-election-lease-duration (10s) must be longer than --leader-election-renew-deadline (20s)');
  });

  it('lists the flags in --help', () => {
    const main = fileURLToPath(new URL('../../src/main.ts', import.meta.url));
    const r = spawnSync(process.execPath, [main, '--help'], { encoding: 'utf8', timeout: 30_000 });
    for (const flag of ['--leader-election-lease-duration', '--leader-election-renew-deadline', '--leader-election-retry-period']) expect(r.stdout).toContain(flag);
  });
});
