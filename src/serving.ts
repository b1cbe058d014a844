// What the operator serves beside reconciling, as runnables of the manager: the
// verification service (answering from the directory, which follows the ServiceUser cache)
// and Prometheus /metrics. Both run on every replica, leader or not.
//
// Invariants: one serving certificate for both, made once the CA is loaded (mounted files
// re-read as they change, or the CA's, renewed before it ends: serving-certificate.ts);
// plain metrics (loopback) start at once, secure ones and verification once the CA is there.
import type { Server as HttpServer } from 'node:http';
import type { Server } from 'node:https';
import type { ServiceUserEntry } from './api/stores.ts';
import type { Authority } from './authority/authority.ts';
import { trustOf } from './authority/authority.ts';
import type { InformerSet } from './controller/informer.ts';
import type { Manager, Runnable } from './controller/manager.ts';
import { MetricsAccess, serveMetrics } from './observability/metrics-server.ts';
import { Directory } from './verify/directory.ts';
import { startVerificationServer, verificationOptions, type VerificationSettings } from './verify/server.ts';
import { servingCertificateFor, type ServingCertificate } from './verify/serving-certificate.ts';

export interface ServingOptions {
  /** The verification service; absent: not served. */
  verification?: VerificationSettings | undefined;
  metricsServer?: { address: string; secure: boolean; dnsNames?: string[] } | undefined;
  operatorNamespace: string;
  adoptUnsignedLedger?: boolean | undefined;
  now: () => number;
}

const close = async (server: HttpServer | Server | undefined) => {
  if (!server) return;
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
};

/** The verification service and /metrics, added to the manager; returns the verification port once listening. */
export function setupServing(mgr: Manager, serviceUsers: InformerSet<ServiceUserEntry>, authority: Authority, o: ServingOptions): { verificationPort(): number | undefined } {
  const { log, metrics } = mgr;
  // Verification answers from memory: the directory follows the ServiceUser cache.
  const directory = new Directory(trustOf(authority, !!o.adoptUnsignedLedger));
  const observe = (type: 'ADDED' | 'MODIFIED' | 'DELETED', su: ServiceUserEntry) => directory.observeParsed(type, `${su.metadata.namespace}/${su.metadata.name}`, su.valid ? su.value : undefined);
  serviceUsers.onChange(observe);
  const rejudge = () => {
    for (const su of serviceUsers.list()) observe('MODIFIED', su);
  };
  authority.onRotated(rejudge);
  let tls: Promise<ServingCertificate> | undefined;
  const serving = () => {
    const state = authority.state();
    if (state.kind !== 'ready') throw new Error(`the serving certificate needs the built-in CA: ${state.reason}`);
    const v = o.verification;
    const ns = o.operatorNamespace;
    const wanted = v?.dnsNames?.length ? v.dnsNames : o.metricsServer?.dnsNames;
    const names = wanted?.length ? wanted : ['localhost', '127.0.0.1', 'service-user-operator', `service-user-operator.${ns}.svc`, `service-user-operator.${ns}.svc.cluster.local`];
    return (tls ??= servingCertificateFor({ tls: v?.tls, tlsFiles: v?.tlsFiles, names }, { ca: state.ca, log, now: o.now }));
  };

  // Plain metrics (loopback) from the start; secure ones once the serving certificate exists.
  const m = o.metricsServer;
  let metricsServer: HttpServer | undefined;
  const metricsReady = !m
    ? Promise.resolve()
    : (m.secure ? authority.ready : Promise.resolve()).then(async () => {
        if (mgr.isStopping()) return;
        const access = m.secure ? { secure: true as const, tls: await serving(), access: new MetricsAccess(mgr.client, { log }) } : { secure: false as const };
        metricsServer = await serveMetrics(m.address, metrics.registry, access, log);
        log.info({ address: metricsServer.address(), secure: m.secure }, 'metrics listening');
      });
  mgr.add<Runnable>({
    name: 'metrics',
    ready: metricsReady,
    stop: async () => {
      await metricsReady.catch(() => undefined);
      await close(metricsServer);
      (await tls?.catch(() => undefined))?.stop();
    },
  });

  let verification: Server | undefined;
  const verificationReady = authority.ready.then(async () => {
    // What the directory saw before the ledger key was loaded was judged without it.
    rejudge();
    const v = o.verification;
    const state = authority.state();
    if (!v || mgr.isStopping() || state.kind !== 'ready') return;
    const { ca, ledger } = state;
    verification = await startVerificationServer(verificationOptions(v, { directory, tls: await serving(), caPem: ca.certPem, crl: () => ledger.crlPem, metrics, log, now: o.now }));
    log.info({ address: verification.address() }, 'verification service listening');
  });
  mgr.add<Runnable>({ name: 'verification', ready: verificationReady, stop: async () => (await verificationReady.catch(() => undefined), await close(verification)) });
  return {
    verificationPort: () => {
      const address = verification?.address();
      return address && typeof address === 'object' ? address.port : undefined;
    },
  };
}
