// The API server connection, read without a client library: kubeconfigs (merged as kubectl
// merges them), exec credential plugins (real scripts, run as the operator runs them), and
// in-cluster. Against the real API server: test/integration/connection.test.ts.
import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import type { RequestOptions } from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { dump } from 'js-yaml';
import { afterEach, describe, expect, it } from 'vitest';
import { inCluster, inClusterProblem, loadConnection, mergeKubeconfigs, connectionFor, readKubeconfig } from '../../src/controller/connection.ts';
import { ExecCredentials, runExecPlugin, type ExecConfig, type ExecCredential } from '../../src/controller/exec-credential.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'connection-'));
const b64 = (s: string) => Buffer.from(s).toString('base64');
const simpleKubeconfig = (file: string) => {
  const config = readKubeconfig(file);
  return connectionFor(config, config['current-context'], file);
};
function kubeconfig(name: string, cluster: object, user: object): string {
  const file = path.join(dir, name);
  writeFileSync(file, dump({
    apiVersion: 'v1', kind: 'Config', 'current-context': 'c',
    contexts: [{ name: 'other', context: { cluster: 'x', user: 'x' } }, { name: 'c', context: { cluster: 'k', user: 'u' } }],
    clusters: [{ name: 'k', cluster: { server: 'https://127.0.0.1:6443', ...cluster } }],
    users: [{ name: 'u', user }],
  }));
  return file;
}
const applied = async (c: { applyToHTTPSOptions(o: RequestOptions): Promise<void> }) => {
  const o: RequestOptions = {};
  await c.applyToHTTPSOptions(o);
  return o;
};

describe('simpleKubeconfig', () => {
  it('reads inline certificates and keys of the current context', async () => {
    const c = simpleKubeconfig(kubeconfig('inline', { 'certificate-authority-data': b64('CA') }, { 'client-certificate-data': b64('CERT'), 'client-key-data': b64('KEY') }))!;
    expect(c.getCurrentCluster()?.server).toBe('https://127.0.0.1:6443');
    const o = await applied(c);
    expect([String(o.ca), String(o.cert), String(o.key)]).toEqual(['CA', 'CERT', 'KEY']);
    expect(o.headers).toBeUndefined();
  });
  it('reads files relative to the kubeconfig, a token, and a token file', async () => {
    writeFileSync(path.join(dir, 'ca.pem'), 'CAFILE');
    writeFileSync(path.join(dir, 'sa-token'), 'from-file\n');
    expect(String((await applied(simpleKubeconfig(kubeconfig('files', { 'certificate-authority': 'ca.pem' }, { token: 'abc' }))!)).ca)).toBe('CAFILE');
    expect((await applied(simpleKubeconfig(kubeconfig('token', {}, { token: 'abc' }))!)).headers).toEqual({ authorization: 'Bearer abc' });
    expect((await applied(simpleKubeconfig(kubeconfig('tokenfile', { 'insecure-skip-tls-verify': true }, { tokenFile: 'sa-token' }))!))).toMatchObject({
      headers: { authorization: 'Bearer from-file' }, rejectUnauthorized: false,
    });
  });
  it('refuses the legacy auth-provider and proxy-url, naming the field and what to use instead', () => {
    expect(() => simpleKubeconfig(kubeconfig('gcp', {}, { 'auth-provider': { name: 'gcp', config: {} } }))).toThrow(
      /users\["u"\]\.user\.auth-provider \(gcp\) is not supported: .*removed .* 1\.26\. Use an exec credential plugin \(users\[\]\.user\.exec\).*gke-gcloud-auth-plugin/,
    );
    expect(() => simpleKubeconfig(kubeconfig('proxy', { 'proxy-url': 'http://proxy:3128' }, { token: 'a' }))).toThrow(/clusters\["k"\]\.cluster\.proxy-url is not supported/);
  });
  it('sends basic auth, tls-server-name and the kubeconfig user\'s impersonation as kubectl does', async () => {
    const o = await applied(simpleKubeconfig(kubeconfig('misc', { 'tls-server-name': 'kubernetes.default' }, { username: 'u', password: 'p', as: 'jane', 'as-groups': ['a', 'b'] })));
    expect(o).toMatchObject({ auth: 'u:p', servername: 'kubernetes.default', headers: { 'Impersonate-User': 'jane', 'Impersonate-Group': ['a', 'b'] } });
  });
  it('names a missing context, cluster or server', () => {
    const config = readKubeconfig(kubeconfig('ctx', {}, { token: 'a' }));
    expect(() => connectionFor(config, 'nope', 'F')).toThrow('context "nope" not found in F (contexts: other, c)');
    expect(() => connectionFor(config, 'other', 'F')).toThrow('context "other" names cluster "x", which is not in F');
    expect(() => connectionFor(config, undefined, 'F')).toThrow(/no current-context in F/);
  });
  it('names a kubeconfig field of the wrong shape and what it must be', () => {
    const file = path.join(dir, 'bad-shape');
    writeFileSync(file, dump({ clusters: { k: {} }, users: [{ name: 'u', user: 'token' }] }));
    expect(() => readKubeconfig(file)).toThrow(`kubeconfig ${file}: clusters: must be a list; users.0.user: must be a mapping`);
  });
});

describe('several kubeconfig files', () => {
  it('merge as kubectl merges them: the first to set a name or current-context wins, paths relative to their own file', async () => {
    const a = mkdtempSync(path.join(tmpdir(), 'kc-a-'));
    const b = mkdtempSync(path.join(tmpdir(), 'kc-b-'));
    writeFileSync(path.join(b, 'ca.pem'), 'CA-OF-B');
    writeFileSync(path.join(a, 'config'), dump({ 'current-context': 'dev', contexts: [{ name: 'dev', context: { cluster: 'k', user: 'u' } }], users: [{ name: 'u', user: { token: 'from-a' } }] }));
    writeFileSync(path.join(b, 'config'), dump({
      'current-context': 'prod',
      contexts: [{ name: 'dev', context: { cluster: 'other', user: 'other' } }],
      clusters: [{ name: 'k', cluster: { server: 'https://b.example:6443', 'certificate-authority': 'ca.pem' } }],
      users: [{ name: 'u', user: { token: 'from-b' } }],
    }));
    const merged = mergeKubeconfigs([path.join(a, 'config'), path.join(b, 'config')]);
    expect(merged['current-context']).toBe('dev');
    const saved = process.env.KUBECONFIG;
    process.env.KUBECONFIG = [path.join(a, 'config'), path.join(a, 'absent'), path.join(b, 'config')].join(path.delimiter);
    try {
      const c = await loadConnection();
      expect(c.getCurrentCluster()?.server).toBe('https://b.example:6443');
      const o = await applied(c);
      expect([String(o.ca), o.headers]).toEqual(['CA-OF-B', { authorization: 'Bearer from-a' }]);
      process.env.KUBECONFIG = path.join(a, 'absent');
      await expect(loadConnection()).rejects.toThrow(/KUBECONFIG=.*absent names no file that exists/);
    } finally {
      if (saved === undefined) delete process.env.KUBECONFIG;
      else process.env.KUBECONFIG = saved;
    }
  });
});

describe('exec credential plugins', () => {
  const v1 = 'client.authentication.k8s.io/v1';
  const where = 'users["u"].user.exec';
  /** A real plugin: a shell script printing what it is given; its runs and its request go to files. */
  function plugin(name: string, body: string): string {
    const file = path.join(dir, name);
    writeFileSync(file, `#!/bin/sh\necho run >> "${file}.runs"\nprintf '%s' "$KUBERNETES_EXEC_INFO" > "${file}.request"\n${body}\n`);
    chmodSync(file, 0o755);
    return file;
  }
  const credential = (status: object, apiVersion = v1) => `cat <<'EOF'\n${JSON.stringify({ apiVersion, kind: 'ExecCredential', status })}\nEOF`;

  it('sends the token the plugin prints, with the args and env it is configured with, and the cluster when asked', async () => {
    const file = plugin('token.sh', `[ "$1" = "--flag" ] && [ "$EXTRA" = "yes" ] || exit 7\n${credential({ token: 'exec-token' })}`);
    const c = simpleKubeconfig(kubeconfig('exec', { 'certificate-authority-data': b64('CA') }, {
      exec: { apiVersion: v1, command: file, args: ['--flag'], env: [{ name: 'EXTRA', value: 'yes' }], interactiveMode: 'Never', provideClusterInfo: true },
    }));
    expect((await applied(c)).headers).toEqual({ authorization: 'Bearer exec-token' });
    expect(JSON.parse(readFileSync(`${file}.request`, 'utf8'))).toEqual({
      apiVersion: v1, kind: 'ExecCredential', spec: { interactive: false, cluster: { server: 'https://127.0.0.1:6443', 'certificate-authority-data': b64('CA') } },
    });
    await applied(c);
    expect(readFileSync(`${file}.runs`, 'utf8').split('\n').filter(Boolean)).toHaveLength(1); // no expiry: kept until refused
    expect(c.refused?.()).toBe(true);
    await applied(c);
    expect(readFileSync(`${file}.runs`, 'utf8').split('\n').filter(Boolean)).toHaveLength(2);
  });

  it('uses the client certificate and key the plugin prints, over the kubeconfig\'s own', async () => {
    const file = plugin('cert.sh', credential({ clientCertificateData: 'EXEC-CERT', clientKeyData: 'EXEC-KEY' }));
    const o = await applied(simpleKubeconfig(kubeconfig('exec-cert', {}, { 'client-certificate-data': b64('CERT'), 'client-key-data': b64('KEY'), exec: { apiVersion: v1, command: file } })));
    expect([String(o.cert), String(o.key), o.headers]).toEqual(['EXEC-CERT', 'EXEC-KEY', undefined]);
  });

  it('says what went wrong when the plugin fails, is missing, or prints something else, naming the field', async () => {
    const run = (exec: Partial<ExecConfig>) => runExecPlugin({ apiVersion: v1, command: 'true', ...exec }, { where });
    await expect(run({ command: 'no-such-plugin-here', installHint: 'install it with: brew install no-such-plugin' })).rejects.toThrow(
      'users["u"].user.exec.command "no-such-plugin-here" was not found on PATH (install it with: brew install no-such-plugin)',
    );
    await expect(run({ command: plugin('fails.sh', 'echo "login expired: run login" >&2; exit 3') })).rejects.toThrow(/exec\.command ".*fails\.sh" exited with code 3: login expired: run login/);
    await expect(run({ command: plugin('prose.sh', 'echo hello') })).rejects.toThrow(/printed no ExecCredential JSON on stdout \(it printed "hello"/);
    await expect(run({ command: plugin('v1beta1.sh', credential({ token: 't' }, 'client.authentication.k8s.io/v1beta1')) })).rejects.toThrow(/exec\.apiVersion is client\.authentication\.k8s\.io\/v1, but the plugin answered with .*v1beta1/);
    await expect(run({ command: plugin('half.sh', credential({ clientCertificateData: 'C' })) })).rejects.toThrow('status.clientCertificateData without status.clientKeyData');
    await expect(run({ command: plugin('empty.sh', credential({})) })).rejects.toThrow('neither status.token nor status.clientCertificateData');
    await expect(runExecPlugin({ apiVersion: v1, command: plugin('hangs.sh', 'sleep 30') }, { where, timeoutMs: 200 })).rejects.toThrow(/did not finish in 0\.2 s and was killed/);
    await expect(run({ interactiveMode: 'Always' })).rejects.toThrow(/interactiveMode is Always, but this process has no terminal/);
    expect(() => simpleKubeconfig(kubeconfig('alpha', {}, { exec: { apiVersion: 'client.authentication.k8s.io/v1alpha1', command: 'x' } }))).toThrow(
      /users\["u"\]\.user\.exec\.apiVersion: must be one of client\.authentication\.k8s\.io\/v1, client\.authentication\.k8s\.io\/v1beta1/,
    );
  });

  it('runs a plugin named by a path relative to the kubeconfig, from that directory', async () => {
    const sub = mkdtempSync(path.join(dir, 'rel-'));
    writeFileSync(path.join(sub, 'p.sh'), `#!/bin/sh\n${credential({ token: 'relative' })}\n`);
    chmodSync(path.join(sub, 'p.sh'), 0o755);
    const file = path.join(sub, 'config');
    writeFileSync(file, dump({ 'current-context': 'c', contexts: [{ name: 'c', context: { cluster: 'k', user: 'u' } }], clusters: [{ name: 'k', cluster: { server: 'https://x' } }], users: [{ name: 'u', user: { exec: { apiVersion: v1, command: './p.sh' } } }] }));
    expect((await applied(simpleKubeconfig(file))).headers).toEqual({ authorization: 'Bearer relative' });
  });

  it('reuses a credential until a little before its expirationTimestamp, and shares one run among waiting requests', async () => {
    let now = Date.parse('2027-01-01T00:00:00Z');
    let runs = 0;
    const run = (): Promise<ExecCredential> => {
      runs++;
      return new Promise((resolve) => setImmediate(() => resolve({ token: `t${runs}`, expiresAt: now + 60_000 })));
    };
    const creds = new ExecCredentials({ apiVersion: v1, command: 'x' }, { where }, run, () => now);
    const [a, b] = await Promise.all([creds.get(), creds.get()]);
    expect([a.token, b.token, runs]).toEqual(['t1', 't1', 1]);
    now += 49_000;
    expect((await creds.get()).token).toBe('t1');
    now += 2_000; // 9 s left: under the 10 s margin
    expect((await creds.get()).token).toBe('t2');
    creds.forget();
    expect((await creds.get()).token).toBe('t3');
  });
});

describe('inCluster', () => {
  const saved = { ...process.env };
  afterEach(() => {
    process.env.KUBERNETES_SERVICE_HOST = saved.KUBERNETES_SERVICE_HOST;
    process.env.KUBERNETES_SERVICE_PORT = saved.KUBERNETES_SERVICE_PORT;
    if (saved.KUBERNETES_SERVICE_HOST === undefined) delete process.env.KUBERNETES_SERVICE_HOST;
    if (saved.KUBERNETES_SERVICE_PORT === undefined) delete process.env.KUBERNETES_SERVICE_PORT;
  });
  it('uses the service account token and CA, and the service address (IPv6 bracketed)', async () => {
    const sa = mkdtempSync(path.join(tmpdir(), 'sa-'));
    writeFileSync(path.join(sa, 'token'), 'sa-token');
    writeFileSync(path.join(sa, 'ca.crt'), 'SACA');
    process.env.KUBERNETES_SERVICE_HOST = 'fd00::1';
    process.env.KUBERNETES_SERVICE_PORT = '443';
    const c = inCluster(sa)!;
    expect(c.getCurrentCluster()?.server).toBe('https://[fd00::1]:443');
    const o = await applied(c);
    expect([String(o.ca), o.headers]).toEqual(['SACA', { authorization: 'Bearer sa-token' }]);
    delete process.env.KUBERNETES_SERVICE_HOST;
    expect(inCluster(sa)).toBeUndefined();
  });
  it('names what an incomplete in-cluster configuration lacks and what provides it', () => {
    const sa = mkdtempSync(path.join(tmpdir(), 'sa-'));
    const env = { KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' };
    expect(inClusterProblem(sa, {})).toMatch(/KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set.*--kubeconfig/);
    expect(inClusterProblem(sa, env)).toMatch(/no ServiceAccount token at .*token.*automountServiceAccountToken/);
    writeFileSync(path.join(sa, 'token'), 'sa-token');
    expect(inClusterProblem(sa, env)).toMatch(/no cluster CA at .*ca\.crt.*kube-root-ca\.crt.*root-ca-cert-publisher/);
    writeFileSync(path.join(sa, 'ca.crt'), 'SACA');
    expect(inClusterProblem(sa, env)).toBeUndefined();
  });
  it('fails on the missing in-cluster part, not on http://localhost:8080, when no kubeconfig is found', async () => {
    const saved = { KUBECONFIG: process.env.KUBECONFIG, HOME: process.env.HOME };
    delete process.env.KUBECONFIG;
    delete process.env.KUBERNETES_SERVICE_HOST;
    process.env.HOME = mkdtempSync(path.join(tmpdir(), 'home-'));
    try {
      await expect(loadConnection()).rejects.toThrow(/KUBERNETES_SERVICE_HOST.*not set/);
    } finally {
      for (const [k, v] of Object.entries(saved)) if (v === undefined) delete process.env[k]; else process.env[k] = v;
    }
  });
});

