// The /metrics guard's edges that a real API server cannot be made to show on demand: what a
// plain-HTTP binding may be, and a review that fails (the API server unreachable) — 503, never
// remembered, so the next scrape asks again. Authentication, authorization, caching and
// throttling against a real API server: test/integration/metrics.test.ts.
import { describe, expect, it } from 'vitest';
import { isLoopback, metricsBindingProblem, MetricsAccess, type Reviewer } from '../../src/observability/metrics-server.ts';

describe('metrics binding', () => {
  it('allows plain HTTP on loopback only', () => {
    for (const a of ['127.0.0.1:8080', '127.1.2.3:0', 'localhost:8080', '[::1]:8080']) expect(isLoopback(a), a).toBe(true);
    for (const a of [':8080', '0.0.0.0:8080', '[::]:8080', '10.0.0.1:8080', '127.0.0.1.example.com:80']) expect(isLoopback(a), a).toBe(false);
    expect(metricsBindingProblem(':8080', true)).toBeUndefined();
    expect(metricsBindingProblem('127.0.0.1:8080', false)).toBeUndefined();
    expect(metricsBindingProblem(':8080', false)).toMatch(/--no-metrics-secure.*loopback.*":8080"/);
    expect(metricsBindingProblem('nonsense', true)).toMatch(/^--metrics-bind-address: "nonsense" is not HOST:PORT/);
  });
});

describe('a review that fails', () => {
  it('answers 503 without the cause, remembers nothing and asks again on the next scrape', async () => {
    const asked: string[] = [];
    let down = true;
    const reviewer: Reviewer = {
      async request<T>(_method: string, path: string): Promise<T> {
        asked.push(path.split('/').pop()!);
        if (down) throw new Error('POST /apis/authentication.k8s.io/v1/tokenreviews: connect ECONNREFUSED 10.96.0.1:443');
        return (path.endsWith('tokenreviews') ? { status: { authenticated: true, user: { username: 'system:serviceaccount:monitoring:prometheus' } } } : { status: { allowed: true } }) as T;
      },
    };
    const access = new MetricsAccess(reviewer);
    const failed = await access.admit('Bearer t0ken', '10.0.0.5');
    expect(failed).toEqual({ status: 503, message: 'cannot review the token with the Kubernetes API now; try again' });
    down = false;
    expect(await access.admit('Bearer t0ken', '10.0.0.5')).toEqual({ status: 200, user: 'system:serviceaccount:monitoring:prometheus' });
    expect(await access.admit('Bearer t0ken', '10.0.0.5')).toEqual({ status: 200, user: 'system:serviceaccount:monitoring:prometheus' });
    expect(asked).toEqual(['tokenreviews', 'tokenreviews', 'subjectaccessreviews']);
  });
});
