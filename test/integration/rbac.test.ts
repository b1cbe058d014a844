// The chart's least-privilege RBAC is enough, and no more, for each of its two identities:
// the controller (--mode=controller) runs as its ServiceAccount, with exactly the rendered
// (Cluster)Roles, through a whole lifecycle — leader election, CA and CRL, issuing, roles,
// accounts and namespace labels, cert-manager mode, restart targets, disable, deletion — and
// the verifier (--mode=verifier), the network-facing process, runs as its own and answers for
// what the controller issued (TokenReview through curl, the CRL through openssl). Neither is
// ever refused, and every verb the chart grants an identity is one it was seen to use
// (counted by its own API request metric, in the authorizer's terms).
//
// Blast radius, measured the way an auditor would (kubectl auth can-i --list as each
// ServiceAccount): the verifier can write nothing a bare ServiceAccount cannot, and read no
// Secret but the CA and the ledger key; with watchNamespaces the controller has no Secret
// access outside the watched namespaces and its own.
import { request as httpsRequest } from 'node:https';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { loadAll } from 'js-yaml';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { KubeClient, resourcePath, type KubeObject } from '../../src/controller/kube.ts';
import { resources } from '../../src/api/resources.ts';
import { testLogger } from '../logs.ts';
import { createMetrics, type Metrics } from '../../src/observability/metrics.ts';
import { startOperator } from '../../src/operator.ts';
import { startVerifier } from '../../src/verifier.ts';
import { repoRoot } from '../cluster/controlplane.ts';
import { installCertManagerCrds } from '../certmanager/certmanager.ts';
import { helmBinary } from '../helm/helm.ts';
import { callerCa, writeCertificate } from '../callers.ts';
import { eventually, kubeConfig, useNamespace, run } from '../kube.ts';
import { freePort } from '../net.ts';
import { api, decodeSecret, useOperatorProcesses } from '../operator.ts';
import { certificateClaiming } from '../forge.ts';

// The operator's own namespace (release, CA, CRL, lease), a watched one, and one the release
// does not watch, as in a real install: a grant that only works because two coincide would
// go unnoticed.
const ns = useNamespace('rbac');
const watched = useNamespace('rbac-watched');
const unwatched = useNamespace('rbac-unwatched');
const admin = new KubeClient(kubeConfig());
const release = `rbac-${randomBytes(3).toString('hex')}`;
const clusterScoped: string[] = [];
const dir = mkdtempSync(path.join(tmpdir(), 'rbac-'));
afterAll(async () => {
  for (const p of clusterScoped) await admin.request('DELETE', p).catch(() => undefined);
  admin.close();
});

const plural: Record<string, string> = { ServiceAccount: 'serviceaccounts', ClusterRole: 'clusterroles', ClusterRoleBinding: 'clusterrolebindings', Role: 'roles', RoleBinding: 'rolebindings' };

/** The chart's ServiceAccounts by role in the split, and what the chart grants each (verb group/resource). */
const identities = { controller: '', verifier: '' };
const granted = { controller: new Set<string>(), verifier: new Set<string>() };

beforeAll(async () => {
  const rendered = await run(helmBinary(), ['template', release, path.join(repoRoot, 'charts/service-user-operator'), '--namespace', ns.name, '--kube-version', '1.34.4',
    '--set', `watchNamespaces={${watched.name}}`, '--set', 'roleCatalog.enabled=false']);
  if (!rendered.ok) throw new Error(rendered.err);
  const docs = (loadAll(rendered.out) as (KubeObject | null)[]).filter((d): d is KubeObject => !!d);
  const deployments = docs.filter((d) => d.kind === 'Deployment') as unknown as { spec: { template: { spec: { serviceAccountName: string; containers: { args: string[] }[] } } } }[];
  for (const d of deployments) {
    const mode = d.spec.template.spec.containers[0]!.args.find((a) => a.startsWith('--mode='))?.slice('--mode='.length);
    if (mode === 'controller' || mode === 'verifier') identities[mode] = d.spec.template.spec.serviceAccountName;
  }
  if (!identities.controller || !identities.verifier) throw new Error(`the chart must run a controller and a verifier Deployment (--mode=controller, --mode=verifier); found ${JSON.stringify(identities)}`);
  if (identities.controller === identities.verifier) throw new Error(`the controller and the verifier share the ServiceAccount ${identities.controller}`);
  // Only what the chart's ServiceAccounts are bound to: the chart's roles for people are
  // rendered beside them, grant the operator nothing and are not applied here.
  const boundTo = new Map<string, string[]>();
  for (const b of docs.filter((d) => d.kind === 'RoleBinding' || d.kind === 'ClusterRoleBinding')) {
    const key = `${(b.roleRef as { kind: string }).kind}/${b.kind === 'RoleBinding' ? b.metadata.namespace : ''}/${(b.roleRef as { name: string }).name}`;
    for (const s of (b.subjects ?? []) as { kind: string; name: string }[]) if (s.kind === 'ServiceAccount') boundTo.set(key, [...(boundTo.get(key) ?? []), s.name]);
  }
  for (const doc of docs) {
    if (!plural[doc.kind!] || doc.apiVersion === 'serviceusers.dev/v1alpha1') continue;
    const isRole = doc.kind === 'Role' || doc.kind === 'ClusterRole';
    const holders = boundTo.get(`${doc.kind}/${doc.kind === 'Role' ? doc.metadata.namespace : ''}/${doc.metadata.name}`) ?? [];
    if (isRole && !holders.length) continue;
    for (const rule of (doc.rules ?? []) as { apiGroups: string[]; resources: string[]; verbs: string[] }[]) {
      for (const group of rule.apiGroups) for (const resource of rule.resources) for (const verb of rule.verbs) {
        for (const who of ['controller', 'verifier'] as const) if (holders.includes(identities[who])) granted[who].add(`${verb} ${group}/${resource}`);
      }
    }
    const group = doc.apiVersion === 'v1' ? '' : 'rbac.authorization.k8s.io';
    const namespaced = doc.kind !== 'ClusterRole' && doc.kind !== 'ClusterRoleBinding';
    const p = resourcePath({ group, version: 'v1', plural: plural[doc.kind!]!, namespaced }, doc.metadata.namespace, doc.metadata.name);
    await admin.apply(p, doc, 'rbac-test');
    if (!namespaced) clusterScoped.push(p);
  }
}, 180_000);

/** A connection as the ServiceAccount `name` in the release namespace (a token it was issued). */
async function connectionAs(name: string): Promise<KubeConfig> {
  const { status } = await admin.request<{ status: { token: string } }>('POST', `/api/v1/namespaces/${ns.name}/serviceaccounts/${name}/token`, {
    apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { expirationSeconds: 3600 },
  });
  const kc = new KubeConfig();
  kc.loadFromClusterAndUser(kubeConfig().getCurrentCluster()!, { name, token: status.token });
  return kc;
}

/** A kubeconfig file for the ServiceAccount `name`, for a process (`node src/main.ts --kubeconfig`). */
async function kubeconfigFileFor(name: string): Promise<string> {
  const file = path.join(dir, `${name}.kubeconfig`);
  writeFileSync(file, (await connectionAs(name)).exportConfig());
  return file;
}

/** A TokenReview through curl, as a kube-apiserver's webhook sends it. */
async function tokenReview(port: number, files: { ca: string; cert: string; key: string }, token: string) {
  const r = await run('curl', ['-sS', '--fail-with-body', '--cacert', files.ca, '--cert', files.cert, '--key', files.key, '-H', 'content-type: application/json',
    '--data', JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token } }),
    `https://localhost:${port}/apis/authentication.k8s.io/v1/tokenreviews`]);
  if (!r.ok) throw new Error(`curl: ${r.err}${r.out}`);
  return (JSON.parse(r.out) as { status: { authenticated?: boolean; user?: { username: string } } }).status;
}

/** Each verb group/resource an identity's own API request metric counted. */
const used = async (metrics: Metrics) => new Set((await metrics.apiRequests.get()).values.map((v) => `${v.labels.verb} ${v.labels.group}/${v.labels.resource}`));

it('runs a whole lifecycle under the controller\'s RBAC, and verification under the verifier\'s, without a single refusal', { timeout: 240_000 }, async () => {
  const logs: string[] = [];
  // cert-manager's API (no controller needed) so the operator's cert-manager calls happen.
  await installCertManagerCrds(inject('kubeconfig'));
  const metrics = createMetrics();
  const metricsPorts = { controller: await freePort(), verifier: await freePort() };
  // The controller: no verification listener (--mode=controller).
  const operator = startOperator({
    kubeConfig: await connectionAs(identities.controller), log: testLogger(logs), metrics, namespaces: [watched.name], operatorNamespace: ns.name,
    metricsServer: { address: `127.0.0.1:${metricsPorts.controller}`, secure: true },
    leaderElection: { identity: 'rbac-test', onLost: () => undefined },
  });
  // The verifier, as its own ServiceAccount, answering a kube-apiserver's TokenReviews.
  const webhookCa = await callerCa('kube-apiserver webhook CA');
  const webhook = writeCertificate(dir, 'webhook', await webhookCa.issue('kube-apiserver'));
  const verifierMetrics = createMetrics();
  const verifier = startVerifier({
    kubeConfig: await connectionAs(identities.verifier), log: testLogger(logs), metrics: verifierMetrics, namespaces: [watched.name], operatorNamespace: ns.name,
    verification: { address: '127.0.0.1:0', tokenReviewCaPems: [webhookCa.certPem] },
    metricsServer: { address: `127.0.0.1:${metricsPorts.verifier}`, secure: true },
  });
  const k = api(admin, watched.name);
  try {
    await Promise.race([
      Promise.all([operator.ready, verifier.ready]),
      new Promise((_, reject) => setTimeout(() => reject(new Error(`not ready in 60 s:\n${logs.filter((l) => /403|forbidden/i.test(l)).slice(0, 5).join('')}`)), 60_000)),
    ]);
    const caFile = path.join(dir, 'ca.crt');
    writeFileSync(caFile, decodeSecret(await admin.get(`/api/v1/namespaces/${ns.name}/secrets/service-user-operator-ca`))['tls.crt']!);
    const review = (token: string) => tokenReview(verifier.verificationPort()!, { ca: caFile, ...webhook }, token);
    // A scrape of each: its token reviewed (TokenReview, SubjectAccessReview). The controller's
    // ServiceAccount is no metrics reader: 403 from both, after both reviews.
    const { status: scraper } = await admin.request<{ status: { token: string } }>('POST', `/api/v1/namespaces/${ns.name}/serviceaccounts/${identities.controller}/token`, {
      apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { expirationSeconds: 600 },
    });
    for (const port of Object.values(metricsPorts)) {
      const scraped = await eventually(`metrics served on ${port}`, () =>
        new Promise<number | undefined>((resolve) =>
          httpsRequest({ host: '127.0.0.1', port, path: '/metrics', ca: operator.authority.ca.certPem, servername: 'localhost', headers: { authorization: `Bearer ${scraper.token}` } }, (res) => {
            res.resume();
            resolve(res.statusCode);
          }).on('error', () => resolve(undefined)).end(),
        ), 30_000);
      expect(scraped).toBe(403);
    }
    await admin.request('POST', resourcePath(resources.roles), {
      apiVersion: 'serviceusers.dev/v1alpha1', kind: 'Role', metadata: { name: `${release}.signer` },
      spec: { displayName: 'Signer', manager: 'software-trust-manager', permissions: ['signatures:sign'] },
    });
    clusterScoped.push(resourcePath(resources.roles, undefined, `${release}.signer`));
    // An Account admitting the watched namespace by name: the operator reads both.
    await admin.request('POST', resourcePath(resources.accounts), {
      apiVersion: 'serviceusers.dev/v1alpha1', kind: 'Account', metadata: { name: release },
      spec: { namespaceSelector: { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'In', values: [watched.name] }] } },
    });
    clusterScoped.push(resourcePath(resources.accounts, undefined, release));
    // restartTargets: one workload of each kind, reading the Secret; the operator reads each
    // and annotates its pod template (get, patch on apps).
    const template = { metadata: { labels: { app: 'worker' } }, spec: { containers: [{ name: 'app', image: 'registry.example/app:1', envFrom: [{ secretRef: { name: 'worker-credentials' } }] }] } };
    const workloads = { Deployment: 'deployments', StatefulSet: 'statefulsets', DaemonSet: 'daemonsets' } as const;
    for (const [kind, plural] of Object.entries(workloads)) {
      await admin.request('POST', `/apis/apps/v1/namespaces/${watched.name}/${plural}`, {
        apiVersion: 'apps/v1', kind, metadata: { name: 'worker' },
        spec: { selector: { matchLabels: { app: 'worker' } }, template, ...(kind === 'StatefulSet' ? { serviceName: 'worker' } : {}) },
      });
    }
    await k.createServiceUser('worker', { email: 'ops@example.com', accounts: [release], credentials: { restartTargets: Object.keys(workloads).map((kind) => ({ kind, name: 'worker' })) } });
    await admin.request('POST', resourcePath(resources.roleBindings, watched.name), {
      apiVersion: 'serviceusers.dev/v1alpha1', kind: 'RoleBinding', metadata: { name: 'worker-signs' },
      spec: { roleRef: { name: `${release}.signer` }, subjects: [{ kind: 'ServiceUser', name: 'worker' }] },
    });
    await k.waitFor('worker', 'Active with permissions', (o) => {
      const s = o.status as { phase?: string; permissions?: unknown[]; certificate?: unknown } | undefined;
      return s?.phase === 'Active' && !!s.certificate && (s.permissions ?? []).length === 1;
    });
    // What the controller issued, the verifier vouches for.
    const token = decodeSecret(await admin.get(`/api/v1/namespaces/${watched.name}/secrets/worker-credentials`)).token!;
    expect(await eventually('the verifier to know the token', async () => ((await review(token)).authenticated ? review(token) : undefined))).toMatchObject({ authenticated: true, user: { username: expect.stringContaining('worker') } });
    for (const plural of Object.values(workloads)) {
      await eventually(`the ${plural} annotated`, async () =>
        ((await admin.get(`/apis/apps/v1/namespaces/${watched.name}/${plural}/worker`)).spec as { template: { metadata: { annotations?: Record<string, string> } } }).template.metadata.annotations?.['serviceusers.dev/credentials-digest'] ? true : undefined);
    }
    await eventually('the Role status', async () => ((await admin.get(resourcePath(resources.roles, undefined, `${release}.signer`))).status ? true : undefined));
    // cert-manager mode: the Certificate written, the Issuer and then a ClusterIssuer looked
    // up (neither exists), and the Certificate removed when the built-in CA is chosen again.
    await k.createServiceUser('external', { email: 'ops@example.com', accounts: [release], credentials: { clientCertificate: { issuerRef: { name: 'absent', kind: 'Issuer' } } } });
    const reason = (o: KubeObject) => (o.status as { conditions?: { type: string; reason: string }[] } | undefined)?.conditions?.find((c) => c.type === 'Ready')?.reason;
    await k.waitFor('external', 'IssuerNotFound', (o) => reason(o) === 'IssuerNotFound');
    // A certificate in the Secret cert-manager fills that cert-manager did not issue: the
    // operator looks for the CertificateRequest holding it (list), finds none, and refuses it;
    // removed, the issuer's condition is back.
    const stray = await certificateClaiming({ issuer: 'CN=someone', serialNumber: '1a2b3c', commonName: `serviceuser:${watched.name}:external` });
    await admin.mergePatch(`/api/v1/namespaces/${watched.name}/secrets/external-client-tls`, { data: { 'tls.crt': Buffer.from(stray.certPem).toString('base64'), 'tls.key': Buffer.from(stray.keyPem).toString('base64') } });
    await k.waitFor('external', 'CertificateNotIssuedForUser', (o) => reason(o) === 'CertificateNotIssuedForUser');
    await admin.mergePatch(`/api/v1/namespaces/${watched.name}/secrets/external-client-tls`, { data: { 'tls.crt': '', 'tls.key': '' } });
    await k.waitFor('external', 'IssuerNotFound once the stray certificate is removed', (o) => reason(o) === 'IssuerNotFound');
    await k.patchServiceUser('external', { credentials: { clientCertificate: { issuerRef: { name: `absent-${release}`, kind: 'ClusterIssuer' } } } });
    await eventually('the ClusterIssuer looked up', async () => (await metrics.apiRequests.get()).values.some((v) => v.labels.resource === 'clusterissuers') || undefined);
    await k.patchServiceUser('external', { credentials: { clientCertificate: { issuerRef: null } } });
    await k.waitFor('external', 'Active on the built-in CA', (o) => (o.status as { phase?: string; certificate?: unknown } | undefined)?.phase === 'Active' && !!(o.status as { certificate?: unknown }).certificate);
    await eventually('the Certificate removed', () =>
      admin.get(`/apis/cert-manager.io/v1/namespaces/${watched.name}/certificates`).then((l) => ((l as unknown as { items: unknown[] }).items.length === 0 ? true : undefined)));
    await k.patchServiceUser('worker', { disabled: true });
    const disabled = await k.waitFor('worker', 'Disabled', (o) => (o.status as { phase?: string } | undefined)?.phase === 'Disabled');
    // The verifier follows: the token refused, the certificate on hold on the CRL it serves
    // (signed from its read-only copy of the ledger), read by openssl.
    await eventually('the verifier to refuse the disabled user\'s token', async () => ((await review(token)).authenticated === false ? true : undefined));
    const serial = (disabled.status as { certificate: { serialNumber: string } }).certificate.serialNumber;
    const crlFile = path.join(dir, 'crl.pem');
    await eventually('the certificate on hold on the verifier\'s CRL', async () => {
      const fetched = await run('curl', ['-sS', '--fail', '--cacert', caFile, '-o', crlFile, `https://localhost:${verifier.verificationPort()}/v1/crl`]);
      if (!fetched.ok) throw new Error(fetched.err);
      const text = await run('openssl', ['crl', '-in', crlFile, '-CAfile', caFile, '-noout', '-text']);
      if (!text.ok) throw new Error(text.err);
      return new RegExp(`Serial Number: 0*${serial.replace(/^0+/, '')}\\b(?:(?!Serial Number)[\\s\\S])*?Certificate Hold`, 'i').test(text.out) ? true : undefined;
    });
    // Disabled, enabled and disabled again: the same event twice is aggregated (patch on events).
    await k.patchServiceUser('worker', { disabled: false });
    await k.waitFor('worker', 'Active again', (o) => (o.status as { phase?: string } | undefined)?.phase === 'Active');
    await k.patchServiceUser('worker', { disabled: true });
    await k.waitFor('worker', 'Disabled again', (o) => (o.status as { phase?: string } | undefined)?.phase === 'Disabled');
    await eventually('the repeated event aggregated', async () => (await metrics.apiRequests.get()).values.some((v) => v.labels.resource === 'events' && v.labels.verb === 'patch') || undefined);
    await admin.request('DELETE', resourcePath(resources.serviceUsers, watched.name, 'worker'));
    await eventually('deletion completed by the finalizer', () => k.serviceUser('worker').then(() => undefined, () => true));
    // The leader renews its Lease every 2 s: let one renewal happen whatever the pace above.
    await eventually('a lease renewal', async () => (await metrics.apiRequests.get()).values.some((v) => v.labels.resource === 'leases' && v.labels.verb === 'update') || undefined);
  } finally {
    await verifier.stop();
    await operator.stop();
  }
  const log = logs.join('');
  expect(log).not.toMatch(/ 403 |forbidden/i);
  for (const [who, m] of [['controller', metrics], ['verifier', verifierMetrics]] as const) {
    const seen = await used(m);
    expect([...granted[who]].filter((g) => !seen.has(g)), `granted to the ${who} by the chart but never used`).toEqual([]);
    expect([...seen].filter((u) => !granted[who].has(u)), `used by the ${who} but not granted`).toEqual([]);
  }
});

const processes = useOperatorProcesses(watched);

it('a verifier process (--mode=verifier) as its ServiceAccount authenticates the token a controller process (--mode=controller) issued as its own; the controller listens for no verification', { timeout: 180_000 }, async () => {
  const webhookCa = await callerCa('kube-apiserver webhook CA');
  const webhook = writeCertificate(dir, 'webhook-process', await webhookCa.issue('kube-apiserver'));
  const webhookCaFile = path.join(dir, 'webhook-ca.crt');
  writeFileSync(webhookCaFile, webhookCa.certPem);
  const [verifyPort, controllerVerifyPort] = [await freePort(), await freePort()];
  const output: string[] = [];
  // The later --kubeconfig and --operator-namespace win over the helper's (the run's admin, the watched namespace).
  const common = ['--operator-namespace', ns.name, '--metrics-bind-address', '0', '--health-probe-bind-address', '0', '--log-format', 'json'];
  const controller = processes.start(['--mode=controller', '--kubeconfig', await kubeconfigFileFor(identities.controller), ...common, '--leader-elect', '--verify-bind-address', `127.0.0.1:${controllerVerifyPort}`], { output });
  const verifier = processes.start(['--mode=verifier', '--kubeconfig', await kubeconfigFileFor(identities.verifier), ...common, '--verify-bind-address', `127.0.0.1:${verifyPort}`, '--tokenreview-client-ca', webhookCaFile], { output });
  const k = api(admin, watched.name);
  await k.createServiceUser('by-process', { email: 'ops@example.com', accounts: [release] });
  await k.waitFor('by-process', 'a token', (o) => ((o.status as { tokens?: unknown[] } | undefined)?.tokens ?? []).length > 0, 60_000);
  const token = decodeSecret(await admin.get(`/api/v1/namespaces/${watched.name}/secrets/by-process-credentials`)).token!;
  const caFile = path.join(dir, 'ca-process.crt');
  writeFileSync(caFile, decodeSecret(await admin.get(`/api/v1/namespaces/${ns.name}/secrets/service-user-operator-ca`))['tls.crt']!);
  const answer = await eventually('the verifier process to authenticate the token', async () => {
    const status = await tokenReview(verifyPort, { ca: caFile, ...webhook }, token).catch(() => undefined);
    return status?.authenticated ? status : undefined;
  }, 60_000);
  expect(answer.user?.username).toContain('by-process');
  // Told to, the controller still serves nothing: --mode=controller has no verification listener.
  const refused = await run('curl', ['-sS', '--max-time', '10', '--cacert', caFile, `https://localhost:${controllerVerifyPort}/v1/ca.crt`]);
  expect(refused.ok).toBe(false);
  expect(refused.err).toMatch(/Could not connect|Connection refused|Failed to connect/i);
  expect(controller.exitCode).toBeNull();
  expect(verifier.exitCode).toBeNull();
  expect(output.join('')).not.toMatch(/ 403 |forbidden/i);
});

/** One row of `kubectl auth can-i --list`: resource (resource.group), resource names, verbs. */
interface Grant {
  resource: string;
  names: string[];
  verbs: string[];
}

/** What the ServiceAccount `name` (of the release namespace) may do in `namespace`, as kubectl reports it. */
async function canList(name: string, namespace: string): Promise<Grant[]> {
  const r = await run('kubectl', ['--kubeconfig', inject('kubeconfig'), 'auth', 'can-i', '--list', '-n', namespace, `--as=system:serviceaccount:${ns.name}:${name}`]);
  expect(r.ok, r.err).toBe(true);
  const list = (cell: string) => cell.slice(1, -1).split(' ').filter(Boolean);
  const rows = r.out.split('\n').slice(1).filter((l) => l.trim());
  return rows.map((line) => {
    const m = /^\s*(\S*?)\s*(\[[^\]]*\])\s+(\[[^\]]*\])\s+(\[[^\]]*\])\s*$/.exec(line);
    if (!m) throw new Error(`kubectl auth can-i --list printed a row this test cannot read: ${line}`);
    return { resource: m[1]! || `nonResourceURLs ${m[2]}`, names: list(m[3]!), verbs: list(m[4]!) };
  });
}

/** `kubectl auth can-i VERB RESOURCE` as the ServiceAccount `name`: yes or no. */
async function canI(name: string, verb: string, resource: string, namespace?: string): Promise<boolean> {
  const r = await run('kubectl', ['--kubeconfig', inject('kubeconfig'), 'auth', 'can-i', verb, resource, ...(namespace ? ['-n', namespace] : ['--all-namespaces']), `--as=system:serviceaccount:${ns.name}:${name}`]);
  if (r.out.trim() !== 'yes' && r.out.trim() !== 'no') throw new Error(`kubectl auth can-i ${verb} ${resource}: ${r.out}${r.err}`);
  return r.out.trim() === 'yes';
}

const writes = ['create', 'update', 'patch', 'delete', 'deletecollection', 'escalate', 'bind', 'impersonate', 'approve', 'sign', '*'];
// Reviews are questions, stored nowhere: the verifier asks them about its scrapers' tokens
// (the guarded /metrics). What that lets a compromised verifier learn is in docs/security.md.
const reviews = new Set(['tokenreviews.authentication.k8s.io', 'subjectaccessreviews.authorization.k8s.io']);
/** The write grants among `grants`, as comparable strings (reviews apart). */
const writeGrants = (grants: Grant[]) =>
  grants.filter((g) => !reviews.has(g.resource)).flatMap((g) => g.verbs.filter((v) => writes.includes(v)).map((v) => `${v} ${g.resource} ${g.names.join(',')}`)).sort();

describe('blast radius, measured with kubectl auth can-i as each ServiceAccount', () => {
  it('the verifier (the network-facing process) can write nothing a bare ServiceAccount cannot, and read no Secret but the CA and the ledger key', { timeout: 120_000 }, async () => {
    const verifier = identities.verifier;
    for (const namespace of [ns.name, watched.name, unwatched.name, 'kube-system']) {
      // A ServiceAccount bound to nothing: what every authenticated identity may do (self reviews).
      const baseline = writeGrants(await canList('default', namespace));
      const grants = await canList(verifier, namespace);
      expect(grants.length, `kubectl listed nothing for ${namespace}`).toBeGreaterThan(0);
      expect(writeGrants(grants), `the verifier's writes in ${namespace}`).toEqual(baseline);
      expect(grants.filter((g) => reviews.has(g.resource)).map((g) => `${g.verbs.join(',')} ${g.resource}`).sort(), 'its reviews: create only').toEqual([...reviews].sort().map((r) => `create ${r}`));
      const secrets = grants.filter((g) => g.resource === 'secrets' || g.resource === '*');
      if (namespace === ns.name) {
        // Its two Secrets, by name; never the namespace's other Secrets.
        expect(secrets.flatMap((g) => g.names).sort()).toEqual(['service-user-operator-ca', 'service-user-operator-ledger-key']);
      } else {
        expect(secrets, `the verifier's Secret access in ${namespace}`).toEqual([]);
      }
    }
    // An attacker who took over the verifier's pod, with its token, tries the controller's powers.
    const attempts: [string, string, string | undefined][] = [
      ['create', 'secrets', unwatched.name], ['create', 'secrets', ns.name], ['patch', 'secrets', watched.name], ['get', 'secrets', watched.name],
      ['list', 'secrets', undefined], ['list', 'secrets', ns.name], ['get', 'secrets/some-app-credentials', ns.name],
      ['update', 'secrets/service-user-operator-ca', ns.name], ['update', 'secrets/service-user-operator-ledger-key', ns.name],
      ['patch', 'deployments', 'kube-system'], ['patch', 'serviceusers.serviceusers.dev/status', watched.name], ['patch', 'serviceusers.serviceusers.dev', watched.name],
      ['update', 'configmaps', ns.name], ['create', 'events', watched.name], ['update', 'leases.coordination.k8s.io', ns.name],
    ];
    for (const [verb, resource, namespace] of attempts) expect(await canI(verifier, verb, resource, namespace), `verifier: ${verb} ${resource} in ${namespace ?? 'every namespace'}`).toBe(false);
    // What verification needs, it has.
    expect(await canI(verifier, 'get', 'secrets/service-user-operator-ca', ns.name)).toBe(true);
    expect(await canI(verifier, 'watch', 'secrets/service-user-operator-ledger-key', ns.name)).toBe(true);
    expect(await canI(verifier, 'list', 'serviceusers.serviceusers.dev', watched.name)).toBe(true);
  });

  it('with watchNamespaces, the controller has no Secret or workload access outside the watched namespaces and its own', { timeout: 120_000 }, async () => {
    const controller = identities.controller;
    for (const namespace of [unwatched.name, 'kube-system']) {
      const grants = await canList(controller, namespace);
      expect(grants.filter((g) => ['secrets', 'deployments.apps', 'statefulsets.apps', 'daemonsets.apps', '*'].includes(g.resource)), `the controller in ${namespace}`).toEqual([]);
      for (const verb of ['get', 'list', 'create', 'patch']) expect(await canI(controller, verb, 'secrets', namespace), `controller: ${verb} secrets in ${namespace}`).toBe(false);
      expect(await canI(controller, 'patch', 'deployments.apps', namespace), `controller: patch deployments in ${namespace}`).toBe(false);
    }
    expect(await canI(controller, 'list', 'secrets', undefined), 'controller: list secrets in every namespace').toBe(false);
    // Where it works, it can.
    expect(await canI(controller, 'create', 'secrets', watched.name)).toBe(true);
    expect(await canI(controller, 'patch', 'deployments.apps', watched.name)).toBe(true);
  });
});
