// Prometheus metrics. Labels carry names, never credentials.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  return {
    registry,
    expiration: new Gauge({
      name: 'serviceuser_expiration_timestamp_seconds',
      help: 'When the service user expires (its end date), as a Unix timestamp; absent without an end date.',
      labelNames: ['namespace', 'name'],
      registers: [registry],
    }),
    expiringSoon: new Gauge({
      name: 'serviceuser_expiring_soon',
      help: '1 while the service user is within its expiryWarning of its end date.',
      labelNames: ['namespace', 'name'],
      registers: [registry],
    }),
    reconciles: new Counter({
      name: 'serviceuser_operator_reconcile_total',
      help: 'Reconciles by controller and result (success, error).',
      labelNames: ['controller', 'result'],
      registers: [registry],
    }),
    reconcileSeconds: new Histogram({
      name: 'serviceuser_operator_reconcile_duration_seconds',
      help: 'Reconcile duration by controller.',
      labelNames: ['controller'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    }),
    tokensIssued: new Counter({
      name: 'serviceuser_tokens_issued_total',
      help: 'API tokens issued.',
      registers: [registry],
    }),
    tokensRevoked: new Counter({
      name: 'serviceuser_tokens_revoked_total',
      help: 'API tokens revoked, by reason.',
      labelNames: ['reason'],
      registers: [registry],
    }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
