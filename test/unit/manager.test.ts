// The manager on its own (no caches, so nothing to sync): reconciles wait behind its gate
// until every hold has settled; stop drains the controllers' queues before it stops the
// runnables, and stops those in the reverse of the order they were added.
import { KubeConfig } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { KubeClient } from '../../src/controller/kube.ts';
import { Manager } from '../../src/controller/manager.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { createMetrics } from '../../src/observability/metrics.ts';

function manager() {
  const kc = new KubeConfig();
  // Never dialled: a manager without caches or leader election makes no request.
  kc.loadFromClusterAndUser({ name: 'none', server: 'https://127.0.0.1:9', skipTLSVerify: true }, { name: 'u', token: 't' });
  return new Manager({ client: new KubeClient(kc), log: createLogger('silent'), metrics: createMetrics() });
}

describe('Manager', () => {
  it('runs no reconcile before every hold has settled', async () => {
    const mgr = manager();
    const ran: string[] = [];
    let settle!: () => void;
    mgr.holdReconcilesUntil(new Promise<void>((r) => (settle = r)));
    const c = mgr.controller('c', async (key) => void ran.push(key), 1);
    await mgr.start();
    c.enqueue('a');
    // The queue has taken the key and is waiting at the gate: nothing ran.
    await expect.poll(() => c.queue.size.processing).toBe(1);
    expect(ran).toEqual([]);
    settle();
    await expect.poll(() => ran).toEqual(['a']);
    await mgr.stop();
  });

  it('stops the queues first (in-flight reconciles finish), then the runnables in reverse order', async () => {
    const mgr = manager();
    const order: string[] = [];
    let release!: () => void;
    const c = mgr.controller('c', async () => {
      await new Promise<void>((r) => (release = r));
      order.push('reconcile done');
    }, 1);
    mgr.add({ name: 'first', stop: () => void order.push('first stopped') });
    mgr.add({ name: 'second', stop: async () => void order.push('second stopped') });
    await mgr.start();
    c.enqueue('a');
    await expect.poll(() => typeof release).toBe('function');
    const stopped = mgr.stop();
    expect(mgr.acting()).toBe(false);
    release();
    await stopped;
    expect(order).toEqual(['reconcile done', 'second stopped', 'first stopped']);
  });

  it("aborts the reconciles' signal when it stops: an in-flight reconcile sees it, and its cancellation is no failure", async () => {
    const mgr = manager();
    let seen: AbortSignal | undefined;
    let release!: () => void;
    const c = mgr.controller('c', async (_key, signal) => {
      seen = signal;
      await new Promise<void>((r) => (release = r));
      signal.throwIfAborted();
    }, 1);
    await mgr.start();
    c.enqueue('a');
    await expect.poll(() => typeof release).toBe('function');
    expect(seen?.aborted).toBe(false);
    const stopped = mgr.stop();
    expect(seen?.aborted).toBe(true);
    expect(String(seen?.reason)).toContain('the operator is stopping');
    release();
    await stopped;
    const reconciles = await mgr.metrics.registry.getSingleMetric('serviceuser_operator_reconcile_total')?.get();
    expect(reconciles?.values.filter((v) => v.labels.result === 'error')).toEqual([]);
  });

  it('is ready once every runnable is, and not when one fails for good', async () => {
    const mgr = manager();
    mgr.add({ name: 'broken', ready: Promise.reject(new Error('CA material that cannot work')) });
    await expect(mgr.start()).rejects.toThrow('CA material that cannot work');
    await mgr.stop();
  });
});
