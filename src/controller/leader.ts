// Leader election on a coordination.k8s.io/v1 Lease, with client-go's timings and rules:
// a 15 s lease, renewed every 2 s, given up when not renewed within 10 s; another holder's
// lease counts as expired by local time since we last saw it change (clocks of different
// machines are never compared); writes use optimistic concurrency, so two candidates
// cannot both win. Only the leader reconciles; every replica serves verification.
import { isConflict, isNotFound, type KubeClient } from './kube.ts';
import type { Logger } from '../observability/logger.ts';

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
  leading = false;

  constructor(options: LeaderElectionOptions) {
    this.o = { leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000, ...options };
  }

  private get path(): string {
    return `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(this.o.namespace)}/leases/${encodeURIComponent(this.o.name)}`;
  }

  start(): void {
    void this.tick();
  }

  /** Stops campaigning; a leader releases the lease so a follower takes over at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    if (!this.leading) return;
    this.leading = false;
    try {
      const lease = await this.o.client.get<Lease>(this.path);
      if (lease.spec.holderIdentity === this.o.identity) {
        await this.o.client.request('PUT', this.path, { ...lease, spec: { ...lease.spec, holderIdentity: '', leaseDurationSeconds: 1, renewTime: microTime(Date.now()) } });
      }
    } catch (err) {
      this.o.log.warn({ err: String(err) }, 'could not release the leader lease');
    }
  }

  private lastRenewal = 0;

  private async tick(): Promise<void> {
    if (this.stopped) return;
    let ok = false;
    try {
      ok = await this.tryAcquireOrRenew();
    } catch (err) {
      this.o.log.warn({ err: err instanceof Error ? err.message : String(err) }, 'leader election: lease request failed');
    }
    if (this.stopped) return;
    const now = Date.now();
    if (ok) {
      this.lastRenewal = now;
      if (!this.leading) {
        this.leading = true;
        this.o.log.info({ identity: this.o.identity, lease: `${this.o.namespace}/${this.o.name}` }, 'became the leader');
        this.o.onStartedLeading();
      }
    } else if (this.leading && now - this.lastRenewal > this.o.renewDeadlineMs) {
      this.leading = false;
      this.stopped = true;
      this.o.log.error({ identity: this.o.identity }, 'lost leadership (lease not renewed within the deadline)');
      this.o.onStoppedLeading();
      return;
    }
    // Jitter the candidates' retries (client-go's JitterFactor 1.2 on the retry period).
    const delay = this.leading ? this.o.retryPeriodMs : this.o.retryPeriodMs * (1 + Math.random() * 0.2);
    this.timer = setTimeout(() => void this.tick(), delay);
  }

  /** One round: take the lease if free or expired, renew it if ours. */
  private async tryAcquireOrRenew(): Promise<boolean> {
    const now = Date.now();
    let lease: Lease | undefined;
    try {
      lease = await this.o.client.get<Lease>(this.path);
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
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
        });
        return true;
      } catch (err) {
        if (isConflict(err)) return false;
        throw err;
      }
    }
    if (lease.metadata.resourceVersion !== this.observed.resourceVersion) this.observed = { resourceVersion: lease.metadata.resourceVersion, at: now };
    const holder = lease.spec.holderIdentity ?? '';
    const mine = holder === this.o.identity;
    const duration = (lease.spec.leaseDurationSeconds ?? 15) * 1000;
    if (!mine && holder && now < this.observed.at + duration) return false;
    try {
      await this.o.client.request('PUT', this.path, {
        ...lease,
        spec: {
          ...lease.spec,
          ...spec,
          ...(mine ? {} : { acquireTime: microTime(now), leaseTransitions: (lease.spec.leaseTransitions ?? 0) + 1 }),
        },
      });
      return true;
    } catch (err) {
      if (isConflict(err)) return false;
      throw err;
    }
  }
}
