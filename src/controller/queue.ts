// The work queue between informer events and reconciles, in client-go's shape: a key is
// queued at most once, never processed by two workers at once (an add during processing
// marks it dirty and it runs again after), at most `concurrency` keys run together, failures
// retry with per-key exponential backoff and jitter, and reconciles may ask to run again
// after a delay (timers: end dates, rotations, grace periods).

/** What a reconcile returns: done, or run again after this many milliseconds. */
export interface Result {
  requeueAfterMs?: number;
}

export type Handler = (key: string) => Promise<Result | void>;

export interface QueueOptions {
  concurrency?: number;
  /** First retry delay after a failure; doubles per consecutive failure of the key. */
  baseRetryMs?: number;
  maxRetryMs?: number;
  /** Called after each reconcile, for logs and metrics. */
  onDone?: (key: string, outcome: { durationMs: number; error?: unknown; retryInMs?: number; requeueAfterMs?: number }) => void;
  random?: () => number;
}

// setTimeout holds at most 2^31-1 ms (~24.8 days); later timers are re-armed by the
// reconcile that the capped timer triggers.
const maxTimerMs = 2 ** 31 - 1;

export class WorkQueue {
  private readonly handler: Handler;
  private readonly concurrency: number;
  private readonly baseRetryMs: number;
  private readonly maxRetryMs: number;
  private readonly onDone: QueueOptions['onDone'];
  private readonly random: () => number;

  private readonly pending: string[] = [];
  private readonly queued = new Set<string>();
  private readonly processing = new Set<string>();
  private readonly dirty = new Set<string>();
  private readonly timers = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  private readonly failures = new Map<string, number>();
  private readonly inFlight = new Set<Promise<void>>();
  private stopped = false;

  constructor(handler: Handler, options: QueueOptions = {}) {
    this.handler = handler;
    this.concurrency = options.concurrency ?? 4;
    this.baseRetryMs = options.baseRetryMs ?? 500;
    this.maxRetryMs = options.maxRetryMs ?? 5 * 60_000;
    this.onDone = options.onDone;
    this.random = options.random ?? Math.random;
  }

  /** Queue `key` now. Idempotent while it waits. */
  add(key: string): void {
    if (this.stopped) return;
    if (this.processing.has(key)) {
      this.dirty.add(key);
      return;
    }
    if (this.queued.has(key)) return;
    this.queued.add(key);
    this.pending.push(key);
    this.pump();
  }

  /** Queue `key` after `ms`; an earlier timer for the key wins over a later one. */
  addAfter(key: string, ms: number): void {
    if (this.stopped) return;
    if (ms <= 0) return this.add(key);
    const delay = Math.min(ms, maxTimerMs);
    const at = Date.now() + delay;
    const existing = this.timers.get(key);
    if (existing && existing.at <= at) return;
    if (existing) clearTimeout(existing.timer);
    this.timers.set(key, { at, timer: this.arm(key, at, delay) });
  }

  // A timer is measured from the event loop's cached clock, which a busy loop leaves behind the
  // wall clock: it can fire before `at` by as long as the loop was busy. A key due at an end
  // date must not run before it (the reconcile would judge the user not yet expired), so an
  // early timer waits out the rest.
  private arm(key: string, at: number, delay: number): NodeJS.Timeout {
    return setTimeout(() => {
      const early = at - Date.now();
      if (early > 0 && !this.stopped) {
        this.timers.set(key, { at, timer: this.arm(key, at, early) });
        return;
      }
      this.timers.delete(key);
      this.add(key);
    }, delay);
  }

  /** Keys waiting, being processed or timed; for tests and the readiness probe. */
  get size(): { pending: number; processing: number; timers: number } {
    return { pending: this.pending.length, processing: this.processing.size, timers: this.timers.size };
  }

  /** Stops taking work, drops timers and waits for running reconciles to finish. */
  async shutdown(): Promise<void> {
    this.stopped = true;
    for (const { timer } of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    this.pending.length = 0;
    this.queued.clear();
    while (this.inFlight.size) await Promise.allSettled([...this.inFlight]);
  }

  retryDelay(failures: number): number {
    const exp = Math.min(this.maxRetryMs, this.baseRetryMs * 2 ** Math.max(0, failures - 1));
    // Full jitter on the upper half: spreads retries of keys that failed together.
    return Math.round(exp / 2 + (this.random() * exp) / 2);
  }

  private pump(): void {
    while (!this.stopped && this.processing.size < this.concurrency) {
      const key = this.pending.shift();
      if (key === undefined) break;
      this.queued.delete(key);
      this.processing.add(key);
      const run = this.process(key).finally(() => this.inFlight.delete(run));
      this.inFlight.add(run);
    }
  }

  private async process(key: string): Promise<void> {
    const started = performance.now();
    let outcome: Parameters<NonNullable<QueueOptions['onDone']>>[1];
    try {
      const result = await this.handler(key);
      this.failures.delete(key);
      const requeueAfterMs = result?.requeueAfterMs;
      if (requeueAfterMs !== undefined) this.addAfter(key, requeueAfterMs);
      outcome = { durationMs: performance.now() - started, ...(requeueAfterMs !== undefined ? { requeueAfterMs } : {}) };
    } catch (error) {
      const failures = (this.failures.get(key) ?? 0) + 1;
      this.failures.set(key, failures);
      const retryInMs = this.retryDelay(failures);
      this.addAfter(key, retryInMs);
      outcome = { durationMs: performance.now() - started, error, retryInMs };
    }
    this.processing.delete(key);
    if (this.dirty.delete(key)) this.add(key);
    this.onDone?.(key, outcome);
    this.pump();
  }
}
