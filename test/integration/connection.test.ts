// The operator's own kubeconfig reading against the real API server, with no client library:
// an exec credential plugin (a shell script printing an ExecCredential) carrying a
// ServiceAccount's real token, run again when the API server refuses its token (401) or when
// its expirationTimestamp is near; and the operator process itself, authenticated by a plugin
// that prints the admin's client certificate.
import diagnostics from 'node:diagnostics_channel';
import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { dump, load } from 'js-yaml';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { loadConnection } from '../../src/controller/connection.ts';
import { KubeClient } from '../../src/controller/kube.ts';
import { kubeConfig, useNamespace } from '../kube.ts';
import { api, useOperatorProcesses } from '../operator.ts';

const ns = useNamespace('connection');
const admin = new KubeClient(kubeConfig());
afterAll(() => admin.close());
const dir = mkdtempSync(path.join(tmpdir(), 'exec-plugin-'));
const v1 = 'client.authentication.k8s.io/v1';

interface AdminConfig {
  'current-context': string;
  contexts: { name: string; context: { cluster: string; user: string } }[];
  clusters: { name: string; cluster: Record<string, string> }[];
  users: { name: string; user: Record<string, string> }[];
}
const source = inject('kubeconfig');
const adminConfig = load(readFileSync(source, 'utf8')) as AdminConfig;
const adminContext = adminConfig.contexts.find((c) => c.name === adminConfig['current-context'])!.context;
const pem = (data: string | undefined, file: string | undefined) => (data ? Buffer.from(data, 'base64').toString('utf8') : file ? readFileSync(path.resolve(path.dirname(source), file), 'utf8') : undefined);

/**
 * A kubeconfig whose user is an exec plugin: `plugin.sh` prints the nth line of `tokens`
 * (n = its run count, the last line once past the end), or the credential in `credential`;
 * every run is a line in `runs`.
 */
function execKubeconfig(name: string, env: Record<string, string>): { file: string; runs: () => number } {
  const sub = mkdtempSync(path.join(dir, `${name}-`));
  const runs = path.join(sub, 'runs');
  writeFileSync(runs, '');
  writeFileSync(path.join(sub, 'plugin.sh'), `#!/bin/sh
echo run >> "$RUNS"
if [ -n "$CREDENTIAL" ]; then cat "$CREDENTIAL"; exit 0; fi
n=$(wc -l < "$RUNS")
token=$(sed -n "\${n}p" "$TOKENS"); [ -n "$token" ] || token=$(tail -n 1 "$TOKENS")
printf '{"apiVersion":"${v1}","kind":"ExecCredential","status":{"token":"%s"%s}}' "$token" "\${EXPIRES:+,\\"expirationTimestamp\\":\\"$EXPIRES\\"}"
`);
  chmodSync(path.join(sub, 'plugin.sh'), 0o755);
  const cluster = { ...adminConfig.clusters.find((c) => c.name === adminContext.cluster)!.cluster };
  const ca = pem(cluster['certificate-authority-data'], cluster['certificate-authority']);
  delete cluster['certificate-authority'];
  if (ca) cluster['certificate-authority-data'] = Buffer.from(ca).toString('base64');
  const file = path.join(sub, 'kubeconfig');
  writeFileSync(file, dump({
    apiVersion: 'v1', kind: 'Config', 'current-context': 'exec',
    contexts: [{ name: 'exec', context: { cluster: 'local', user: 'plugin' } }],
    clusters: [{ name: 'local', cluster }],
    // A path relative to the kubeconfig, as client-go resolves it.
    users: [{ name: 'plugin', user: { exec: { apiVersion: v1, command: './plugin.sh', interactiveMode: 'Never', env: Object.entries({ RUNS: runs, ...env }).map(([n, value]) => ({ name: n, value })) } } }],
  }));
  return { file, runs: () => readFileSync(runs, 'utf8').split('\n').filter(Boolean).length };
}

const whoami = async (client: KubeClient) =>
  (await client.request<{ status: { userInfo: { username: string } } }>('POST', '/apis/authentication.k8s.io/v1/selfsubjectreviews', { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' })).status.userInfo.username;

describe('an exec credential plugin, against the real API server', () => {
  let token: string;
  beforeAll(async () => {
    await admin.request('POST', `/api/v1/namespaces/${ns.name}/serviceaccounts`, { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'exec-sa' } });
    ({ status: { token } } = await admin.request<{ status: { token: string } }>('POST', `/api/v1/namespaces/${ns.name}/serviceaccounts/exec-sa/token`, { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { expirationSeconds: 3600 } }));
  });

  it('authenticates with the token it prints, runs it again when the API server refuses that token, and keeps a good one', async () => {
    const tokens = path.join(dir, 'tokens-refused');
    writeFileSync(tokens, `not-a-token-the-api-server-knows\n${token}\n`);
    const kc = execKubeconfig('refused', { TOKENS: tokens });
    const client = new KubeClient(await loadConnection(kc.file));
    try {
      expect(await whoami(client)).toBe(`system:serviceaccount:${ns.name}:exec-sa`);
      expect(kc.runs()).toBe(2); // the refused token, then the good one
      expect(await whoami(client)).toBe(`system:serviceaccount:${ns.name}:exec-sa`);
      expect(kc.runs()).toBe(2); // no expiry: kept until refused
    } finally {
      client.close();
    }
  });

  it('runs it again when the credential is about to expire, and not before', async () => {
    const tokens = path.join(dir, 'tokens-expiring');
    writeFileSync(tokens, `${token}\n`);
    const soon = execKubeconfig('soon', { TOKENS: tokens, EXPIRES: new Date(Date.now() + 5_000).toISOString().replace(/\.\d+Z$/, 'Z') });
    const later = execKubeconfig('later', { TOKENS: tokens, EXPIRES: new Date(Date.now() + 3_600_000).toISOString().replace(/\.\d+Z$/, 'Z') });
    const soonClient = new KubeClient(await loadConnection(soon.file));
    const laterClient = new KubeClient(await loadConnection(later.file));
    try {
      for (let i = 0; i < 3; i++) {
        expect(await whoami(soonClient)).toBe(`system:serviceaccount:${ns.name}:exec-sa`);
        expect(await whoami(laterClient)).toBe(`system:serviceaccount:${ns.name}:exec-sa`);
      }
      expect(soon.runs()).toBe(3); // within the margin before its expiry: every request asks again
      expect(later.runs()).toBe(1);
    } finally {
      soonClient.close();
      laterClient.close();
    }
  });

  it('fails the request on a plugin that prints no token, naming the field, rather than sending it anonymously', async () => {
    const tokens = path.join(dir, 'tokens-missing');
    const broken = execKubeconfig('broken', { TOKENS: tokens }); // no such file: sed and tail fail, the token is empty
    const client = new KubeClient(await loadConnection(broken.file));
    try {
      await expect(whoami(client)).rejects.toThrow(/users\["plugin"\]\.user\.exec\.command printed an ExecCredential that is not valid: status\.token/);
      expect(broken.runs()).toBe(1);
    } finally {
      client.close();
    }
  });
});

describe('keep-alive with client certificates handed out afresh', () => {
  it('reuses its connections when each request gets a new Buffer of the same certificate (a client-node KubeConfig)', async () => {
    // kubeConfig() is client-node's: it reads the client certificate into a new Buffer per request.
    const client = new KubeClient(kubeConfig());
    const sockets: unknown[] = [];
    const count = (message: unknown) => void sockets.push(message);
    diagnostics.subscribe('net.client.socket', count);
    try {
      for (let i = 0; i < 20; i++) await client.get(`/api/v1/namespaces/${ns.name}`);
    } finally {
      diagnostics.unsubscribe('net.client.socket', count);
      client.close();
    }
    // One TLS connection, kept alive (a few more if something else in this process dials meanwhile), never one per request.
    expect(sockets.length).toBeGreaterThanOrEqual(1);
    expect(sockets.length).toBeLessThan(5);
  });
});

describe('the operator process, authenticated by an exec plugin', () => {
  const processes = useOperatorProcesses(ns);
  const k = api(admin, ns.name);
  it('reconciles a ServiceUser with the client certificate the plugin prints', { timeout: 120_000 }, async () => {
    const user = adminConfig.users.find((u) => u.name === adminContext.user)!.user;
    const status = Object.fromEntries(
      Object.entries({ clientCertificateData: pem(user['client-certificate-data'], user['client-certificate']), clientKeyData: pem(user['client-key-data'], user['client-key']), token: user.token }).filter(([, v]) => v),
    );
    const credential = path.join(dir, 'admin-credential.json');
    writeFileSync(credential, JSON.stringify({ apiVersion: v1, kind: 'ExecCredential', status }));
    const kc = execKubeconfig('operator', { CREDENTIAL: credential });
    const output: string[] = [];
    processes.start(['--kubeconfig', kc.file, '--metrics-bind-address', '0', '--health-probe-bind-address', '0', '--verify-bind-address', '0'], { output });
    await k.createServiceUser('via-exec', { email: 'ops@example.com', accounts: ['acme'] });
    await k.waitFor('via-exec', 'Active', (o) => (o.status as { phase?: string } | undefined)?.phase === 'Active', 60_000);
    expect(kc.runs()).toBeGreaterThanOrEqual(1);
    expect(output.join('')).not.toContain('cannot load the Kubernetes connection');
  });
});
