// The composition: a manager (controller/manager.ts) with the caches every controller shares,
// the built-in CA and ledger as a runnable (authority/authority.ts), one setup per controller
// (ServiceUser, RoleBinding and Role, Account: each declares its own watches beside its
// reconciler), and what is served beside them (serving.ts). The reconcilers write through
// server-side apply under one field manager. Only the leader (with leader election)
// reconciles; every replica serves verification from the same caches, with the built-in CA
// and the CRL it follows — unless started without `verification` (--mode=controller: the
// verifier process, src/verifier.ts, serves it).
import type { Connection } from './controller/connection.ts';
import type { Controller } from './controller/controller.ts';
import { KubeClient } from './controller/kube.ts';
import { Manager } from './controller/manager.ts';
import { requestInfo } from './controller/request-info.ts';
import { issueToken, type IssuedToken } from './credentials/token.ts';
import type { Ca } from './credentials/ca.ts';
import { readyParts, setupAuthority, trustOf } from './authority/authority.ts';
import type { RevocationLedger } from './authority/revocations.ts';
import type { LedgerTrust } from './authority/ledger-macs.ts';
import type { VerificationSettings } from './verify/server.ts';
import { EventRecorder } from './controller/events.ts';
import type { Logger } from './observability/logger.ts';
import type { Metrics } from './observability/metrics.ts';
import type { TemplateKeyPolicy } from './api/secret-template.ts';
import type { NoticeSender } from './serviceuser/notify.ts';
import { defaultCrlOwnerBudget } from './serviceuser/certificate.ts';
import { setupServiceUsers } from './serviceuser/setup.ts';
import { setupRestarts } from './serviceuser/restarts-controller.ts';
import { setupNotices } from './serviceuser/notices-controller.ts';
import { setupRoleBindings } from './rolebinding/setup.ts';
import { setupAccounts } from './account/setup.ts';
import { operatorCaches } from './caches.ts';
import { setupServing } from './serving.ts';

export { caTrouble } from './authority/authority.ts';

export const fieldManager = 'service-user-operator';

export interface OperatorOptions {
  /** A client-node KubeConfig, or a connection from loadConnection(). */
  kubeConfig: Connection;
  log: Logger;
  metrics: Metrics;
  /** Watch only these namespaces; all when empty. */
  namespaces?: string[];
  /**
   * Write Accounts' status (how many ServiceUsers each admits). Default: only when watching
   * every namespace — an operator that sees some namespaces would count only theirs, and
   * two such operators would overwrite each other's counts.
   */
  accountStatus?: boolean;
  concurrency?: number;
  now?: () => number;
  issue?: () => IssuedToken;
  watchTimeoutSeconds?: number;
  crashAfterSecretWrite?: boolean;
  /** The verification service; absent: not served. */
  verification?: VerificationSettings;
  /**
   * Prometheus /metrics (metrics-server.ts); absent: not served. Secure: HTTPS with the
   * verification service's serving certificate (or, --mode=controller, one for dnsNames), every
   * scrape's token reviewed (TokenReview and SubjectAccessReview); served once the CA is
   * loaded. Not secure: plain HTTP, loopback only.
   */
  metricsServer?: { address: string; secure: boolean; dnsNames?: string[] };
  /** Run only while holding this Lease (in operatorNamespace); absent: always reconcile. */
  leaderElection?: { identity: string; leaseName?: string; onLost: () => void; leaseDurationMs?: number; renewDeadlineMs?: number; retryPeriodMs?: number };
  /** Email notices to spec.email (SMTP); absent: none are sent or recorded. */
  notices?: { sender: NoticeSender };
  /** Where the built-in CA Secret and the CRL ConfigMap live. */
  operatorNamespace: string;
  caSecretName?: string;
  crlConfigMapName?: string;
  /** The Secret holding the ledger key (in operatorNamespace). */
  ledgerKeySecretName?: string;
  /** Upgrade from an operator that did not MAC its ledger: honour and re-MAC unsigned records. */
  adoptUnsignedLedger?: boolean;
  /** Which secretTemplate keys reach a Secret (api/secret-template.ts); default: the known copiers' refused. */
  secretTemplateKeys?: TemplateKeyPolicy;
  /** Serials one ServiceUser may have on the CRL before its renewal requests slow to one an hour (default 100). */
  crlOwnerBudget?: number;
  /**
   * Create the operator namespace when it does not exist (a local run: in a cluster the
   * operator's own namespace always exists). The CA and the ledger key live there, and
   * token records are MACed with that key, so without the namespace nothing can be issued.
   */
  createOperatorNamespace?: boolean;
}

export interface Operator {
  /** Caches synced and verification serving (a follower is ready too). */
  ready: Promise<void>;
  isReady(): boolean;
  isLeader(): boolean;
  /** The built-in CA and revocation ledger, once ready. */
  authority: { ca: Ca; ledger: RevocationLedger };
  /** The ledger key ring the reconciles sign with and verification checks, once ready. */
  trust: LedgerTrust;
  /** The verification service's port, once ready (when served). */
  verificationPort(): number | undefined;
  stop(): Promise<void>;
  controllers: { serviceUsers: Controller; roleBindings: Controller; roles: Controller; accounts?: Controller };
}

export function startOperator(options: OperatorOptions): Operator {
  const { log, metrics } = options;
  const now = options.now ?? Date.now;
  const crlOwnerBudget = options.crlOwnerBudget ?? defaultCrlOwnerBudget;
  metrics.crlOwnerBudget.set(crlOwnerBudget);
  const client = new KubeClient(options.kubeConfig, (method, path, status) => {
    const { verbs, group, resource } = requestInfo(method, path, status);
    for (const verb of verbs) metrics.apiRequests.inc({ verb, group, resource, code: String(status) });
  });
  const le = options.leaderElection;
  const mgr = new Manager({
    client, log, metrics, namespaces: options.namespaces, watchTimeoutSeconds: options.watchTimeoutSeconds,
    leaderElection: le ? { ...le, namespace: options.operatorNamespace } : undefined,
  });
  const caches = operatorCaches(mgr);
  const events = new EventRecorder(client, log);
  // Events queued by the last reconciles are written before the connection closes.
  mgr.add({ name: 'events', stop: () => events.flush() });
  const authority = setupAuthority(mgr, {
    namespace: options.operatorNamespace, caSecretName: options.caSecretName, crlConfigMapName: options.crlConfigMapName,
    ledgerKeySecretName: options.ledgerKeySecretName, createNamespace: options.createOperatorNamespace, now,
  });
  const shared = { events, fieldManager, now };
  const controllers = {
    serviceUsers: setupServiceUsers(mgr, caches, {
      ...shared, authority, concurrency: options.concurrency ?? 4, crlOwnerBudget, issue: options.issue ?? issueToken,
      adoptUnsignedLedger: options.adoptUnsignedLedger, templateKeys: options.secretTemplateKeys, notices: options.notices, crashAfterSecretWrite: options.crashAfterSecretWrite,
    }),
    // On the ServiceUser's key, beside it: restart targets, and the notices its status records.
    restarts: setupRestarts(mgr, caches, { ...shared, concurrency: options.concurrency ?? 4 }),
    ...(options.notices ? { notices: setupNotices(mgr, caches, { ...shared, sender: options.notices.sender, concurrency: options.concurrency ?? 4 }) } : {}),
    ...setupRoleBindings(mgr, caches, shared),
    // Accounts' status only when watching every namespace, unless told: an operator that sees
    // some namespaces would count only theirs, and two such would overwrite each other's counts.
    ...((options.accountStatus ?? !options.namespaces?.length) ? { accounts: setupAccounts(mgr, caches, shared) } : {}),
  };
  const served = setupServing(mgr, caches.serviceUsers, authority, { ...options, now });
  let synced = false;
  const ready = mgr.start().then(() => {
    synced = true;
  });
  // Callers that never await `ready` must not crash the process when it fails.
  ready.catch(() => undefined);
  return {
    ready,
    isReady: () => synced,
    isLeader: () => mgr.isLeader(),
    controllers,
    authority: readyParts(authority),
    trust: trustOf(authority, !!options.adoptUnsignedLedger),
    verificationPort: () => served.verificationPort(),
    stop: () => mgr.stop(),
  };
}
