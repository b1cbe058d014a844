// service-user-operator: flags and wiring. `npm start -- --help` lists the flags.
import type { Server } from 'node:http';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import { loadConnection } from './controller/connection.ts';
import { serve, metricsRoutes, probeRoutes } from './observability/http.ts';
import { createLogger, logFormats, type LogFormat } from './observability/logger.ts';
import { createMetrics } from './observability/metrics.ts';
import { startOperator } from './operator.ts';
import { parseTrustedHops } from './verify/forwarded.ts';
import { certificatesIn } from './verify/server.ts';
import { EmailSender } from './notify/email.ts';

const help = `service-user-operator: service users as Kubernetes resources, their credentials in Secrets.

Usage: npm start -- [flags]     (or: node src/main.ts [flags])

  --kubeconfig PATH                 kubeconfig to use (default: $KUBECONFIG, ~/.kube/config, or in-cluster)
  --namespace NS                    watch only this namespace; repeat or comma-separate for several (default: all)
  --log-level LEVEL                 trace, debug, info, warn, error (default: info)
  --log-format FORMAT               text (a line a person reads) or json (one object a line), the same
                                    fields (default: text when stdout is a terminal, else json)
  --metrics-bind-address ADDR       Prometheus /metrics, HOST:PORT; "0" turns it off (default: :8080)
  --health-probe-bind-address ADDR  /healthz and /readyz, HOST:PORT; "0" turns it off (default: :8081)
  --concurrency N                   ServiceUsers reconciled in parallel (default: 4)
  --operator-namespace NS           where the CA Secret and the CRL ConfigMap live
                                    (default: $POD_NAMESPACE, else service-user-operator)
  --ca-secret NAME                  the built-in CA's Secret (kubernetes.io/tls): created on first
                                    start when absent; put your own CA there to use it (default:
                                    service-user-operator-ca)
  --crl-configmap NAME              the revocation ledger's head ConfigMap; shards NAME-00…NAME-3f (default: service-user-operator-crl)
  --ledger-key-secret NAME          the key that MACs token records and status (created on first start
                                    when absent; default: service-user-operator-ledger-key)
  --[no-]create-operator-namespace  create the operator namespace when it does not exist (default: on
                                    outside a cluster, for a local run; off in one)
  --adopt-unsigned-ledger           upgrade only: honour and re-MAC records written before the ledger
                                    was MAC'd (docs/install.md); turn it off once every ServiceUser is Ready
  --verify-bind-address ADDR        the verification service (HTTPS), HOST:PORT; "0" turns it off (default: :8443)
  --verify-dns-names NAMES          comma-separated DNS names and IPs for its certificate, issued by the
                                    built-in CA (default: localhost, 127.0.0.1 and the in-cluster Service names)
  --verify-tls-cert PATH            a mounted serving certificate instead (with --verify-tls-key)
  --verify-tls-key PATH
  --verify-client-ca PATH           a CA (PEM bundle) whose client certificates may call introspect, authorize
                                    and check, platform-wide: every account (repeatable; service users'
                                    own certificates need no flag and see only their verifier accounts)
  --tokenreview-client-ca PATH      a CA (PEM bundle) whose client certificates may call TokenReview — your
                                    kube-apiservers' webhook certificate — platform-wide (repeatable)
  --tokenreview-allow-anonymous     answer TokenReview for anyone who can reach the service (labs only:
                                    it tells whoever holds a leaked token whose it is)
  --trusted-proxy-hops N            proxies in front of the gateway whose X-Forwarded-For entries /v1/check
                                    trusts, as Envoy's xff_num_trusted_hops: 0 takes the entry the gateway
                                    appended, N the entry N+1 from the right (default: 0)
  --smtp-host HOST                  send notices to each ServiceUser's spec.email through this SMTP server
                                    (expiry warning, expired, disabled/enabled, token rotated/revoked,
                                    certificate renewed/refused); without it no mail is sent
  --smtp-port PORT                  default: 587 (465 with --smtp-security tls)
  --smtp-security MODE              starttls (required, never downgraded; default), tls (implicit), or
                                    none (plain: a relay on loopback only)
  --smtp-from ADDRESS               the From address (default: service-user-operator@localhost)
  --smtp-ca PATH                    a CA to trust for the SMTP server's certificate (repeatable)
                                    Credentials, if the server needs them: $SMTP_USERNAME and
                                    $SMTP_PASSWORD (from a Secret; the chart wires them)
  --email-notices on|off            the global switch (default: on when --smtp-host is set); a
                                    ServiceUser opts out with spec.notifications.email: false
  --leader-elect                    reconcile only while holding the Lease service-user-operator in the
                                    operator namespace (run several replicas; all serve verification)
  --leader-election-id ID           this replica's identity (default: $HOSTNAME plus a random suffix)
  --help                            this text

Environment: SUO_TEST_CRASH_POINT=after-secret-write makes the process exit between a Secret
write and the status write that records it (a fault for the crash-safety test; never set it
in production).
`;

const { values } = parseArgs({
  options: {
    kubeconfig: { type: 'string' },
    namespace: { type: 'string', multiple: true },
    'log-level': { type: 'string', default: 'info' },
    'log-format': { type: 'string', default: process.stdout.isTTY ? 'text' : 'json' },
    'metrics-bind-address': { type: 'string', default: ':8080' },
    'health-probe-bind-address': { type: 'string', default: ':8081' },
    concurrency: { type: 'string', default: '4' },
    'operator-namespace': { type: 'string', default: process.env.POD_NAMESPACE ?? 'service-user-operator' },
    'ca-secret': { type: 'string', default: 'service-user-operator-ca' },
    'crl-configmap': { type: 'string', default: 'service-user-operator-crl' },
    'ledger-key-secret': { type: 'string', default: 'service-user-operator-ledger-key' },
    'adopt-unsigned-ledger': { type: 'boolean', default: false },
    'create-operator-namespace': { type: 'boolean' },
    'verify-bind-address': { type: 'string', default: ':8443' },
    'verify-dns-names': { type: 'string' },
    'verify-tls-cert': { type: 'string' },
    'verify-tls-key': { type: 'string' },
    'verify-client-ca': { type: 'string', multiple: true },
    'tokenreview-client-ca': { type: 'string', multiple: true },
    'tokenreview-allow-anonymous': { type: 'boolean', default: false },
    'trusted-proxy-hops': { type: 'string', default: '0' },
    'smtp-host': { type: 'string' },
    'smtp-port': { type: 'string' },
    'smtp-security': { type: 'string', default: 'starttls' },
    'smtp-from': { type: 'string', default: 'service-user-operator@localhost' },
    'smtp-ca': { type: 'string', multiple: true },
    'email-notices': { type: 'string', default: 'on' },
    'leader-elect': { type: 'boolean', default: false },
    'leader-election-id': { type: 'string' },
    help: { type: 'boolean', default: false },
  },
  strict: true,
  allowNegative: true,
});

if (values.help) {
  process.stdout.write(help);
  process.exit(0);
}

if (!(logFormats as readonly string[]).includes(values['log-format'])) {
  process.stderr.write(`--log-format must be ${logFormats.join(' or ')}, got "${values['log-format']}"\n`);
  process.exit(2);
}
const levels = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];
if (!levels.includes(values['log-level'])) {
  process.stderr.write(`--log-level must be one of ${levels.join(', ')}, got "${values['log-level']}"\n`);
  process.exit(2);
}
const log = createLogger(values['log-level'], process.stdout, values['log-format'] as LogFormat);
const concurrency = Number(values.concurrency);
if (!Number.isInteger(concurrency) || concurrency < 1) {
  log.fatal(`--concurrency must be a positive integer, got "${values.concurrency}"`);
  process.exit(2);
}
if (!!values['verify-tls-cert'] !== !!values['verify-tls-key']) {
  log.fatal('--verify-tls-cert and --verify-tls-key go together');
  process.exit(2);
}
const readPem = (flag: string, file: string) => {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    log.fatal(`${flag} ${file}: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(2);
  }
};
/** A CA flag's file: PEM with at least one certificate, or a fatal error naming the flag. */
const readCaBundle = (flag: string, file: string) => {
  const pem = readPem(flag, file);
  try {
    if (!certificatesIn(pem).length) throw new Error('no PEM certificate in it');
  } catch (err) {
    log.fatal(`${flag} ${file}: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(2);
  }
  return pem;
};
let trustedProxyHops: number;
try {
  trustedProxyHops = parseTrustedHops(values['trusted-proxy-hops']);
} catch (err) {
  log.fatal(err instanceof Error ? err.message : String(err));
  process.exit(2);
}
const security = values['smtp-security'];
if (security !== 'starttls' && security !== 'tls' && security !== 'none') {
  log.fatal(`--smtp-security must be starttls, tls or none, got "${security}"`);
  process.exit(2);
}
if (values['email-notices'] !== 'on' && values['email-notices'] !== 'off') {
  log.fatal(`--email-notices must be on or off, got "${values['email-notices']}"`);
  process.exit(2);
}
const smtpPort = Number(values['smtp-port'] ?? (security === 'tls' ? 465 : 587));
if (!Number.isInteger(smtpPort) || smtpPort < 1 || smtpPort > 65535) {
  log.fatal(`--smtp-port must be a port number, got "${values['smtp-port']}"`);
  process.exit(2);
}
if (!!process.env.SMTP_USERNAME !== !!process.env.SMTP_PASSWORD) {
  log.fatal('SMTP_USERNAME and SMTP_PASSWORD go together');
  process.exit(2);
}
const emailSender =
  values['smtp-host'] && values['email-notices'] === 'on'
    ? new EmailSender({
        host: values['smtp-host'],
        port: smtpPort,
        security,
        from: values['smtp-from'],
        auth: process.env.SMTP_USERNAME ? { user: process.env.SMTP_USERNAME, pass: process.env.SMTP_PASSWORD ?? '' } : undefined,
        caPems: values['smtp-ca']?.map((f) => readPem('--smtp-ca', f)),
      })
    : undefined;
const kubeConfig = await loadConnection(values.kubeconfig).catch((err: unknown) => {
  log.fatal(`cannot load the Kubernetes connection: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(2);
});

const metrics = createMetrics();
const operator = startOperator({
  kubeConfig,
  log,
  metrics,
  namespaces: (values.namespace ?? []).flatMap((n) => n.split(',')).filter(Boolean),
  concurrency,
  crashAfterSecretWrite: process.env.SUO_TEST_CRASH_POINT === 'after-secret-write',
  operatorNamespace: values['operator-namespace'],
  ...(values['leader-elect']
    ? {
        leaderElection: {
          // $HOSTNAME is the pod's name (the chart and kustomize set it); os.hostname() is the
          // node's under hostNetwork, the same for every replica there.
          identity: values['leader-election-id'] ?? `${process.env.HOSTNAME || hostname()}_${randomBytes(4).toString('hex')}`,
          onLost: () => {
            // As client-go does: a replica that lost the lease may hold stale decisions; restart.
            log.fatal('lost the leader lease; exiting so that a fresh start follows');
            process.exit(1);
          },
        },
      }
    : {}),
  ...(emailSender ? { notices: { sender: emailSender } } : {}),
  caSecretName: values['ca-secret'],
  crlConfigMapName: values['crl-configmap'],
  ledgerKeySecretName: values['ledger-key-secret'],
  ...(values['adopt-unsigned-ledger'] ? { adoptUnsignedLedger: true } : {}),
  // Out of a cluster (npm start on a laptop) a missing operator namespace is created; in one,
  // the operator runs in it, so it exists.
  createOperatorNamespace: values['create-operator-namespace'] ?? !process.env.KUBERNETES_SERVICE_HOST,
  ...(values['verify-bind-address'] !== '0'
    ? {
        verification: {
          address: values['verify-bind-address'],
          ...(values['verify-dns-names'] ? { dnsNames: values['verify-dns-names'].split(',').map((n) => n.trim()).filter(Boolean) } : {}),
          ...(values['verify-tls-cert'] && values['verify-tls-key']
            ? { tls: { certPem: readPem('--verify-tls-cert', values['verify-tls-cert']), keyPem: readPem('--verify-tls-key', values['verify-tls-key']) } }
            : {}),
          ...(values['verify-client-ca'] ? { callerCaPems: values['verify-client-ca'].map((f) => readCaBundle('--verify-client-ca', f)) } : {}),
          ...(values['tokenreview-client-ca'] ? { tokenReviewCaPems: values['tokenreview-client-ca'].map((f) => readCaBundle('--tokenreview-client-ca', f)) } : {}),
          ...(values['tokenreview-allow-anonymous'] ? { allowAnonymousTokenReview: true } : {}),
          trustedProxyHops,
        },
      }
    : {}),
});
operator.ready.catch((err: unknown) => {
  log.fatal({ err: err instanceof Error ? err.message : String(err) }, 'cannot start');
  process.exit(1);
});
const servers: Server[] = [];
if (values['metrics-bind-address'] !== '0') servers.push(await serve(values['metrics-bind-address'], metricsRoutes(metrics.registry)));
if (values['health-probe-bind-address'] !== '0') servers.push(await serve(values['health-probe-bind-address'], probeRoutes(operator.isReady)));
log.info({ server: kubeConfig.getCurrentCluster()?.server, node: process.version }, 'service-user-operator started');

let stopping = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping');
    void operator.stop().then(() => {
      for (const s of servers) s.close();
      emailSender?.close();
      log.info('stopped');
      process.exit(0);
    });
  });
}
