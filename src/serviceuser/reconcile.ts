// The ServiceUser reconcile: observe → plan → execute, and the edge between them and the API
// server. observe.ts reads the caches and the Secret (secret-view.ts: one view of it) and what
// the CA and ledger say of its certificate; certificate-plan.ts and desired.ts plan, pure;
// execute.ts carries the plan out in its crash-safe order; here each action is bound to the
// API server (status by server-side apply under the reconcile's field manager: the restarts
// and notices controllers apply theirs under their own, status-apply.ts), the ledger and the
// CA, and events, logs and metrics tell what was done and when to look again.
import { apiVersion } from '../api/primitives.ts';
import { resources } from '../api/resources.ts';
import type { ServiceUser } from '../api/serviceuser.ts';
import type { TemplateKeyPolicy } from '../api/secret-template.ts';
import { setConditions, type Condition } from '../controller/conditions.ts';
import type { FirstList } from '../controller/first-list.ts';
import type { CacheReader, InformerSet } from '../controller/informer.ts';
import { objectOf, type AccountEntry, type NamespaceEntry, type RoleBindingEntry, type RoleEntry, type SecretEntry, type ServiceUserEntry } from '../api/stores.ts';
import { resourcePath, type KubeClient, type KubeObject } from '../controller/kube.ts';
import type { Result } from '../controller/queue.ts';
import type { IssuedToken } from '../credentials/token.ts';
import type { EventRecorder } from '../controller/events.ts';
import type { Logger } from '../observability/logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { RevocationLedger } from '../authority/revocations.ts';
import type { Ca } from '../credentials/ca.ts';
import { desired } from './desired.ts';
import { issueFromCa, withPkcs12 } from './issuance.ts';
import { placeFromCertManager, removeCertManagerCertificate } from './cert-manager.ts';
import { secretWriter, SecretTaken, type SecretWriter } from './secret-write.ts';
import { expiresAt, isExpired } from '../api/expiry.ts';
import type { LedgerTrust } from '../authority/ledger-macs.ts';
import type { EndDateRevocations } from './end-date-revocations.ts';
import { planCertificate } from './certificate-plan.ts';
import { carryOut, placeCertificate, type CertificateActions, type WriteActions } from './execute.ts';
import { applyServiceUserStatus } from './status-apply.ts';
import { finalize, type FinalizeDeps } from './finalize.ts';
import { ServiceUserObserver, type AuthorityState } from './observe.ts';
import { UserMetrics } from './user-metrics.ts';

export const finalizer = 'serviceusers.dev/revoke';

export interface ServiceUserDeps {
  client: KubeClient;
  serviceUsers: CacheReader<ServiceUserEntry>;
  roleBindings: CacheReader<RoleBindingEntry>;
  roles: CacheReader<RoleEntry>;
  /** Accounts and the namespaces' labels: which accounts admit the ServiceUser. */
  accounts: CacheReader<AccountEntry>;
  namespaces: CacheReader<NamespaceEntry>;
  /** Our Secrets, metadata only: whether one changed since we wrote it. */
  secrets?: InformerSet<SecretEntry>;
  /** Their data as the Secret informer's first list carried it, until a restart's first passes are done (first-list.ts). */
  listedSecrets?: FirstList;
  events: EventRecorder;
  log: Logger;
  metrics: Metrics;
  fieldManager: string;
  now: () => number;
  issue: () => IssuedToken;
  /** The built-in CA and its revocation ledger. */
  authority: { ca: Ca; ledger: RevocationLedger };
  /** Whether they are loaded yet, and if not why (operator.ts); absent: always loaded. */
  authorityState?: () => { ready: true } | { ready: false; reason: string };
  /** The ledger key (loaded before the first reconcile; replaced when it rotates). */
  trust: LedgerTrust;
  /** Which secretTemplate keys reach the Secret; absent: the default (api/secret-template.ts). */
  templateKeys?: TemplateKeyPolicy;
  /** Email notices are on: status keeps the outbox the notices controller sends from (notices-controller.ts); absent: off. */
  notices?: boolean;
  /** Revokes the built-in CA's certificates at their user's end date, ahead of the reconcile (end-date-revocations.ts). */
  endDates?: EndDateRevocations;
  /** Serials one ServiceUser may have on the CRL before its renewal requests slow to one an hour (renewalPace); absent: 100. */
  crlOwnerBudget?: number;
  /** Test fault: exit the process right after the Secret write, before status records it. */
  crashAfterSecretWrite?: boolean;
}

/** The ServiceUser reconcile over `deps`; its caches are read in one place, observe.ts (the Secret's in secret-view.ts). */
export function serviceUserReconciler(deps: ServiceUserDeps) {
  const { client, fieldManager } = deps;
  const observer = new ServiceUserObserver(deps);
  const view = observer.secrets;
  const metrics = new UserMetrics(deps.metrics);
  const suPath = (ns: string, name: string, sub?: string) => resourcePath(resources.serviceUsers, ns, name, sub);
  const applyStatus = async (su: KubeObject, status: unknown): Promise<KubeObject> => observer.remember(su, await applyServiceUserStatus(client, su, status, fieldManager));
  // Our own apply configuration holds only the finalizer: applying without it releases it.
  const setFinalizer = async (su: KubeObject, present: boolean): Promise<KubeObject> =>
    observer.remember(su, await client.apply(
      suPath(su.metadata.namespace!, su.metadata.name),
      { apiVersion, kind: 'ServiceUser', metadata: { name: su.metadata.name, namespace: su.metadata.namespace, ...(present ? { finalizers: [finalizer] } : {}) } },
      fieldManager,
    ));
  const finalizeDeps: FinalizeDeps = { ...deps, readSecret: (ns, name) => view.read(ns, name), applyStatus, setFinalizer, forgetMetrics: (ns, name) => metrics.forget(ns, name) };
  const certificateActions = certificateActionsOf(deps);
  const secrets = secretWriter(client, fieldManager);
  const pass: Pass = { deps, observer, applyStatus, certificateActions, secrets, metrics };

  return async function reconcile(key: string, signal: AbortSignal): Promise<Result | void> {
    const cached = observer.serviceUser(key);
    if (!cached) return void view.gone(key);
    let raw = objectOf(cached);
    const log = deps.log.child({ serviceUser: key });
    const authority = deps.authorityState?.() ?? { ready: true as const };
    // Every record is MACed with the ledger key: without it nothing can be written (operator.ts
    // loads it with the CA, and enqueues every user once it is there).
    if (!deps.trust.ring) return void log.debug('waits for the ledger key');
    if (raw.metadata.deletionTimestamp) {
      view.deleting(key);
      // Revoking needs the CA (the CRL); the operator enqueues every user once it is loaded.
      if (!authority.ready) return void log.debug('deletion waits for the built-in CA');
      signal.throwIfAborted();
      if (raw.metadata.finalizers?.includes(finalizer)) await finalize(finalizeDeps, raw, cached.valid ? cached.value : undefined);
      return;
    }
    signal.throwIfAborted();
    if (!cached.valid) return refuseInvalid(deps, raw, cached.problem, applyStatus, log);
    if (!raw.metadata.finalizers?.includes(finalizer)) raw = await setFinalizer(raw, true);
    return reconcileUser(pass, { key, raw, su: cached.value, authority, log, signal });
  };
}

/** What every pass of one reconciler shares. */
interface Pass {
  deps: ServiceUserDeps;
  observer: ServiceUserObserver;
  applyStatus: (su: KubeObject, status: unknown) => Promise<KubeObject>;
  certificateActions: CertificateActions;
  secrets: SecretWriter;
  metrics: UserMetrics;
}

/** Admission should have refused it (an outdated CRD?): say what is wrong and wait. */
async function refuseInvalid(deps: ServiceUserDeps, raw: KubeObject, message: string, applyStatus: Pass['applyStatus'], log: Logger): Promise<void> {
  const previous = (raw.status as { conditions?: Condition[] } | undefined)?.conditions;
  if (!previous?.some((c) => c.type === 'Stalled' && c.status === 'True' && c.message === message)) {
    await deps.events.record(raw, { type: 'Warning', reason: 'InvalidSpec', message });
  }
  await applyStatus(raw, {
    ...(raw.status as object | undefined),
    phase: 'Failed',
    observedGeneration: raw.metadata.generation,
    conditions: setConditions(previous, [
      { type: 'Ready', status: 'False', reason: 'InvalidSpec', message },
      { type: 'Reconciling', status: 'False', reason: 'InvalidSpec', message: 'waiting for the spec to change' },
      { type: 'Stalled', status: 'True', reason: 'InvalidSpec', message },
    ], raw.metadata.generation, deps.now()),
  });
  log.warn({ problems: message }, 'invalid ServiceUser');
}

/** The certificate actions bound to the built-in CA, its ledger and cert-manager. */
function certificateActionsOf(deps: ServiceUserDeps): CertificateActions {
  return {
    revoke: (owner, entries) => deps.authority.ledger.revoke(owner, entries),
    setHolds: (owner, serials) => deps.authority.ledger.setHolds(owner, serials),
    removeCertManager: (su) => removeCertManagerCertificate(deps.client, su),
    placeFromCertManager: (input) => placeFromCertManager(deps, input),
    issue: (su, window) => issueFromCa(deps.authority.ca, su, window),
    withPkcs12,
  };
}

/** One pass of a valid, finalized ServiceUser, and what it runs under. */
interface UserPass {
  key: string;
  raw: KubeObject;
  su: ServiceUser;
  authority: AuthorityState;
  log: Logger;
  signal: AbortSignal;
}

/** One pass over a valid, finalized ServiceUser: observe, plan, execute. */
async function reconcileUser(pass: Pass, { key, raw, su, authority, log, signal }: UserPass): Promise<Result | void> {
  const { deps } = pass;
  const seen = await pass.observer.observe(key, su, authority, signal);
  const { now, secret } = seen;
  const certificatePlan = planCertificate(su, seen.certificate, now, !!seen.blocked);
  if (certificatePlan.certificate.kind === 'wait') return void log.debug('waits for the built-in CA: it has a certificate to keep, renew, revoke or hold');
  // Observed and planned: a replica that stopped acting meanwhile executes nothing.
  signal.throwIfAborted();
  const { placed: certificate, problem: certificateProblem } = await placeCertificate(pass.certificateActions, su, certificatePlan, { now, ourSecretRaw: seen.ourSecret?.raw });
  const detail = certificateProblem && 'detail' in certificateProblem ? certificateProblem.detail : undefined;
  if (typeof detail === 'string') log.info({ reason: certificateProblem!.reason }, detail);
  if (authority.ready) {
    const end = expiresAt(su.spec.endDate);
    const builtIn = certificate?.issuedBy === 'BuiltInCA';
    deps.endDates?.track(key, isExpired(end, now) ? undefined : end, builtIn ? { serialNumber: certificate.serialNumber, notAfter: new Date(certificate.notAfter).toISOString() } : undefined);
  }
  const trust = { ...deps.trust, ring: deps.trust.ring! };
  const plan = desired(su, { now, secret, peers: seen.peers, permissions: seen.permissions, accounts: seen.accounts, certificate, certificateProblem, trust, ...(deps.templateKeys ? { templateKeys: deps.templateKeys } : {}) }, () => {
    deps.metrics.tokensIssued.inc();
    return deps.issue();
  });
  const written = await carryOut(writeActions(pass, key, raw, log), su, { status: raw.status, secret }, plan, now);
  for (const r of plan.revocations) deps.metrics.tokensRevoked.inc({ reason: r.reason });
  for (const e of written.events) {
    // A Warning event is something to act on: it logs at warn, where alerting on logs looks.
    log[e.type === 'Warning' ? 'warn' : 'info']({ reason: e.reason, type: e.type }, e.message);
    // Not on the reconcile's path (unless the recorder's backlog is full): it writes and
    // aggregates them, and logs its own failures.
    await deps.events.whenRoom();
    void deps.events.record(raw, e);
  }
  pass.metrics.report(key, su, written.status, now);
  const requeueAfterMs = plan.requeueAfterMs ?? Infinity;
  return requeueAfterMs === Infinity ? {} : { requeueAfterMs };
}

/** The write actions of one pass, bound to the API server and the Secret view. */
function writeActions(pass: Pass, key: string, raw: KubeObject, log: Logger): WriteActions {
  const { deps, observer } = pass;
  const { client } = deps;
  const view = observer.secrets;
  return {
    async writeSecret(su, want, seen, certificate) {
      const applied = await pass.secrets.write(su, want, seen).catch((err: unknown) => {
        if (err instanceof SecretTaken) view.taken(key);
        throw err;
      });
      view.wrote(key, applied);
      log.info({ secret: want.name, tokenId: want.data['token-id'], certificate }, 'Secret applied');
    },
    ...(deps.crashAfterSecretWrite
      ? {
          crashAfterSecretWrite: () => {
            log.fatal('test fault: exiting between the Secret write and the status write');
            process.exit(137);
          },
        }
      : {}),
    applyStatus: (status) => pass.applyStatus(raw, status),
    async replaceTokens(tokens) {
      observer.remember(raw, await client.mergePatch(resourcePath(resources.serviceUsers, raw.metadata.namespace!, raw.metadata.name, 'status'), { status: { tokens } }));
    },
    settled: () => view.settled(key),
    notices: !!deps.notices,
  };
}
