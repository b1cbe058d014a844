// A controller: a reconcile function of a key behind its own work queue. Informer handlers
// only enqueue keys; the reconcile reads the caches and never depends on which event woke it.
import type { Logger } from '../observability/logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import { WorkQueue, type Result } from './queue.ts';

/**
 * One pass over a key. `signal` aborts when this replica stops acting (stopping, or its Lease
 * lost): a reconcile checks it between observing and executing, so a replica that no longer
 * counts starts no write, and passes it to its reads. A write once begun runs to its end, in
 * the crash-safe order the executor keeps (aborting it halfway is a crash, never better).
 */
export type Reconcile = (key: string, signal: AbortSignal) => Promise<Result | void>;

/** What the work queue runs: a reconcile with the signal already bound (manager.ts). */
export type KeyReconcile = (key: string) => Promise<Result | void>;

export class Controller {
  readonly name: string;
  readonly queue: WorkQueue;
  private readonly depth: () => void;

  constructor(name: string, reconcile: KeyReconcile, deps: { log: Logger; metrics: Metrics; concurrency?: number }) {
    this.name = name;
    const log = deps.log.child({ controller: name });
    // Set on both sides: keys pile up unprocessed on a follower or before the caches sync.
    this.depth = () => deps.metrics.queueDepth.set({ controller: name }, this.queue.size.pending);
    this.queue = new WorkQueue(reconcile, {
      concurrency: deps.concurrency ?? 4,
      onDone: (key, outcome) => {
        this.depth();
        deps.metrics.reconciles.inc({ controller: name, result: outcome.error ? 'error' : 'success' });
        deps.metrics.reconcileSeconds.observe({ controller: name }, outcome.durationMs / 1000);
        if (outcome.error) {
          log.warn({ key, err: outcome.error instanceof Error ? outcome.error.message : String(outcome.error), retryInMs: outcome.retryInMs }, 'reconcile failed; will retry');
        } else {
          log.debug({ key, ms: Math.round(outcome.durationMs), requeueAfterMs: outcome.requeueAfterMs }, 'reconciled');
        }
      },
    });
  }

  enqueue(key: string): void {
    this.queue.add(key);
    this.depth();
  }

  shutdown(): Promise<void> {
    return this.queue.shutdown();
  }
}
