// service-user-operator: flags and wiring. `npm start -- --help` lists the flags.
import type { Server } from 'node:http';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import { loadConnection } from './controller/connection.ts';
import { serve, probeRoutes } from './observability/http.ts';
import { metricsBindingProblem } from './observability/metrics-server.ts';
import { createLogger, logFormats } from './observability/logger.ts';
import { createMetrics } from './observability/metrics.ts';
import { startOperator } from './operator.ts';
import { parseLeaderTimings } from './controller/leader.ts';
import type { VerificationSettings } from './verify/server.ts';
import { startVerifier } from './verifier.ts';
import { copierKeyPrefixes, parseKeyPrefixes } from './api/secret-template.ts';
import { parseTrustedHops } from './verify/forwarded.ts';
import { certificatesIn } from './verify/callers.ts';
import { EmailSender } from './notify/email.ts';

const help = `service-user-operator: service users as Kubernetes resources, their credentials in Secrets.

Usage: npm start -- [flags]     (or: node src/main.ts [flags])

  --mode MODE                       all: reconcile and serve verification in one process (default; a local run);
                                    controller: reconcile only, no verification listener (the chart's
                                    and kustomize's controller Deployment); verifier: serve verification
                                    only — reads ServiceUsers, the CA and ledger key Secrets by name and the
                                    ledger's ConfigMaps, writes nothing, no leader election (the verifier
                                    Deployment, under its own ServiceAccount; docs/security.md)
  --kubeconfig PATH                 kubeconfig to use (default: $KUBECONFIG, ~/.kube/config, or in-cluster)
  --namespace NS                    watch only this namespace; repeat or comma-separate for several (default: all)
  --log-level LEVEL                 trace, debug, info, warn, error (default: info)
  --log-format FORMAT               text (a line a person reads) or json (one object a line), the same
                                    fields (default: text when stdout is a terminal, else json)
  --metrics-bind-address ADDR       Prometheus /metrics, HOST:PORT; "0" turns it off (default: :8080)
  --[no-]metrics-secure             /metrics over HTTPS (the verification service's certificate), each
                                    scrape's bearer token authenticated (TokenReview) and authorized
                                    (SubjectAccessReview, get on the nonResourceURL /metrics) (default:
                                    on); --no-metrics-secure is plain HTTP without authentication, only
                                    with a loopback --metrics-bind-address (127.0.0.1:PORT)
  --metrics-dns-names NAMES         names for the metrics certificate where no verification service
                                    shares it (--mode=controller) (default: --verify-dns-names')
  --health-probe-bind-address ADDR  /healthz and /readyz, HOST:PORT; "0" turns it off (default: :8081)
  --concurrency N                   ServiceUsers reconciled in parallel (default: 4)
  --operator-namespace NS           where the CA Secret, the ledger key Secret and the revocation ledger's
                                    ConfigMaps live (default: $POD_NAMESPACE, else service-user-operator)
  --ca-secret NAME                  the built-in CA's Secret (kubernetes.io/tls): created on first
                                    start when absent; put your own CA there to use it (default:
                                    service-user-operator-ca)
  --crl-configmap NAME              the revocation ledger's head ConfigMap; shards NAME-00…NAME-3f (default: service-user-operator-crl)
  --crl-owner-budget N              serials one ServiceUser may have on the CRL before its renewal requests
                                    slow from one a minute to one an hour; serviceuser_crl_entries and the
                                    ServiceUserCrlBudgetExceeded alert report it (default: 100)
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
  --secret-template-refused-prefixes LIST
                                    comma-separated key prefixes a ServiceUser's secretTemplate labels and
                                    annotations may not set on its Secret: they ask other controllers to copy
                                    it (default: ${copierKeyPrefixes.join(',')};
                                    "" refuses none). Keep in step with the admission policy (chart value
                                    secretTemplate.refusedKeyPrefixes)
  --secret-template-allowed-prefixes LIST
                                    when set, the only key prefixes secretTemplate may set (default: any
                                    not refused; chart value secretTemplate.allowedKeyPrefixes)
  --leader-elect                    reconcile only while holding the Lease service-user-operator in the
                                    operator namespace (run several replicas; with --mode=all all serve
                                    verification; not with --mode=verifier, which never reconciles)
  --leader-election-id ID           this replica's identity (default: $HOSTNAME plus a random suffix)
  --leader-election-lease-duration D
                                    how long a Lease holds without renewal before another replica may
                                    take it, whole seconds (default: 15s)
  --leader-election-renew-deadline D
                                    how long the leader keeps trying to renew before it gives up and
                                    exits; shorter than the lease duration (default: 10s)
  --leader-election-retry-period D  how often replicas try to take or renew the Lease; shorter than
                                    the renew deadline divided by 1.2 (default: 2s)
  --help                            this text
`;

const { values } = parseArgs({
  options: {
    mode: { type: 'string', default: 'all' },
    kubeconfig: { type: 'string' },
    namespace: { type: 'string', multiple: true },
    'log-level': { type: 'string', default: 'info' },
    'log-format': { type: 'string', default: process.stdout.isTTY ? 'text' : 'json' },
    'metrics-bind-address': { type: 'string', default: ':8080' },
    'metrics-secure': { type: 'boolean', default: true },
    'health-probe-bind-address': { type: 'string', default: ':8081' },
    concurrency: { type: 'string', default: '4' },
    'operator-namespace': { type: 'string', default: process.env.POD_NAMESPACE ?? 'service-user-operator' },
    'ca-secret': { type: 'string', default: 'service-user-operator-ca' },
    'crl-configmap': { type: 'string', default: 'service-user-operator-crl' },
    'crl-owner-budget': { type: 'string', default: '100' },
    'ledger-key-secret': { type: 'string', default: 'service-user-operator-ledger-key' },
    'adopt-unsigned-ledger': { type: 'boolean', default: false },
    'create-operator-namespace': { type: 'boolean' },
    'verify-bind-address': { type: 'string', default: ':8443' },
    'verify-dns-names': { type: 'string' },
    'metrics-dns-names': { type: 'string' },
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
    'secret-template-refused-prefixes': { type: 'string', default: copierKeyPrefixes.join(',') },
    'secret-template-allowed-prefixes': { type: 'string', default: '' },
    'leader-elect': { type: 'boolean', default: false },
    'leader-election-id': { type: 'string' },
    'leader-election-lease-duration': { type: 'string', default: '15s' },
    'leader-election-renew-deadline': { type: 'string', default: '10s' },
    'leader-election-retry-period': { type: 'string', default: '2s' },
    help: { type: 'boolean', default: false },
  },
  strict: true,
  allowNegative: true,
});

if (values.help) {
  process.stdout.write(help);
  process.exit(0);
}

const logFormat = logFormats.find((f) => f === values['log-format']);
if (!logFormat) {
  process.stderr.write(`--log-format must be ${logFormats.join(' or ')}, got "${values['log-format']}"\n`);
  process.exit(2);
}
const levels = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];
if (!levels.includes(values['log-level'])) {
  process.stderr.write(`--log-level must be one of ${levels.join(', ')}, got "${values['log-level']}"\n`);
  process.exit(2);
}
const log = createLogger(values['log-level'], process.stdout, logFormat);
const modes = ['all', 'controller', 'verifier'] as const;
const mode = modes.find((m) => m === values.mode);
if (!mode) {
  log.fatal(`--mode must be all, controller or verifier, got "${values.mode}"`);
  process.exit(2);
}
if (mode === 'verifier' && values['leader-elect']) {
  log.fatal('--leader-elect does not go with --mode=verifier: the verifier never reconciles, every replica serves');
  process.exit(2);
}
if (mode === 'verifier' && values['verify-bind-address'] === '0') {
  log.fatal('--mode=verifier serves verification: --verify-bind-address cannot be "0"');
  process.exit(2);
}
const concurrency = Number(values.concurrency);
if (!Number.isInteger(concurrency) || concurrency < 1) {
  log.fatal(`--concurrency must be a positive integer, got "${values.concurrency}"`);
  process.exit(2);
}
const leaderTimings = parseLeaderTimings({
  leaseDuration: values['leader-election-lease-duration'],
  renewDeadline: values['leader-election-renew-deadline'],
  retryPeriod: values['leader-election-retry-period'],
});
if (!leaderTimings.ok) {
  log.fatal(leaderTimings.message);
  process.exit(2);
}
const templatePrefixes = (which: 'refused' | 'allowed') => {
  const parsed = parseKeyPrefixes(`--secret-template-${which}-prefixes`, values[`secret-template-${which}-prefixes`]);
  if (!parsed.ok) {
    log.fatal(parsed.message);
    process.exit(2);
  }
  return parsed.prefixes;
};
const secretTemplateKeys = { refused: templatePrefixes('refused'), allowed: templatePrefixes('allowed') };
const metricsProblem = values['metrics-bind-address'] === '0' ? undefined : metricsBindingProblem(values['metrics-bind-address'], values['metrics-secure']);
if (metricsProblem) {
  log.fatal(metricsProblem);
  process.exit(2);
}
const crlOwnerBudget = Number(values['crl-owner-budget']);
if (!/^[0-9]+$/.test(values['crl-owner-budget']) || crlOwnerBudget < 1) {
  log.fatal(`--crl-owner-budget must be a positive integer (serials a ServiceUser may have on the CRL), got "${values['crl-owner-budget']}"`);
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
// The verification service's settings, served by --mode=all and --mode=verifier.
const verification: VerificationSettings = {
    address: values['verify-bind-address'],
    ...(values['verify-dns-names'] ? { dnsNames: values['verify-dns-names'].split(',').map((n) => n.trim()).filter(Boolean) } : {}),
    ...(values['verify-tls-cert'] && values['verify-tls-key']
      ? { tlsFiles: { certFile: values['verify-tls-cert'], keyFile: values['verify-tls-key'] } }
      : {}),
    ...(values['verify-client-ca'] ? { callerCaPems: values['verify-client-ca'].map((f) => readCaBundle('--verify-client-ca', f)) } : {}),
    ...(values['tokenreview-client-ca'] ? { tokenReviewCaPems: values['tokenreview-client-ca'].map((f) => readCaBundle('--tokenreview-client-ca', f)) } : {}),
    ...(values['tokenreview-allow-anonymous'] ? { allowAnonymousTokenReview: true } : {}),
    trustedProxyHops,
  };
const metricsServer =
  values['metrics-bind-address'] !== '0'
    ? {
        address: values['metrics-bind-address'],
        secure: values['metrics-secure'],
        ...(values['metrics-dns-names'] ? { dnsNames: values['metrics-dns-names'].split(',').map((n) => n.trim()).filter(Boolean) } : verification.dnsNames ? { dnsNames: verification.dnsNames } : {}),
      }
    : undefined;
const namespaces = (values.namespace ?? []).flatMap((n) => n.split(',')).filter(Boolean);
const operator =
  mode === 'verifier'
    ? startVerifier({
        kubeConfig,
        log,
        metrics,
        namespaces,
        operatorNamespace: values['operator-namespace'],
        caSecretName: values['ca-secret'],
        crlConfigMapName: values['crl-configmap'],
        ledgerKeySecretName: values['ledger-key-secret'],
        ...(values['adopt-unsigned-ledger'] ? { adoptUnsignedLedger: true } : {}),
        ...(metricsServer ? { metricsServer } : {}),
        verification,
      })
    : startOperator({
        kubeConfig,
        log,
        metrics,
        namespaces,
        concurrency,
        // A test-only fault, deliberately absent from --help: SUO_TEST_CRASH_POINT=after-secret-write
        // exits between a Secret write and the status write that records it
        // (test/integration/operator-process.test.ts checks the crash safety it exercises).
        crashAfterSecretWrite: process.env.SUO_TEST_CRASH_POINT === 'after-secret-write',
        operatorNamespace: values['operator-namespace'],
        ...(values['leader-elect']
          ? {
              leaderElection: {
                // $HOSTNAME is the pod's name (the chart and kustomize set it); os.hostname() is the
                // node's under hostNetwork, the same for every replica there.
                identity: values['leader-election-id'] ?? `${process.env.HOSTNAME || hostname()}_${randomBytes(4).toString('hex')}`,
                ...leaderTimings.timings,
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
        crlOwnerBudget,
        ledgerKeySecretName: values['ledger-key-secret'],
        ...(values['adopt-unsigned-ledger'] ? { adoptUnsignedLedger: true } : {}),
        secretTemplateKeys,
        // Out of a cluster (npm start on a laptop) a missing operator namespace is created; in one,
        // the operator runs in it, so it exists.
        createOperatorNamespace: values['create-operator-namespace'] ?? !process.env.KUBERNETES_SERVICE_HOST,
        ...(metricsServer ? { metricsServer } : {}),
        ...(mode === 'all' && values['verify-bind-address'] !== '0' ? { verification } : {}),
      });
operator.ready.catch((err: unknown) => {
  log.fatal({ err: err instanceof Error ? err.message : String(err) }, 'cannot start');
  process.exit(1);
});
const servers: Server[] = [];
if (values['health-probe-bind-address'] !== '0') servers.push(await serve(values['health-probe-bind-address'], probeRoutes(operator.isReady)));
log.info({ server: kubeConfig.getCurrentCluster()?.server, node: process.version, mode }, 'service-user-operator started');

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
