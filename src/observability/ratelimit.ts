// Token buckets per client address, for callers that fail to authenticate: probing gets
// slower, honest clients never notice.
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private readonly perSecond: number;
  private readonly burst: number;
  private readonly now: () => number;

  constructor(options: { perSecond?: number; burst?: number; now?: () => number } = {}) {
    this.perSecond = options.perSecond ?? 5;
    this.burst = options.burst ?? 20;
    this.now = options.now ?? Date.now;
  }

  /** Whether `client` may make another failing attempt now; counts it if so. */
  take(client: string): boolean {
    const now = this.now();
    const bucket = this.buckets.get(client) ?? { tokens: this.burst, at: now };
    bucket.tokens = Math.min(this.burst, bucket.tokens + ((now - bucket.at) / 1000) * this.perSecond);
    bucket.at = now;
    this.buckets.set(client, bucket);
    if (this.buckets.size > 10_000) this.sweep(now);
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  }

  /** Whether `client` is out of attempts, without counting one. */
  exhausted(client: string): boolean {
    const bucket = this.buckets.get(client);
    if (!bucket) return false;
    return Math.min(this.burst, bucket.tokens + ((this.now() - bucket.at) / 1000) * this.perSecond) < 1;
  }

  private sweep(now: number): void {
    for (const [k, b] of this.buckets) if (now - b.at > (this.burst / this.perSecond) * 1000) this.buckets.delete(k);
  }
}
