// TokenReview throughput and latency: the operator's verification endpoint (service-user
// tokens) versus the kube-apiserver's own TokenReview of ServiceAccount tokens. Same machine,
// same run, same load generator (autocannon, in this process; the operator runs as its own
// process, as in production). Each side's caller authenticates as a kube-apiserver's webhook
// does: with a client certificate (the operator's from a --tokenreview-client-ca CA).
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import autocannon from 'autocannon';
import { repoRoot } from '../test/cluster/controlplane.ts';
import { withControlPlane } from './cluster.ts';
import { freePort } from '../test/net.ts';
import { callerCa } from '../test/callers.ts';
import { bundleOperator } from '../build/bundle.ts';
import { chartRuntime } from '../test/image/runtime.ts';


async function load(url: string, token: string, tlsOptions: object, seconds: number) {
  const review = JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token } });
  const result = await autocannon({
    url,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: review,
    connections: 16,
    duration: seconds,
    tlsOptions,
  });
  return {
    requestsPerSecond: Math.round(result.requests.average),
    latencyMs: { p50: result.latency.p50, p90: result.latency.p90, p99: result.latency.p99 },
    requests: result.requests.total,
    errors: result.errors + result.timeouts,
    non2xx: result.non2xx,
  };
}

/** One TokenReview, to check the answer is "authenticated" before timing thousands. */
function review(url: string, token: string, tls: object): Promise<{ status?: { authenticated?: boolean } }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { method: 'POST', headers: { 'content-type': 'application/json' }, rejectUnauthorized: false, ...tls }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve(JSON.parse(body) as { status?: { authenticated?: boolean } }));
    });
    req.on('error', reject);
    req.end(JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token } }));
  });
}

export function benchTokenReview(seconds = 10) {
  return withControlPlane('tokenreview', ['service-user-operator', 'bench'], async ({ controlPlane, kc, client }) => {
    const port = await freePort();
    const dir = mkdtempSync(path.join(tmpdir(), 'bench-tokenreview-callers-'));
    const webhookCa = await callerCa('bench webhook CA');
    const webhook = await webhookCa.issue('kube-apiserver');
    const webhookTls = { cert: webhook.certPem, key: webhook.keyPem };
    writeFileSync(path.join(dir, 'webhook-ca.crt'), webhookCa.certPem);
    let operator: ReturnType<typeof spawn> | undefined;
    const chart = chartRuntime();
    let logBytes = 0;
    try {
      // As the chart runs it: the bundle, the chart's Node options and log level, its log read
      // through a pipe as a container runtime reads it (the bytes counted: a log line a request shows here).
      await bundleOperator();
      operator = spawn(process.execPath, [
        // BENCH_CPU_PROF=DIR: a V8 CPU profile of the operator, written when it stops.
        ...(process.env.BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(process.env.BENCH_CPU_PROF)}`] : []),
        ...chart.nodeFlags,
        path.join(repoRoot, 'dist/main.js'), '--kubeconfig', controlPlane.kubeconfig, '--log-level', chart.logLevel, '--verify-bind-address', `127.0.0.1:${port}`,
        '--tokenreview-client-ca', path.join(dir, 'webhook-ca.crt'), '--metrics-bind-address', '0', '--health-probe-bind-address', '0',
      ], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...chart.env, NODE_OPTIONS: chart.nodeOptions } });
      operator.stdout!.on('data', (c: Buffer) => (logBytes += c.length));
      operator.stderr!.on('data', (c: Buffer) => (logBytes += c.length));
      await client.request('POST', '/apis/serviceusers.dev/v1alpha1/namespaces/bench/serviceusers', {
        apiVersion: 'serviceusers.dev/v1alpha1', kind: 'ServiceUser', metadata: { name: 'bench' }, spec: { email: 'bench@example.com', accounts: ['bench'] },
      });
      let token = '';
      for (let i = 0; !token; i++) {
        if (i > 300) throw new Error('the ServiceUser did not get a token');
        await new Promise((r) => setTimeout(r, 100));
        const secret = await client.get<{ data?: Record<string, string> }>('/api/v1/namespaces/bench/secrets/bench-credentials').catch(() => undefined);
        if (secret?.data?.token) token = Buffer.from(secret.data.token, 'base64').toString();
      }
      // The token is recorded a moment after it is written.
      for (let i = 0; ; i++) {
        const su = await client.get<{ status?: { phase?: string } }>('/apis/serviceusers.dev/v1alpha1/namespaces/bench/serviceusers/bench');
        if (su.status?.phase === 'Active') break;
        if (i > 300) throw new Error('the ServiceUser did not become Active');
        await new Promise((r) => setTimeout(r, 100));
      }
      await client.request('POST', '/api/v1/namespaces/bench/serviceaccounts', { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'bench' } });
      const request = await client.request<{ status: { token: string } }>('POST', '/api/v1/namespaces/bench/serviceaccounts/bench/token', {
        apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { expirationSeconds: 3600 },
      });
      const user = kc.getCurrentUser()!;
      const admin = { cert: Buffer.from(user.certData!, 'base64'), key: Buffer.from(user.keyData!, 'base64') };

      // Both answers must be "authenticated" or the comparison means nothing.
      const operatorUrl = `https://127.0.0.1:${port}/apis/authentication.k8s.io/v1/tokenreviews`;
      const apiserverUrl = `${controlPlane.server}/apis/authentication.k8s.io/v1/tokenreviews`;
      for (const [url, t, tls] of [[operatorUrl, token, webhookTls], [apiserverUrl, request.status.token, admin]] as const) {
        const answer = await review(url, t, tls);
        if (answer.status?.authenticated !== true) throw new Error(`${url} did not authenticate the token: ${JSON.stringify(answer)}`);
      }
      await load(operatorUrl, token, webhookTls, 2);
      await load(apiserverUrl, request.status.token, admin, 2);
      // Three rounds, alternating which side goes first: the machine's noise lands on both.
      const rounds: { ours: Awaited<ReturnType<typeof load>>; theirs: Awaited<ReturnType<typeof load>> }[] = [];
      for (let r = 0; r < 3; r++) {
        const first = r % 2 === 0 ? await load(operatorUrl, token, webhookTls, seconds) : await load(apiserverUrl, request.status.token, admin, seconds);
        const second = r % 2 === 0 ? await load(apiserverUrl, request.status.token, admin, seconds) : await load(operatorUrl, token, webhookTls, seconds);
        rounds.push(r % 2 === 0 ? { ours: first, theirs: second } : { ours: second, theirs: first });
      }
      const round2 = (x: number) => Math.round(x * 100) / 100;
      const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
      const throughput = rounds.map((x) => round2(x.ours.requestsPerSecond / x.theirs.requestsPerSecond));
      const p99 = rounds.map((x) => round2(x.theirs.latencyMs.p99 / Math.max(x.ours.latencyMs.p99, 1)));
      return {
        name: 'tokenreview',
        operatorLogLevel: chart.logLevel,
        operatorLogBytes: logBytes,
        connections: 16,
        seconds,
        rounds: rounds.length,
        kubernetes: controlPlane.version,
        operator: rounds.map((x) => x.ours),
        kubeApiserverServiceAccountTokens: rounds.map((x) => x.theirs),
        ratio: {
          throughputOperatorOverApiserver: { median: median(throughput), runs: throughput },
          p99ApiserverOverOperator: { median: median(p99), runs: p99 },
          target: 3,
          met: median(throughput) >= 3,
        },
      };
    } finally {
      if (operator && operator.exitCode === null) {
        operator.kill('SIGTERM');
        await once(operator, 'exit');
      }
      rmSync(dir, { recursive: true, force: true });
    }
  });
}
