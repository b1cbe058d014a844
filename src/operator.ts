// Wiring: informers feed keys to the controllers (ServiceUser, RoleBinding, Role, Account); the
// reconcilers read the caches and write through server-side apply under one field manager.
// Only the leader (with leader election) reconciles; every replica serves verification
// from the same caches, with the built-in CA and the CRL it follows — unless started without
// `verification` (--mode=controller: the verifier process, src/verifier.ts, serves it).
import type { Connection } from './controller/connection.ts';
import { resources } from './api/resources.ts';
import { Controller } from './controller/controller.ts';
import { Informer, InformerSet, objectKey, withoutManagedFields, type InformerOptions } from './controller/informer.ts';
import {
  byAccount,
  byFriendlyName,
  byNamespace,
  byRole,
  bySubject,
  inNamespace,
  rawAccounts,
  rawAdmittedAccounts,
  rawFriendlyName,
  rawSubjects,
  roleBindingIndexers,
  serviceUserIndexers,
} from './api/indexes.ts';
import { accountReconciler } from './account/reconcile.ts';
import { stableJson } from './controller/stable-json.ts';
import { ApiError, KubeClient, type KubeObject, type Resource } from './controller/kube.ts';
import { requestInfo } from './controller/request-info.ts';
import { issueToken, type IssuedToken } from './credentials/token.ts';
import type { Ca } from './credentials/ca.ts';
import { ensureCa } from './authority/ca-store.ts';
import { ensureLedgerKey, keyRingOf, ledgerKeyLabels } from './authority/ledger-key.ts';
import type { LedgerTrust } from './authority/ledger-macs.ts';
import { RevocationLedger } from './authority/revocations.ts';
import type { Server } from 'node:https';
import type { Server as HttpServer } from 'node:http';
import { servingCertificateFor, type ServingCertificate } from './verify/serving-certificate.ts';
import { Directory } from './verify/directory.ts';
import { LeaderElector } from './controller/leader.ts';
import { startVerificationServer, verificationOptions, type VerificationSettings } from './verify/server.ts';
import { MetricsAccess, serveMetrics } from './observability/metrics-server.ts';
import { EventRecorder } from './controller/events.ts';
import type { Logger } from './observability/logger.ts';
import type { Metrics } from './observability/metrics.ts';
import { roleBindingReconciler, roleReconciler } from './rolebinding/reconcile.ts';
import { labels } from './api/names.ts';
import { FirstList } from './controller/first-list.ts';
import { serviceUserReconciler } from './serviceuser/reconcile.ts';
import { defaultCrlOwnerBudget } from './serviceuser/certificate.ts';
import { EndDateRevocations } from './serviceuser/end-date-revocations.ts';
import { expiresAt, isExpired } from './api/expiry.ts';
import { serviceUser } from './api/serviceuser.ts';
import type { TemplateKeyPolicy } from './api/secret-template.ts';
import { noticeDelivery, type NoticeSender } from './serviceuser/notify.ts';

export const fieldManager = 'service-user-operator';

/** Why the CA Secret cannot be read or created, and what to do, in one line. */
export function caTrouble(err: ApiError, namespace: string, secretName: string): string {
  if (err.status === 404 && /namespaces? "[^"]*" not found/.test(err.message)) {
    return `namespace ${namespace} does not exist: create it with "kubectl create namespace ${namespace}", or pass --operator-namespace`;
  }
  if (err.status === 403) {
    return `not allowed to read or create Secret ${secretName} in namespace ${namespace}: grant the operator get and create on secrets there (config/rbac), or pass --operator-namespace`;
  }
  return `cannot read or create the CA Secret ${namespace}/${secretName}: ${err.message}`;
}

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
  const crlOwnerBudget = options.crlOwnerBudget ?? defaultCrlOwnerBudget;
  metrics.crlOwnerBudget.set(crlOwnerBudget);
  const client = new KubeClient(options.kubeConfig, (method, path, status) => {
    const { verbs, group, resource } = requestInfo(method, path, status);
    for (const verb of verbs) metrics.apiRequests.inc({ verb, group, resource, code: String(status) });
  });
  const namespaces = options.namespaces?.length ? options.namespaces : [undefined];
  const informers = (
    resource: Resource,
    { labelSelector, clusterScoped = false, transform, indexers }: Pick<InformerOptions, 'labelSelector' | 'transform' | 'indexers'> & { clusterScoped?: boolean } = {},
  ) =>
    new InformerSet(
      (clusterScoped ? [undefined] : namespaces).map(
        (namespace) =>
          new Informer(client, {
            resource,
            ...(namespace ? { namespace } : {}),
            ...(labelSelector ? { labelSelector } : {}),
            ...(options.watchTimeoutSeconds ? { watchTimeoutSeconds: options.watchTimeoutSeconds } : {}),
            ...(transform ? { transform } : {}),
            ...(indexers ? { indexers } : {}),
            onError: (err, retryInMs) => log.warn({ resource: resource.plural, namespace, err: String(err), retryInMs }, 'list/watch failed; restarting'),
          }),
      ),
    );
  const serviceUsers = informers(resources.serviceUsers, { indexers: serviceUserIndexers });
  const roleBindings = informers(resources.roleBindings, { indexers: roleBindingIndexers });
  const roles = informers(resources.roles, { clusterScoped: true });
  const accounts = informers(resources.accounts, { clusterScoped: true });
  // Namespace labels, which Accounts select: every namespace, or each watched one by name
  // (so RBAC can grant exactly those). Only name and labels are kept.
  const namespaceOnly = (n: KubeObject): KubeObject => ({ metadata: { name: n.metadata.name, resourceVersion: n.metadata.resourceVersion, labels: n.metadata.labels ?? {} } });
  const namespaceInformers = new InformerSet(
    namespaces.map(
      (namespace) =>
        new Informer(client, {
          resource: resources.namespaces,
          ...(namespace ? { fieldSelector: `metadata.name=${namespace}` } : {}),
          ...(options.watchTimeoutSeconds ? { watchTimeoutSeconds: options.watchTimeoutSeconds } : {}),
          transform: namespaceOnly,
          onError: (err, retryInMs) => log.warn({ resource: 'namespaces', namespace, err: String(err), retryInMs }, 'list/watch failed; restarting'),
        }),
    ),
  );
  // Our Secrets, and cert-manager's for our Certificates: both carry the owner's name label.
  // Only their changes matter (they wake the owner, whose reconcile reads the Secret
  // live), so the cache keeps metadata alone: credentials are not held twice in memory.
  // Their data in the first list is kept for the restart's first passes: a restart decides
  // from the list it made, not a GET a user (first-list.ts; released below).
  const listedSecrets = new FirstList();
  const secrets = informers(resources.secrets, {
    labelSelector: labels.name,
    transform: (s) => {
      listedSecrets.offer(s);
      return { metadata: withoutManagedFields(s).metadata };
    },
  });
  void secrets.synced.then(() => listedSecrets.synced());
  const events = new EventRecorder(client, log);
  const now = options.now ?? Date.now;
  const shared = { client, serviceUsers, roleBindings, roles, accounts, namespaces: namespaceInformers, events, fieldManager, now };
  let stopping = false;
  let lostLease = false;
  // The built-in CA and its CRL. Tokens do not need them: reconciling starts without them,
  // and only what needs the CA (a certificate to issue, keep, revoke or hold, a deletion,
  // the verification service) waits. Both fields are set together, once the CRL is loaded.
  const authority = {} as { ca: Ca; ledger: RevocationLedger };
  let authorityWait: string | undefined;
  const authorityState = () => (authority.ledger ? { ready: true as const } : { ready: false as const, reason: authorityWait ?? 'the built-in CA is loading' });
  // Reconciling waits for the first attempt only: when the CA loads at once, nothing runs
  // without it (and nothing needs a second look); when it does not, tokens go ahead.
  let firstAttempt!: () => void;
  const authorityTried = new Promise<void>((resolve) => (firstAttempt = resolve));
  // The ledger key, shared by the reconcile (which MACs) and the directory (which verifies).
  const trust: LedgerTrust = { ring: undefined, ...(options.adoptUnsignedLedger ? { adoptUnsigned: true } : {}) };
  const ledgerKeyName = options.ledgerKeySecretName ?? 'service-user-operator-ledger-key';
  const authorityReady = (async () => {
    // API trouble (the namespace not there yet, a restarting server) is waited out; CA
    // material that cannot work is not, and stops the start with its reason.
    const ns = options.operatorNamespace;
    const secretName = options.caSecretName ?? 'service-user-operator-ca';
    let ca: Ca;
    for (let attempt = 1; ; attempt++) {
      try {
        // The ledger key first: tokens need it (their records are MACed), not the CA.
        trust.ring = await ensureLedgerKey(client, ns, ledgerKeyName, log);
        ca = await ensureCa(client, ns, secretName, log);
        break;
      } catch (err) {
        if (!(err instanceof ApiError) || stopping) throw err;
        if (options.createOperatorNamespace && err.status === 404 && /namespaces? "[^"]*" not found/.test(err.message)) {
          const created = await client
            .request('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns, labels: { 'app.kubernetes.io/managed-by': 'service-user-operator' } } })
            .then(
              () => (log.info(`namespace ${ns} did not exist: created it for the built-in CA, the ledger key and the CRL (a local run; --no-create-operator-namespace turns this off)`), true),
              (createErr: unknown) => (log.debug({ err: String(createErr) }, 'could not create the operator namespace'), false),
            );
          if (created) continue;
        }
        const reason = caTrouble(err, ns, secretName);
        const delay = Math.min(10_000, 500 * 2 ** attempt);
        // Said once, in one line a person can act on; the retries that follow are quiet.
        if (reason !== authorityWait) log.warn({ retryInMs: delay }, `${reason}; meanwhile nothing is issued: the ledger key that signs token records lives there too`);
        else log.debug({ err: err.message, retryInMs: delay }, 'still waiting for the built-in CA');
        authorityWait = reason;
        firstAttempt();
        await new Promise((r) => setTimeout(r, delay));
      }
    }
    const ledger = new RevocationLedger({ client, ca, namespace: ns, name: options.crlConfigMapName ?? 'service-user-operator-crl', log, now });
    await ledger.start();
    authority.ca = ca;
    authority.ledger = ledger;
    metrics.crlOwners.top = (n) => ledger.topOwners(n);
    firstAttempt();
    const waited = authorityWait !== undefined;
    if (waited) log.info({ secret: `${ns}/${secretName}` }, 'the built-in CA is available: issuing the client certificates that waited');
    authorityWait = undefined;
    return waited;
  })();
  authorityReady.catch(() => firstAttempt());
  // No reconcile before every cache is complete: a half-filled cache would hide a
  // friendly-name holder or a binding and the reconcile would act on a partial world.
  let openGate!: () => void;
  const gate = new Promise<void>((resolve) => (openGate = resolve));
  const gated =
    (reconcile: (key: string) => Promise<object | void>) =>
    async (key: string) => {
      await gate;
      // A replica that lost the Lease acts no more, even before its process exits.
      if (stopping || lostLease) return undefined;
      return (await reconcile(key)) ?? undefined;
    };

  // Certificates revoked the moment their user's end date comes, batched by the ledger,
  // whatever the reconcile backlog; the timer's view is confirmed against the cache.
  const endDates = new EndDateRevocations({
    revoke: (owner, entries) => authority.ledger.revoke(owner, entries),
    stillDue: (owner, at) => {
      if (stopping || lostLease || !authority.ledger) return false;
      const su = serviceUser.safeParse(serviceUsers.get(owner));
      return su.success && isExpired(expiresAt(su.data.spec.endDate), at);
    },
    log: log.child({ component: 'end-dates' }),
    now,
  });

  const controllers = {
    serviceUsers: new Controller(
      'serviceuser',
      gated(serviceUserReconciler({
        ...shared,
        secrets,
        listedSecrets,
        log: log.child({ controller: 'serviceuser' }),
        metrics,
        issue: options.issue ?? issueToken,
        authority,
        authorityState,
        trust,
        ...(options.secretTemplateKeys ? { templateKeys: options.secretTemplateKeys } : {}),
        endDates,
        crlOwnerBudget,
        ...(options.crashAfterSecretWrite ? { crashAfterSecretWrite: true } : {}),
        ...(options.notices ? { deliverNotices: noticeDelivery({ sender: options.notices.sender, metrics, log: log.child({ component: 'notices' }), now }) } : {}),
      })),
      { log, metrics, concurrency: options.concurrency ?? 4 },
    ),
    roleBindings: new Controller('rolebinding', gated(roleBindingReconciler({ ...shared, log })), { log, metrics, concurrency: 2 }),
    roles: new Controller('role', gated(roleReconciler(shared)), { log, metrics, concurrency: 1 }),
    ...((options.accountStatus ?? !options.namespaces?.length)
      ? { accounts: new Controller('account', gated(accountReconciler(shared)), { log, metrics, concurrency: 1 }) }
      : {}),
  };

  // The restart's first passes are done when, the CA loaded, the ServiceUser queue has stood
  // empty for two seconds: the Secret data the first list carried is let go.
  void Promise.all([secrets.synced, authorityReady.catch(() => undefined)]).then(() => {
    let idle = 0;
    const timer = setInterval(() => {
      const { pending, processing } = controllers.serviceUsers.queue.size;
      idle = pending || processing ? 0 : idle + 1;
      if (idle < 2 && !stopping) return;
      listedSecrets.release();
      clearInterval(timer);
    }, 1000);
    timer.unref();
  });

  // Whoever waited for the CA (a certificate, a deletion) is looked at again once it is there.
  authorityReady.then(
    (waited) => {
      if (waited) for (const su of serviceUsers.list()) controllers.serviceUsers.enqueue(objectKey(su));
    },
    () => undefined,
  );

  // Handlers only map an object to the keys it may affect.
  const friendlyNames = new Map<string, string>();
  const userAccounts = new Map<string, string>();
  const bindingSubjects = new Map<string, string[]>();
  const enqueueUser = (ns: string | undefined, name: string) => controllers.serviceUsers.enqueue(`${ns}/${name}`);

  serviceUsers.onChange((type, su) => {
    const key = objectKey(su);
    const ns = su.metadata.namespace;
    controllers.serviceUsers.enqueue(key);
    const name = rawFriendlyName(su);
    // Whoever shares the friendly name it had or has may now hold it or lose it.
    const touched = new Set([friendlyNames.get(key), name]);
    if (type === 'DELETED') friendlyNames.delete(key);
    else friendlyNames.set(key, name);
    for (const fn of touched) {
      if (fn === undefined) continue;
      for (const other of serviceUsers.byIndex(byFriendlyName, inNamespace(ns, fn))) if (objectKey(other) !== key) controllers.serviceUsers.enqueue(objectKey(other));
    }
    for (const b of roleBindings.byIndex(bySubject, inNamespace(ns, su.metadata.name))) controllers.roleBindings.enqueue(objectKey(b));
    // The Accounts it names or was admitted in count it, or stop counting it.
    const named = type === 'DELETED' ? '' : stableJson([rawAccounts(su), rawAdmittedAccounts(su)]);
    if (controllers.accounts && named !== userAccounts.get(key)) {
      const before = userAccounts.get(key);
      for (const a of new Set([...(before ? (JSON.parse(before) as string[][]).flat() : []), ...rawAccounts(su), ...rawAdmittedAccounts(su)])) controllers.accounts.enqueue(a);
    }
    if (type === 'DELETED') userAccounts.delete(key);
    else userAccounts.set(key, named);
  });
  // An Account created, deleted or re-scoped changes what its users and bindings get (its
  // status, written here, changes nothing: the spec alone is compared).
  const accountSpecs = new Map<string, string>();
  accounts.onChange((type, account) => {
    const name = account.metadata.name;
    controllers.accounts?.enqueue(name);
    const spec = type === 'DELETED' ? '' : stableJson([account.spec, account.metadata.deletionTimestamp]);
    if (spec === accountSpecs.get(name)) return;
    if (type === 'DELETED') accountSpecs.delete(name);
    else accountSpecs.set(name, spec);
    for (const su of serviceUsers.byIndex(byAccount, name)) {
      controllers.serviceUsers.enqueue(objectKey(su));
      for (const b of roleBindings.byIndex(bySubject, inNamespace(su.metadata.namespace, su.metadata.name))) controllers.roleBindings.enqueue(objectKey(b));
    }
    for (const b of roleBindings.byIndex(byAccount, name)) controllers.roleBindings.enqueue(objectKey(b));
  });
  // A namespace's labels decide which Accounts admit it: a change re-judges what lives there.
  const namespaceLabels = new Map<string, string>();
  namespaceInformers.onChange((type, n) => {
    const name = n.metadata.name;
    const labelsNow = type === 'DELETED' ? '' : stableJson(n.metadata.labels ?? {});
    if (labelsNow === namespaceLabels.get(name)) return;
    if (type === 'DELETED') namespaceLabels.delete(name);
    else namespaceLabels.set(name, labelsNow);
    for (const su of serviceUsers.byIndex(byNamespace, name)) controllers.serviceUsers.enqueue(objectKey(su));
    for (const b of roleBindings.byIndex(byNamespace, name)) controllers.roleBindings.enqueue(objectKey(b));
  });
  secrets.onChange((_type, secret) => {
    const owner = secret.metadata.labels?.[labels.name];
    if (owner) enqueueUser(secret.metadata.namespace, owner);
  });
  roleBindings.onChange((type, b) => {
    const key = objectKey(b);
    controllers.roleBindings.enqueue(key);
    const now = rawSubjects(b);
    for (const s of new Set([...(bindingSubjects.get(key) ?? []), ...now])) enqueueUser(b.metadata.namespace, s);
    if (type === 'DELETED') bindingSubjects.delete(key);
    else bindingSubjects.set(key, now);
  });
  roles.onChange((_type, role) => {
    controllers.roles.enqueue(objectKey(role));
    for (const b of roleBindings.byIndex(byRole, role.metadata.name)) {
      controllers.roleBindings.enqueue(objectKey(b));
      for (const s of rawSubjects(b)) enqueueUser(b.metadata.namespace, s);
    }
  });

  // The ledger's ConfigMaps (head and shards), so that every replica signs and serves the
  // current CRL and its copy of the ledger follows writes it did not make.
  const crlMaps = new InformerSet([
    new Informer(client, {
      resource: { group: '', version: 'v1', plural: 'configmaps', namespaced: true },
      namespace: options.operatorNamespace,
      labelSelector: 'app.kubernetes.io/component=crl,app.kubernetes.io/managed-by=service-user-operator',
      onError: (err, retryInMs) => log.warn({ resource: 'configmaps', err: String(err), retryInMs }, 'list/watch failed; restarting'),
    }),
  ]);
  crlMaps.onChange((type, cm) => {
    if (type !== 'DELETED') authorityReady.then(
      () => authority.ledger.observe(cm),
      // A failed start is reported once, through `ready`; this is only a follower.
      () => undefined,
    );
  });
  // The ledger key Secret, so that every replica follows a rotation: verification judges
  // again, and the leader re-MACs every ServiceUser's records under the new current key.
  const ledgerKeys = new InformerSet([
    new Informer(client, {
      resource: resources.secrets,
      namespace: options.operatorNamespace,
      labelSelector: Object.entries(ledgerKeyLabels).map(([k, v]) => `${k}=${v}`).join(','),
      onError: (err, retryInMs) => log.warn({ resource: 'secrets', err: String(err), retryInMs }, 'list/watch failed; restarting'),
    }),
  ]);
  ledgerKeys.onChange((type, secret) => {
    if (type === 'DELETED' || secret.metadata.name !== ledgerKeyName) return;
    void authorityReady.then(
      () => {
        let ring;
        try {
          ring = keyRingOf(secret);
        } catch (err) {
          // Keep verifying with the key in use: a bad edit must not stop verification.
          log.error({ err: err instanceof Error ? err.message : String(err) }, 'ledger key Secret changed and cannot be used; keeping the previous key');
          return;
        }
        const before = trust.ring;
        const same = before && before.current.id === ring.current.id && before.keys.map((k) => `${k.id}:${k.secret.toString('hex')}`).join() === ring.keys.map((k) => `${k.id}:${k.secret.toString('hex')}`).join();
        if (same) return;
        trust.ring = ring;
        log.info({ current: ring.current.id, keys: ring.keys.map((k) => k.id) }, 'ledger key changed; records are judged again and re-MACed');
        directory.rejudge(serviceUsers.list());
        for (const su of serviceUsers.list()) controllers.serviceUsers.enqueue(objectKey(su));
      },
      () => undefined,
    );
  });
  const all = [serviceUsers, roleBindings, roles, accounts, namespaceInformers, secrets, crlMaps, ledgerKeys];
  for (const set of all) set.start();
  let synced = false;
  // Verification answers from memory: the directory follows the ServiceUser informer.
  const directory = new Directory(trust);
  serviceUsers.onChange((type, su) => directory.observe(type, su));
  let verification: Server | undefined;
  // One serving certificate for verification and metrics, once the CA is loaded: mounted
  // files re-read as they change, or the CA's, renewed before it ends (serving-certificate.ts).
  let servingTls: Promise<ServingCertificate> | undefined;
  const serving = () => {
    const v = options.verification;
    const namespace = options.operatorNamespace;
    const wanted = v?.dnsNames?.length ? v.dnsNames : options.metricsServer?.dnsNames;
    const names = wanted?.length ? wanted : ['localhost', '127.0.0.1', 'service-user-operator', `service-user-operator.${namespace}.svc`, `service-user-operator.${namespace}.svc.cluster.local`];
    return (servingTls ??= servingCertificateFor({ tls: v?.tls, tlsFiles: v?.tlsFiles, names }, { ca: authority.ca, log, now }));
  };
  const verificationReady = authorityReady.then(async () => {
    // What the directory saw before the ledger key was loaded was judged without it.
    directory.rejudge(serviceUsers.list());
    const v = options.verification;
    if (!v || stopping) return;
    verification = await startVerificationServer(verificationOptions(v, { directory, tls: await serving(), caPem: authority.ca.certPem, crl: () => authority.ledger.crlPem, metrics, log, now }));
    log.info({ address: verification.address() }, 'verification service listening');
  });

  // Plain metrics (loopback) from the start; secure ones once the serving certificate exists.
  let metricsServer: HttpServer | undefined;
  const m = options.metricsServer;
  const metricsReady = !m
    ? Promise.resolve()
    : (m.secure ? authorityReady : Promise.resolve()).then(async () => {
        if (stopping) return;
        const access = m.secure ? { secure: true as const, tls: await serving(), access: new MetricsAccess(client, { log }) } : { secure: false as const };
        const server = await serveMetrics(m.address, metrics.registry, access, log);
        metricsServer = server;
        log.info({ address: server.address(), secure: m.secure }, 'metrics listening');
      });

  // Reconciling waits for the caches and — with leader election — the lease.
  let elector: LeaderElector | undefined;
  const leading = new Promise<void>((resolve) => {
    const le = options.leaderElection;
    if (!le) return resolve();
    metrics.leader.set(0);
    elector = new LeaderElector({
      client,
      namespace: options.operatorNamespace,
      name: le.leaseName ?? 'service-user-operator',
      identity: le.identity,
      ...(le.leaseDurationMs ? { leaseDurationMs: le.leaseDurationMs } : {}),
      ...(le.renewDeadlineMs ? { renewDeadlineMs: le.renewDeadlineMs } : {}),
      ...(le.retryPeriodMs ? { retryPeriodMs: le.retryPeriodMs } : {}),
      log,
      onStartedLeading: () => {
        metrics.leader.set(1);
        resolve();
      },
      onStoppedLeading: () => {
        lostLease = true;
        metrics.leader.set(0);
        le.onLost();
      },
    });
    elector.start();
  });
  if (!options.leaderElection) metrics.leader.set(1);

  // Reconciling starts once the caches are complete (and the Lease held); readiness (the
  // probe) also waits for the CA and the verification service it serves.
  const cachesSynced = Promise.all(all.map((s) => s.synced)).then(() => {
    log.info({ namespaces: options.namespaces?.length ? options.namespaces : 'all' }, 'caches synced');
    void Promise.all([leading, authorityTried]).then(() => {
      if (!stopping) {
        log.info('reconciling');
        openGate();
      }
    });
  });
  const ready = Promise.all([cachesSynced, authorityReady, verificationReady, metricsReady]).then(() => {
    synced = true;
  });

  // Callers that never await `ready` must not crash the process when it fails.
  ready.catch(() => undefined);
  return {
    ready,
    isReady: () => synced,
    controllers,
    authority,
    trust,
    verificationPort: () => (verification?.address() as { port: number } | null)?.port,
    isLeader: () => !options.leaderElection || (elector?.leading ?? false),
    async stop() {
      stopping = true;
      openGate();
      endDates.stop();
      await Promise.all(Object.values(controllers).map((c) => c.shutdown()));
      // Events queued by the last reconciles are written before the connection closes.
      await events.flush();
      await Promise.all(all.map((s) => s.stop()));
      authority.ledger?.stop();
      // Only now, with no reconcile or ledger timer left to write, is the Lease released (it
      // was renewed meanwhile): a successor takes it on its next retry instead of waiting it
      // out, and never acts while this replica still does.
      await elector?.stop();
      metrics.leader.set(0);
      await verificationReady.catch(() => undefined);
      if (verification) {
        verification.closeAllConnections();
        await new Promise((r) => verification!.close(r));
      }
      await metricsReady.catch(() => undefined);
      if (metricsServer) {
        metricsServer.closeAllConnections();
        await new Promise((r) => metricsServer!.close(r));
      }
      client.close();
    },
  };
}
