// The verifier process (`--mode=verifier`): the verification service alone, under an identity
// that can read what verification needs and write nothing. It is the network-facing half of
// the split: the controller (`--mode=controller`) holds the Secret-writing permissions and
// serves nothing to the network.
//
// What it reads, and all it reads (the chart's verifier Role/ClusterRole grant exactly this):
// - ServiceUsers (list, watch) in the watched namespaces: the directory answers from them;
// - the ledger key Secret, by name (get, and list/watch with a metadata.name field selector,
//   which RBAC grants by resourceNames): it checks the MACs the controller wrote, and follows
//   a rotation;
// - the CA Secret, by name (get): the trust anchor it serves and checks client certificates
//   against, and the key that signs its CRL and its own serving certificate;
// - the revocation ledger's ConfigMaps in the operator namespace (get, list, watch): the CRL
//   it serves, signed from its copy (revocations.ts, read-only).
// Invariants: no write of any kind to the API (no create, patch, update, no Events, no Lease);
// nothing is created when absent — a missing CA or ledger key is waited for (the controller
// creates them) and said once in a line a person can act on.
import type { Server as HttpServer } from 'node:http';
import type { Server } from 'node:https';
import { resources } from './api/resources.ts';
import type { Connection } from './controller/connection.ts';
import { Informer, InformerSet } from './controller/informer.ts';
import { ApiError, KubeClient, type KubeObject } from './controller/kube.ts';
import { requestInfo } from './controller/request-info.ts';
import { ensureCa } from './authority/ca-store.ts';
import { ensureLedgerKey, keyRingOf } from './authority/ledger-key.ts';
import { RevocationLedger } from './authority/revocations.ts';
import type { Ca } from './credentials/ca.ts';
import type { KeyRing } from './credentials/mac.ts';
import { servingCertificateFor, type ServingCertificate } from './verify/serving-certificate.ts';
import type { Logger } from './observability/logger.ts';
import type { Metrics } from './observability/metrics.ts';
import { MetricsAccess, serveMetrics } from './observability/metrics-server.ts';
import type { LedgerTrust } from './authority/ledger-macs.ts';
import { Directory } from './verify/directory.ts';
import { startVerificationServer, verificationOptions, type VerificationSettings } from './verify/server.ts';

export interface VerifierOptions {
  kubeConfig: Connection;
  log: Logger;
  metrics: Metrics;
  /** Watch only these namespaces' ServiceUsers; all when empty. */
  namespaces?: string[];
  /** Where the CA Secret, the ledger key Secret and the ledger's ConfigMaps live. */
  operatorNamespace: string;
  caSecretName?: string;
  crlConfigMapName?: string;
  ledgerKeySecretName?: string;
  adoptUnsignedLedger?: boolean;
  verification: VerificationSettings;
  /** /metrics (metrics-server.ts): secure, on the verification service's certificate, once it is issued. */
  metricsServer?: { address: string; secure: boolean };
  now?: () => number;
  watchTimeoutSeconds?: number;
}

export interface Verifier {
  /** The caches synced, the CA and ledger key loaded, the service listening. */
  ready: Promise<void>;
  isReady(): boolean;
  verificationPort(): number | undefined;
  stop(): Promise<void>;
}

/** Whether two key rings hold the same keys with the same one current. */
function sameRing(a: KeyRing | undefined, b: KeyRing): boolean {
  const keys = (r: KeyRing) => r.keys.map((k) => `${k.id}:${k.secret.toString('hex')}`).join();
  return !!a && a.current.id === b.current.id && keys(a) === keys(b);
}

/** Why the verifier still waits for the operator namespace's material, in one line. */
function waitReason(err: ApiError, namespace: string, what: string): string {
  if (err.status === 404) return `${what} not there yet: the controller (--mode=controller) creates it on its first start; waiting`;
  if (err.status === 403) return `not allowed to read ${what}: grant the verifier's ServiceAccount get on it in namespace ${namespace} (the chart's verifier Role)`;
  return `cannot read ${what}: ${err.message}`;
}

interface VerifierContext {
  options: VerifierOptions;
  client: KubeClient;
  log: Logger;
  now: () => number;
  trust: LedgerTrust;
  stopping: () => boolean;
}

/** The three caches the verifier reads: ServiceUsers, the ledger key Secret (by name), the ledger's ConfigMaps. */
function verifierCaches({ options, client, log }: VerifierContext, keyName: string) {
  const onError = (resource: string) => (err: unknown, retryInMs: number) => log.warn({ resource, err: String(err), retryInMs }, 'list/watch failed; restarting');
  const timeout = options.watchTimeoutSeconds ? { watchTimeoutSeconds: options.watchTimeoutSeconds } : {};
  const ns = options.operatorNamespace;
  const serviceUsers = new InformerSet(
    (options.namespaces?.length ? options.namespaces : [undefined]).map(
      (namespace) => new Informer(client, { resource: resources.serviceUsers, ...(namespace ? { namespace } : {}), ...timeout, onError: onError('serviceusers') }),
    ),
  );
  // By name, so that RBAC grants this one Secret (resourceNames), not the namespace's.
  const ledgerKey = new InformerSet([new Informer(client, { resource: resources.secrets, namespace: ns, fieldSelector: `metadata.name=${keyName}`, ...timeout, onError: onError('secrets') })]);
  const crlMaps = new InformerSet([
    new Informer(client, {
      resource: { group: '', version: 'v1', plural: 'configmaps', namespaced: true },
      namespace: ns,
      labelSelector: 'app.kubernetes.io/component=crl,app.kubernetes.io/managed-by=service-user-operator',
      ...timeout,
      onError: onError('configmaps'),
    }),
  ]);
  return { serviceUsers, ledgerKey, crlMaps };
}

/** The ledger key, the CA and the ledger, read (never created): waited for while absent. */
async function loadAuthority(ctx: VerifierContext, caName: string, keyName: string): Promise<{ ca: Ca; ledger: RevocationLedger }> {
  const { options, client, log, now, trust } = ctx;
  const ns = options.operatorNamespace;
  let said: string | undefined;
  for (let attempt = 1; ; attempt++) {
    let what = `the ledger key Secret ${ns}/${keyName}`;
    try {
      trust.ring = await ensureLedgerKey(client, ns, keyName, log, { create: false });
      what = `the CA Secret ${ns}/${caName}`;
      const ca = await ensureCa(client, ns, caName, log, { create: false });
      const ledger = new RevocationLedger({ client, ca, namespace: ns, name: options.crlConfigMapName ?? 'service-user-operator-crl', log, now, readOnly: true });
      await ledger.start();
      if (said) log.info('the CA and the ledger key are there: verification starts');
      return { ca, ledger };
    } catch (err) {
      if (!(err instanceof ApiError) || ctx.stopping()) throw err;
      const reason = waitReason(err, ns, what);
      const delay = Math.min(10_000, 500 * 2 ** attempt);
      if (reason !== said) log.warn({ retryInMs: delay }, reason);
      said = reason;
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}

/** A changed ledger key Secret: adopt its ring (keeping the one in use when it cannot be read), and judge again. */
function onLedgerKey(ctx: VerifierContext, secret: KubeObject, rejudge: () => void): void {
  let ring: KeyRing;
  try {
    ring = keyRingOf(secret);
  } catch (err) {
    // Keep verifying with the key in use: a bad edit must not stop verification.
    ctx.log.error({ err: err instanceof Error ? err.message : String(err) }, 'ledger key Secret changed and cannot be used; keeping the previous key');
    return;
  }
  if (sameRing(ctx.trust.ring, ring)) return;
  ctx.trust.ring = ring;
  ctx.log.info({ current: ring.current.id }, 'ledger key changed; records are judged again');
  rejudge();
}

interface Serving {
  server?: Server;
  metricsServer?: HttpServer;
  tls?: ServingCertificate;
}

/** The verification service (and /metrics), on a serving certificate from the CA. */
async function serve(ctx: VerifierContext, { ca, ledger }: { ca: Ca; ledger: RevocationLedger }, directory: Directory, into: Serving): Promise<void> {
  const { options, client, log, now } = ctx;
  const { metrics } = options;
  const ns = options.operatorNamespace;
  const v = options.verification;
  const names = v.dnsNames?.length ? v.dnsNames : ['localhost', '127.0.0.1', 'service-user-operator', `service-user-operator.${ns}.svc`, `service-user-operator.${ns}.svc.cluster.local`];
  const tls = await servingCertificateFor({ tls: v.tls, tlsFiles: v.tlsFiles, names }, { ca, log, now });
  into.tls = tls;
  const server = await startVerificationServer(verificationOptions(v, { directory, tls, caPem: ca.certPem, crl: () => ledger.crlPem, metrics, log, now }));
  into.server = server;
  log.info({ address: server.address() }, 'verification service listening (verifier: reads only)');
  const m = options.metricsServer;
  if (m && !ctx.stopping()) {
    const access = m.secure ? { secure: true as const, tls, access: new MetricsAccess(client, { log }) } : { secure: false as const };
    const served = await serveMetrics(m.address, metrics.registry, access, log);
    into.metricsServer = served;
    log.info({ address: served.address(), secure: m.secure }, 'metrics listening');
  }
}

async function closeServer(s: HttpServer | Server | undefined): Promise<void> {
  if (!s) return;
  s.closeAllConnections();
  await new Promise((r) => s.close(r));
}

export function startVerifier(options: VerifierOptions): Verifier {
  const { log, metrics } = options;
  const client = new KubeClient(options.kubeConfig, (method, path, status) => {
    const { verbs, group, resource } = requestInfo(method, path, status);
    for (const verb of verbs) metrics.apiRequests.inc({ verb, group, resource, code: String(status) });
  });
  const caName = options.caSecretName ?? 'service-user-operator-ca';
  const keyName = options.ledgerKeySecretName ?? 'service-user-operator-ledger-key';
  const trust: LedgerTrust = { ring: undefined, ...(options.adoptUnsignedLedger ? { adoptUnsigned: true } : {}) };
  let stopping = false;
  const ctx: VerifierContext = { options, client, log, now: options.now ?? Date.now, trust, stopping: () => stopping };
  const directory = new Directory(trust);
  const { serviceUsers, ledgerKey, crlMaps } = verifierCaches(ctx, keyName);
  const rejudge = () => directory.rejudge(serviceUsers.list());
  serviceUsers.onChange((type, su) => directory.observe(type, su));

  const authority = loadAuthority(ctx, caName, keyName);
  ledgerKey.onChange((type, secret) => {
    if (type !== 'DELETED') void authority.then(() => onLedgerKey(ctx, secret, rejudge), () => undefined);
  });
  crlMaps.onChange((type, cm) => {
    if (type !== 'DELETED') void authority.then(({ ledger }) => ledger.observe(cm), () => undefined);
  });
  const all = [serviceUsers, ledgerKey, crlMaps];
  for (const set of all) set.start();

  const served: Serving = {};
  const serving = authority.then(async (loaded) => {
    // What the directory saw before the ledger key was loaded was judged without it.
    rejudge();
    if (!stopping) await serve(ctx, loaded, directory, served);
  });
  let synced = false;
  const ready = Promise.all([...all.map((s) => s.synced), serving]).then(() => {
    synced = true;
  });
  // Callers that never await `ready` must not crash the process when it fails.
  ready.catch(() => undefined);
  return {
    ready,
    isReady: () => synced,
    verificationPort: () => {
      const address = served.server?.address();
      return address && typeof address === 'object' ? address.port : undefined;
    },
    async stop() {
      stopping = true;
      await Promise.all(all.map((s) => s.stop()));
      await authority.then(({ ledger }) => ledger.stop(), () => undefined);
      await serving.catch(() => undefined);
      served.tls?.stop();
      await closeServer(served.server);
      await closeServer(served.metricsServer);
      client.close();
    },
  };
}
