// A CA the platform brings, made by OpenSSL as people make them, with a Go consumer: a
// kube-apiserver of this file's own that trusts the CA for client certificates and calls the
// operator's verification service (served with a certificate that CA issued) as its token
// webhook. Go matches an issuer to its CA byte for byte, so this fails if the operator
// re-encodes the CA's name (UTF8String → PrintableString, a multi-valued RDN split) in what it
// issues — where openssl, comparing names loosely, still says OK (issue 21, item 1).
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { afterAll, describe, expect, it } from 'vitest';
import { KubeClient, resourcePath } from '../../src/controller/kube.ts';
import { resources } from '../../src/api/resources.ts';
import { createMetrics } from '../../src/observability/metrics.ts';
import { startOperator, type Operator } from '../../src/operator.ts';
import { startControlPlane, type ControlPlane } from '../cluster/controlplane.ts';
import { installCrds } from '../crds.ts';
import { eventually, run } from '../kube.ts';
import { testLogger } from '../logs.ts';
import { freePort } from '../net.ts';
import { api, decodeSecret, testAccount } from '../operator.ts';
import { callerCa, writeCertificate } from '../callers.ts';
import { opensslCa, printable } from '../openssl.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'byo-ca-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.each([
  ['OpenSSL 3 defaults (UTF8String)', 'utf8', ['-subj', '/C=DE/O=Example Platform/CN=Platform Root CA']],
  ['a multi-valued RDN', 'multi', ['-multivalue-rdn', '-subj', '/O=Example Platform+OU=Trust/CN=Platform Root CA']],
  // string_mask=default: PrintableString where the value allows it (OpenSSL 1.x's habit).
  ['PrintableString', 'printable', ['-subj', '/C=DE/O=Example Platform/CN=Platform Root CA', '-config', printable]],
] as const)('a CA brought by the platform: %s', (_what, slug, subject) => {
  it('a kube-apiserver accepts the token (its webhook verifies the operator\'s serving certificate) and the client certificate', { timeout: 180_000 }, async () => {
    const ca = await opensslCa(dir, slug, [...subject]);
    const webhookCa = await callerCa(`webhook CA ${slug}`);
    const webhookCert = writeCertificate(path.join(dir, slug), 'webhook', await webhookCa.issue('kube-apiserver'));
    const port = await freePort();
    const webhook = path.join(dir, `${slug}-webhook.kubeconfig`);
    writeFileSync(webhook, [
      'apiVersion: v1', 'kind: Config',
      'clusters:', '- name: verifier', '  cluster:', `    server: https://127.0.0.1:${port}/apis/authentication.k8s.io/v1/tokenreviews`, `    certificate-authority: ${ca.certFile}`,
      'users:', '- name: kube-apiserver', '  user:', `    client-certificate: ${webhookCert.cert}`, `    client-key: ${webhookCert.key}`,
      'contexts:', '- name: webhook', '  context: { cluster: verifier, user: kube-apiserver }', 'current-context: webhook', '',
    ].join('\n'));
    mkdirSync(path.join(dir, `${slug}-cp`));
    let controlPlane: ControlPlane | undefined;
    let operator: Operator | undefined;
    let client: KubeClient | undefined;
    try {
      controlPlane = await startControlPlane({
        dir: path.join(dir, `${slug}-cp`),
        extraClientCa: ca.certFile,
        apiserverArgs: [`--authentication-token-webhook-config-file=${webhook}`, '--authentication-token-webhook-cache-ttl=1s', '--authentication-token-webhook-version=v1'],
      });
      const kc = new KubeConfig();
      kc.loadFromFile(controlPlane.kubeconfig);
      const apiserverCa = path.join(dir, `${slug}-apiserver-ca.crt`);
      writeFileSync(apiserverCa, Buffer.from(kc.getCurrentCluster()!.caData!, 'base64'));
      client = new KubeClient(kc);
      await installCrds(kc);
      for (const name of ['suo', 'apps']) await client.request('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
      // The platform's CA, given to the operator as docs/certificates.md says.
      await client.request('POST', '/api/v1/namespaces/suo/secrets', {
        apiVersion: 'v1', kind: 'Secret', type: 'kubernetes.io/tls', metadata: { name: 'service-user-operator-ca' },
        data: { 'tls.crt': Buffer.from(ca.certPem).toString('base64'), 'tls.key': Buffer.from(ca.keyPem).toString('base64') },
      });
      await client.apply(resourcePath(resources.accounts, undefined, 'acme'), testAccount('acme', { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'In', values: ['apps'] }] }), 'tests');
      operator = startOperator({
        kubeConfig: kc, log: testLogger(), metrics: createMetrics(), operatorNamespace: 'suo',
        verification: { address: `127.0.0.1:${port}`, tokenReviewCaPems: [webhookCa.certPem] },
      });
      await operator.ready;
      const k = api(client, 'apps');
      await k.createServiceUser('deployer', { email: 'ops@example.com', accounts: ['acme'] });
      await k.waitFor('deployer', 'Active', (o) => (o.status as { phase?: string } | undefined)?.phase === 'Active', 30_000);
      const data = decodeSecret((await k.secret('deployer-credentials'))!);
      const cert = path.join(dir, `${slug}-deployer.crt`);
      const key = path.join(dir, `${slug}-deployer.key`);
      writeFileSync(cert, data['tls.crt']!);
      writeFileSync(key, data['tls.key']!, { mode: 0o600 });
      const empty = path.join(dir, 'empty-kubeconfig');
      writeFileSync(empty, 'apiVersion: v1\nkind: Config\n');
      const whoami = (auth: string[]) => run('kubectl', ['--server', controlPlane!.server, '--certificate-authority', apiserverCa, ...auth, 'auth', 'whoami', '-o', 'json'], { env: { ...process.env, KUBECONFIG: empty } });
      const username = (r: { ok: boolean; out: string }) => (r.ok ? (JSON.parse(r.out) as { status: { userInfo: { username: string } } }).status.userInfo.username : undefined);
      // The token: the kube-apiserver calls the webhook over TLS it verifies against the CA.
      const byToken = await eventually('the token accepted through the webhook', async () => username(await whoami(['--token', data.token!])), 30_000);
      expect(byToken).toBe('serviceuser:apps:deployer');
      // The certificate: the kube-apiserver's client CA is the platform's.
      const byCert = await whoami(['--client-certificate', cert, '--client-key', key]);
      expect(byCert.err).not.toContain('unknown authority');
      expect(username(byCert)).toBe('serviceuser:apps:deployer');
    } finally {
      await operator?.stop();
      client?.close();
      await controlPlane?.stop();
    }
  });
});
