// Prometheus metrics. Labels carry names, never credentials.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** How many owners serviceuser_crl_entries reports: the largest, so its series stay few at any scale. */
export const crlTopOwners = 20;

/** The owners with the most CRL entries, read at each scrape (operator.ts sets it once the ledger loads). */
type CrlOwners = { top?: (n: number) => { owner: string; entries: number }[] };

export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const crlOwners: CrlOwners = {};
  return { registry, crlOwners, ...serviceUserMetrics(registry, crlOwners), ...controllerMetrics(registry), ...credentialMetrics(registry) };
}

/** Per ServiceUser: its end date, its phase, its CRL entries. */
function serviceUserMetrics(registry: Registry, crlOwners: CrlOwners) {
  return {
    crlEntries: new Gauge({
      name: 'serviceuser_crl_entries',
      help: `Serials the CRL lists for a ServiceUser (namespace/name, deleted ones too, until they expire), for the ${crlTopOwners} users with the most.`,
      labelNames: ['namespace', 'name'],
      registers: [registry],
      collect() {
        this.reset();
        for (const { owner, entries } of crlOwners.top?.(crlTopOwners) ?? []) {
          const [namespace = '', name = ''] = owner.split('/');
          this.set({ namespace, name }, entries);
        }
      },
    }),
    crlOwnerBudget: new Gauge({
      name: 'serviceuser_crl_owner_budget',
      help: 'Serials one ServiceUser may have on the CRL (--crl-owner-budget) before its renewal requests slow to one an hour.',
      registers: [registry],
    }),
    expiration: new Gauge({
      name: 'serviceuser_expiration_timestamp_seconds',
      help: 'When the service user expires (its end date), as a Unix timestamp; absent without an end date.',
      labelNames: ['namespace', 'name'],
      registers: [registry],
    }),
    expiryWarning: new Gauge({
      name: 'serviceuser_expiry_warning_timestamp_seconds',
      help: 'When the service user enters its expiryWarning window (end date minus expiryWarning), as a Unix timestamp; absent without an end date. Alerts compare it with time(), so they fire on time even when no replica is reconciling.',
      labelNames: ['namespace', 'name'],
      registers: [registry],
    }),
    expiringSoon: new Gauge({
      name: 'serviceuser_expiring_soon',
      help: '1 while the service user is within its expiryWarning of its end date.',
      labelNames: ['namespace', 'name'],
      registers: [registry],
    }),
    info: new Gauge({
      name: 'serviceuser_info',
      help: 'One series per ServiceUser: its phase and friendly name (value 1).',
      labelNames: ['namespace', 'name', 'phase', 'friendly_name'],
      registers: [registry],
    }),
  };
}

/** The controllers at work: reconciles, queue depth, leadership, Kubernetes API requests. */
function controllerMetrics(registry: Registry) {
  return {
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
    leader: new Gauge({
      name: 'serviceuser_operator_leader',
      help: '1 while this replica holds the leader lease (and reconciles), else 0.',
      registers: [registry],
    }),
    queueDepth: new Gauge({
      name: 'serviceuser_operator_workqueue_depth',
      help: 'Keys waiting in the work queue, by controller.',
      labelNames: ['controller'],
      registers: [registry],
    }),
    apiRequests: new Counter({
      name: 'serviceuser_operator_api_requests_total',
      help: 'Requests to the Kubernetes API by RBAC verb, API group, resource and HTTP code (0: no answer). A server-side apply that created its object counts under patch and create, as it is authorized.',
      labelNames: ['verb', 'group', 'resource', 'code'],
      registers: [registry],
    }),
  };
}

/** What happens to credentials: issued, revoked, verified, and the notices about them. */
function credentialMetrics(registry: Registry) {
  return {
    tokensIssued: new Counter({
      name: 'serviceuser_tokens_issued_total',
      help: 'API tokens issued.',
      registers: [registry],
    }),
    verifications: new Counter({
      name: 'serviceuser_verifications_total',
      help: 'Verification requests by endpoint and result (authenticated, refused, error...).',
      labelNames: ['endpoint', 'result'],
      registers: [registry],
    }),
    notices: new Counter({
      name: 'serviceuser_notices_total',
      help: 'Email notices to spec.email by kind and result (sent, failed: retried with backoff).',
      labelNames: ['kind', 'result'],
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
