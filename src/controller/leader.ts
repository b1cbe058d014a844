// Leader election on a coordination.k8s.io/v1 Lease, with client-go's timings and rules:
// a 15 s lease, renewed every 2 s, given up when not renewed within 10 s; another holder's
// lease counts as expired by local time since we last saw it change (clocks of different
// machines are never compared); writes use optimistic concurrency, so two candidates
// cannot both win. Only the leader reconciles; every replica serves verification.
//
// Bounded, as client-go bounds it: every attempt (its GET and PUT) is aborted at the renew
// deadline, counted from the start of the last successful renewal — the moment the renewal
// we got through could have been written at the earliest — so a stalled API server cannot
// hold a leader past renewDeadline, which is shorter than leaseDuration: it has stopped
// (onStoppedLeading; the process exits) before any other replica can take the Lease, since
// one takes it only leaseDuration after it saw that renewal.
import { isConflict, isNotFound, type KubeClient } from './kube.ts';
import type { Logger } from '../observability/logger.ts';
import { parseDuration } from '../api/duration.ts';

/** client-go's and controller-runtime's defaults. */
export const defaultLeaderTimings = { leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000 } as const;

export interface LeaderTimings {
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
}

/**
 * The three timing flags (Go durations, as controller-runtime's --leader-election-lease-duration
 * and friends), judged together: each a positive duration, the lease in whole seconds (the Lease
 * records seconds), and client-go's two orderings, without which a leader could still act after
 * another has taken over. Parsed once, at the edge; the message names the flag to change.
 */
export function parseLeaderTimings(raw: { leaseDuration: string; renewDeadline: string; retryPeriod: string }): { ok: true; timings: LeaderTimings } | { ok: false; message: string } {
  const positive = (key: keyof typeof raw) => {
    const ms = parseDuration(raw[key]);
    return ms !== undefined && ms > 0 ? ms : undefined;
  };
  const [leaseDurationMs, renewDeadlineMs, retryPeriodMs] = [positive('leaseDuration'), positive('renewDeadline'), positive('retryPeriod')];
  if (leaseDurationMs === undefined || renewDeadlineMs === undefined || retryPeriodMs === undefined) {
    // The first of them that is not a positive duration, named by its flag.
    const key = leaseDurationMs === undefined ? 'leaseDuration' : renewDeadlineMs === undefined ? 'renewDeadline' : 'retryPeriod';
    const flag = `--leader-election-${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
    return { ok: false, message: `${flag} must be a positive duration such as 15s or 1m30s, got "${raw[key]}"` };
  }
  const timings = { leaseDurationMs, renewDeadlineMs, retryPeriodMs };
  if (timings.leaseDurationMs % 1000 !== 0) return { ok: false, message: `--leader-election-lease-duration must be whole seconds (the Lease records seconds), got "${raw.leaseDuration}"` };
  if (!(timings.leaseDurationMs > timings.renewDeadlineMs)) return { ok: false, message: `--leader-election-lease-duration (${raw.leaseDuration}) must be longer than --leader-election-renew-deadline (${raw.renewDeadline}): a leader must stop before another may take the Lease` };
  if (!(timings.renewDeadlineMs > 1.2 * timings.retryPeriodMs)) return { ok: false, message: `--leader-election-renew-deadline (${raw.renewDeadline}) must be longer than 1.2 × --leader-election-retry-period (${raw.retryPeriod}): a leader needs a retry (with jitter) before its deadline` };
  return { ok: true, timings };
}

export interface LeaderElectionOptions {
  client: KubeClient;
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  log: Logger;
  onStartedLeading: () => void;
  /** Called once when leadership is lost; the process should exit (client-go does). */
  onStoppedLeading: () => void;
}

interface Lease {
  metadata: { name: string; namespace: string; resourceVersion?: string };
  spec: {
    holderIdentity?: string;
    leaseDurationSeconds?: number;
    acquireTime?: string;
    renewTime?: string;
    leaseTransitions?: number;
  };
}

const microTime = (ms: number) => new Date(ms).toISOString().replace('Z', '000Z');

export class LeaderElector {
  private readonly o: Required<Omit<LeaderElectionOptions, 'log' | 'onStartedLeading' | 'onStoppedLeading' | 'client'>> & LeaderElectionOptions;
  private observed: { resourceVersion: string | undefined; at: number } = { resourceVersion: undefined, at: 0 };
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  /** The round of tick() in flight, if any. */
  private round: Promise<void> | undefined;
  /** A write naming this replica the holder succeeded: it may hold the Lease. */
  private wrote = false;
  leading = false;

  constructor(options: LeaderElectionOptions) {
    this.o = { ...defaultLeaderTimings, ...options };
    // client-go's own checks: without them a leader could still act once another has taken over.
    if (!(this.o.leaseDurationMs > this.o.renewDeadlineMs)) throw new Error(`leader election: leaseDuration (${this.o.leaseDurationMs} ms) must be greater than renewDeadline (${this.o.renewDeadlineMs} ms)`);
    if (!(this.o.renewDeadlineMs > 1.2 * this.o.retryPeriodMs)) throw new Error(`leader election: renewDeadline (${this.o.renewDeadlineMs} ms) must be greater than 1.2 × retryPeriod (${this.o.retryPeriodMs} ms)`);
  }

  private get path(): string {
    return `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(this.o.namespace)}/leases/${encodeURIComponent(this.o.name)}`;
  }

  start(): void {
    this.schedule(0);
  }

  private schedule(delay: number): void {
    this.timer = setTimeout(() => {
      this.round = this.tick().finally(() => (this.round = undefined));
    }, delay);
  }

  /**
   * Stops campaigning and, if this replica holds the Lease, releases it (client-go's
   * ReleaseOnCancel): holderIdentity cleared and a 1 s duration, so a follower takes over on
   * its next retry instead of waiting the lease out. Call it once this replica has stopped
   * reconciling: until then it keeps renewing, so no one else leads while it still acts.
   * The release is a PUT of the Lease as read, guarded by its resourceVersion: it only ever
   * clears this replica's own holding, never one another has taken in between.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    // A round in flight lands first, so the release reads what it wrote.
    await this.round;
    const held = this.leading || this.wrote;
    this.leading = false;
    if (!held) return;
    // Bounded too: a stalled API server must not hold the shutdown.
    const signal = AbortSignal.timeout(this.o.renewDeadlineMs);
    try {
      const lease = await this.o.client.get<Lease>(this.path, signal);
      if (lease.spec.holderIdentity !== this.o.identity) return;
      const now = microTime(Date.now());
      await this.o.client.request('PUT', this.path, { ...lease, spec: { ...lease.spec, holderIdentity: '', leaseDurationSeconds: 1, acquireTime: now, renewTime: now } }, undefined, signal);
      this.o.log.info({ identity: this.o.identity, lease: `${this.o.namespace}/${this.o.name}` }, 'released the leader lease');
    } catch (err) {
      // A conflict means the Lease changed since it was read: not ours to clear any more.
      this.o.log.warn({ err: err instanceof Error ? err.message : String(err) }, 'could not release the leader lease; the next leader takes it when it expires');
    }
  }

  /** When the last successful renewal started (local clock). */
  private lastRenewal = 0;
  /** When another holder's lease runs out by our observation, if one holds it. */
  private othersExpire: number | undefined;

  private lose(): void {
    this.leading = false;
    this.stopped = true;
    this.o.log.error({ identity: this.o.identity, renewDeadlineMs: this.o.renewDeadlineMs }, 'lost leadership (lease not renewed within the deadline)');
    this.o.onStoppedLeading();
  }

  private async tick(): Promise<void> {
    if (this.stopped) return;
    const started = Date.now();
    if (this.leading && started >= this.lastRenewal + this.o.renewDeadlineMs) return this.lose();
    // The attempt ends by the deadline whatever the network does: a leader's is the renew
    // deadline; a candidate's, renewDeadline from now.
    const deadline = this.leading ? this.lastRenewal + this.o.renewDeadlineMs : started + this.o.renewDeadlineMs;
    const attempt = new AbortController();
    const timer = setTimeout(() => attempt.abort(new Error(`no answer within the renew deadline (${this.o.renewDeadlineMs} ms)`)), deadline - started);
    let ok = false;
    try {
      ok = await this.tryAcquireOrRenew(started, attempt.signal);
    } catch (err) {
      this.o.log.warn({ err: err instanceof Error ? err.message : String(err) }, 'leader election: lease request failed');
    } finally {
      clearTimeout(timer);
    }
    if (this.stopped) return;
    const now = Date.now();
    if (ok && !attempt.signal.aborted) {
      this.lastRenewal = started;
      if (!this.leading) {
        this.leading = true;
        this.o.log.info({ identity: this.o.identity, lease: `${this.o.namespace}/${this.o.name}` }, 'became the leader');
        this.o.onStartedLeading();
      }
    } else if (this.leading && now >= this.lastRenewal + this.o.renewDeadlineMs) {
      return this.lose();
    }
    // Jitter the candidates' retries (client-go's JitterFactor 1.2 on the retry period), and
    // try again right when another's lease runs out rather than up to a period later; a
    // leader that failed retries no later than its deadline, where it gives up.
    const delay = this.leading
      ? Math.min(this.o.retryPeriodMs, Math.max(0, this.lastRenewal + this.o.renewDeadlineMs - now))
      : Math.min(this.o.retryPeriodMs * (1 + Math.random() * 0.2), Math.max(0, (this.othersExpire ?? Infinity) - now + 10));
    this.schedule(delay);
  }

  /** One round: take the lease if free or expired, renew it if ours. */
  private async tryAcquireOrRenew(now: number, signal: AbortSignal): Promise<boolean> {
    let lease: Lease | undefined;
    try {
      lease = await this.o.client.get<Lease>(this.path, signal);
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    // A change is seen when its answer arrives, not when we asked: counting from the ask
    // would let a slow GET make another's lease look older than it is.
    const seenAt = Date.now();
    const spec = {
      holderIdentity: this.o.identity,
      leaseDurationSeconds: Math.round(this.o.leaseDurationMs / 1000),
      renewTime: microTime(now),
    };
    if (!lease) {
      try {
        await this.o.client.request('POST', this.path.replace(/\/[^/]+$/, ''), {
          apiVersion: 'coordination.k8s.io/v1',
          kind: 'Lease',
          metadata: { name: this.o.name, namespace: this.o.namespace },
          spec: { ...spec, acquireTime: microTime(now), leaseTransitions: 0 },
        }, undefined, signal);
        this.wrote = true;
        return true;
      } catch (err) {
        if (isConflict(err)) return false;
        throw err;
      }
    }
    if (lease.metadata.resourceVersion !== this.observed.resourceVersion) this.observed = { resourceVersion: lease.metadata.resourceVersion, at: seenAt };
    const holder = lease.spec.holderIdentity ?? '';
    const mine = holder === this.o.identity;
    const duration = (lease.spec.leaseDurationSeconds ?? 15) * 1000;
    this.othersExpire = !mine && holder ? this.observed.at + duration : undefined;
    if (!mine && holder && seenAt < this.observed.at + duration) return false;
    try {
      await this.o.client.request('PUT', this.path, {
        ...lease,
        spec: {
          ...lease.spec,
          ...spec,
          ...(mine ? {} : { acquireTime: microTime(now), leaseTransitions: (lease.spec.leaseTransitions ?? 0) + 1 }),
        },
      }, undefined, signal);
      this.wrote = true;
      return true;
    } catch (err) {
      if (isConflict(err)) return false;
      throw err;
    }
  }
}
