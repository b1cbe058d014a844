// The API server connection read without client-node for plain kubeconfigs and in-cluster,
// and handed to client-node for everything else.
import { mkdtempSync, writeFileSync } from 'node:fs';
import type { RequestOptions } from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { dump } from 'js-yaml';
import { afterEach, describe, expect, it } from 'vitest';
import { inCluster, inClusterProblem, loadConnection, simpleKubeconfig } from '../../src/controller/connection.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'connection-'));
const b64 = (s: string) => Buffer.from(s).toString('base64');
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
  it('leaves exec plugins, auth providers and proxies to client-node', async () => {
    const exec = kubeconfig('exec', {}, { exec: { apiVersion: 'client.authentication.k8s.io/v1', command: 'true' } });
    expect(simpleKubeconfig(exec)).toBeUndefined();
    expect(simpleKubeconfig(kubeconfig('proxy', { 'proxy-url': 'http://proxy:3128' }, { token: 'a' }))).toBeUndefined();
    expect(await loadConnection(exec)).toBeInstanceOf(KubeConfig);
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

