// The manager (controller-runtime's Manager, cut to what this operator runs): it owns the
// caches every controller shares, the gate reconciles wait behind, and the runnables that
// start and stop with it. Each controller declares its own watches beside its reconciler, in
// a `setup(manager, …)` (SetupWithManager); the composition (operator.ts) only calls them.
//
// Invariants:
//   - one informer set per cache the composition asks for, started, awaited and stopped
//     here: a controller reads caches, it never starts one;
//   - no reconcile runs before every cache has synced (a half-filled cache would hide a
//     friendly-name holder or a binding), the Lease is held (with leader election) and
//     every hold placed with `holdReconcilesUntil` has settled; a replica that stopped or
//     lost its Lease reconciles no more, even before its process exits, and the reconciles
//     in flight then see their signal aborted (they start no further write);
//   - `ready` is every cache synced and every runnable ready (a follower is ready too);
//   - stop order: the controllers' queues (in-flight reconciles finish), then the runnables
//     in the reverse of the order they were added, then the Lease is released (held and
//     renewed until nothing is left to write), then the caches, and the API connection last.
import type { Logger } from '../observability/logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import { Controller, type KeyReconcile, type Reconcile } from './controller.ts';
import { Informer, InformerSet, type Cacheable, type InformerOptions } from './informer.ts';
import type { KubeClient, KubeObject, Resource } from './kube.ts';
import { LeaderElector } from './leader.ts';

/** Something that starts with the manager and stops with it. */
export interface Runnable {
  readonly name: string;
  /** Called once by the manager's start, after the caches have started. */
  start?(): void;
  /** Settles when it serves (a rejection is a start that failed for good, reported through `ready`). */
  readonly ready?: Promise<unknown>;
  stop?(): Promise<void> | void;
}

/** Where a cache looks: each watched namespace, every namespace, or one. */
export type CacheScope = { kind: 'watched' } | { kind: 'cluster' } | { kind: 'namespace'; namespace: string };

export interface CacheSpec<T extends Cacheable> extends Pick<InformerOptions<T>, 'labelSelector' | 'transform' | 'indexers'> {
  resource: Resource;
  scope: CacheScope;
  /** Per watched namespace: the field selector that names it (a Namespace cache: RBAC can grant exactly those). */
  fieldSelectorFor?: (namespace: string) => string;
  fieldSelector?: string;
}

export interface LeaderElection {
  identity: string;
  leaseName?: string;
  namespace: string;
  onLost: () => void;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
}

export interface ManagerOptions {
  client: KubeClient;
  log: Logger;
  metrics: Metrics;
  /** Watch only these namespaces; all when empty. */
  namespaces?: string[] | undefined;
  watchTimeoutSeconds?: number | undefined;
  /** Reconcile only while holding this Lease; absent: always. */
  leaderElection?: LeaderElection | undefined;
}

export class Manager {
  readonly client: KubeClient;
  readonly log: Logger;
  readonly metrics: Metrics;
  private readonly options: ManagerOptions;
  private readonly caches: Pick<InformerSet<Cacheable>, 'start' | 'synced' | 'stop'>[] = [];
  private readonly controllers: Controller[] = [];
  private readonly runnables: Runnable[] = [];
  private readonly holds: Promise<unknown>[] = [];
  private elector: LeaderElector | undefined;
  private stopping = false;
  private lostLease = false;
  /** Aborted when this replica stops acting: every reconcile gets its signal. */
  private readonly cancel = new AbortController();
  private started = false;
  private openGate!: () => void;
  private readonly gate = new Promise<void>((resolve) => (this.openGate = resolve));

  constructor(options: ManagerOptions) {
    this.options = options;
    this.client = options.client;
    this.log = options.log;
    this.metrics = options.metrics;
  }

  /** A cache, started with the manager. */
  cache<T extends Cacheable = KubeObject>(spec: CacheSpec<T>): InformerSet<T> {
    const { namespaces, watchTimeoutSeconds } = this.options;
    const where = spec.scope.kind === 'cluster' ? [undefined] : spec.scope.kind === 'namespace' ? [spec.scope.namespace] : namespaces?.length ? namespaces : [undefined];
    const set = new InformerSet<T>(
      where.map((namespace) => {
        const fieldSelector = namespace && spec.fieldSelectorFor ? spec.fieldSelectorFor(namespace) : spec.fieldSelector;
        return new Informer<T>(this.client, {
          resource: spec.resource,
          // A per-namespace field selector names the namespace: the informer itself then watches cluster-wide.
          ...(namespace && !spec.fieldSelectorFor ? { namespace } : {}),
          ...(fieldSelector ? { fieldSelector } : {}),
          ...(spec.labelSelector ? { labelSelector: spec.labelSelector } : {}),
          ...(watchTimeoutSeconds ? { watchTimeoutSeconds } : {}),
          ...(spec.transform ? { transform: spec.transform } : {}),
          ...(spec.indexers ? { indexers: spec.indexers } : {}),
          onError: (err, retryInMs) => this.log.warn({ resource: spec.resource.plural, namespace, err: String(err), retryInMs }, 'list/watch failed; restarting'),
        });
      }),
    );
    this.caches.push(set);
    return set;
  }

  /** A controller whose reconciles wait behind the gate. */
  controller(name: string, reconcile: Reconcile, concurrency: number): Controller {
    const { signal } = this.cancel;
    const gated: KeyReconcile = async (key) => {
      await this.gate;
      if (!this.acting()) return undefined;
      try {
        return (await reconcile(key, signal)) ?? undefined;
      } catch (err) {
        // Cancelled, not failed: no retry is owed by a replica that no longer acts.
        if (signal.aborted) return void this.log.debug({ controller: name, key, reason: String(signal.reason) }, 'reconcile cancelled');
        throw err;
      }
    };
    const c = new Controller(name, gated, { log: this.log, metrics: this.metrics, concurrency });
    this.controllers.push(c);
    return c;
  }

  add<R extends Runnable>(runnable: R): R {
    this.runnables.push(runnable);
    return runnable;
  }

  /** Reconciling also waits for `settled` (e.g. the first attempt to load the CA). */
  holdReconcilesUntil(settled: Promise<unknown>): void {
    this.holds.push(settled.catch(() => undefined));
  }

  /** Neither stopping nor a follower that lost its Lease: what this replica does still counts. */
  acting(): boolean {
    return !this.stopping && !this.lostLease;
  }

  /** Stopping: what has not started yet should not. */
  isStopping(): boolean {
    return this.stopping;
  }

  isLeader(): boolean {
    return !this.options.leaderElection || (this.elector?.leading ?? false);
  }

  /** Starts the caches and the election; resolves once every cache has synced and every runnable is ready. */
  start(): Promise<void> {
    if (this.started) throw new Error('the manager is started once');
    this.started = true;
    for (const c of this.caches) c.start();
    for (const r of this.runnables) r.start?.();
    const leading = this.lead();
    const synced = Promise.all(this.caches.map((c) => c.synced)).then(() => {
      this.log.info({ namespaces: this.options.namespaces?.length ? this.options.namespaces : 'all' }, 'caches synced');
      void Promise.all([leading, ...this.holds]).then(() => {
        if (this.stopping) return;
        this.log.info('reconciling');
        this.openGate();
      });
    });
    return Promise.all([synced, ...this.runnables.map((r) => r.ready)]).then(() => undefined);
  }

  private lead(): Promise<void> {
    const le = this.options.leaderElection;
    if (!le) {
      this.metrics.leader.set(1);
      return Promise.resolve();
    }
    this.metrics.leader.set(0);
    return new Promise<void>((resolve) => {
      this.elector = new LeaderElector({
        client: this.client,
        namespace: le.namespace,
        name: le.leaseName ?? 'service-user-operator',
        identity: le.identity,
        ...(le.leaseDurationMs ? { leaseDurationMs: le.leaseDurationMs } : {}),
        ...(le.renewDeadlineMs ? { renewDeadlineMs: le.renewDeadlineMs } : {}),
        ...(le.retryPeriodMs ? { retryPeriodMs: le.retryPeriodMs } : {}),
        log: this.log,
        onStartedLeading: () => {
          this.metrics.leader.set(1);
          resolve();
        },
        onStoppedLeading: () => {
          this.lostLease = true;
          this.cancel.abort(new Error('this replica lost the leader Lease'));
          this.metrics.leader.set(0);
          le.onLost();
        },
      });
      this.elector.start();
    });
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.cancel.abort(new Error('the operator is stopping'));
    // Reconciles waiting at the gate return at once (acting() is false).
    this.openGate();
    await Promise.all(this.controllers.map((c) => c.shutdown()));
    for (const r of [...this.runnables].reverse()) await r.stop?.();
    // Only now, with no reconcile, event or ledger timer left to write, is the Lease released
    // (renewed meanwhile; controller-runtime's ReleaseOnCancel): a successor takes it on its
    // next retry instead of waiting it out, and never acts while this replica still does.
    await this.elector?.stop();
    if (this.options.leaderElection) this.metrics.leader.set(0);
    await Promise.all(this.caches.map((c) => c.stop()));
    this.client.close();
  }
}
