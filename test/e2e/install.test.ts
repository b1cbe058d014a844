// End to end, as a platform engineer installs it: the image built from the Dockerfile
// (npm run image), a fresh local control plane with one real node (kubelet, containerd,
// runc), `helm install` as docs/install.md says, then the operator's pod serving a
// kube-apiserver's token webhook and client certificates. Every packet stays on this machine:
// the pod uses the host network and the API server calls it on 127.0.0.1.
// Run with `npm run e2e` (root, containerd, runc, podman, mmdebstrap: .ci/install-packages).
import { execFile, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadAll } from 'js-yaml';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createCa } from '../../src/credentials/ca.ts';
import { callerCa, writeCertificate } from '../callers.ts';
import { repoRoot, startControlPlane, type ControlPlane } from '../cluster/controlplane.ts';
import { helmBinary } from '../helm/helm.ts';
import { chartRuntime, imageRuntime } from '../image/runtime.ts';
import { eventually } from '../kube.ts';
import { freePort } from '../net.ts';

const release = 'service-user-operator';
const namespace = 'service-user-operator';
const chart = path.join(repoRoot, 'charts/service-user-operator');
const work = mkdtempSync(path.join(tmpdir(), 'e2e-install-'));
const timings: [string, number][] = [];
let cluster: ControlPlane;
let helm: string;
// Host ports on the one node: the controller's metrics and health, the verifier's own three.
const ports = { verify: 0, metrics: 0, health: 0, verifierMetrics: 0, verifierHealth: 0 };

async function timed<T>(step: string, f: () => Promise<T>): Promise<T> {
  const started = Date.now();
  const value = await f();
  timings.push([step, (Date.now() - started) / 1000]);
  process.stderr.write(`e2e: ${step} took ${((Date.now() - started) / 1000).toFixed(1)}s\n`);
  return value;
}

/** Runs a command to its end; `echo` passes its output on as it comes (a long build's progress lines). */
function run(cmd: string, args: string[], input?: string, options: { echo?: boolean; cwd?: string } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { env: { ...process.env, KUBECONFIG: cluster?.kubeconfig ?? '' }, maxBuffer: 64 << 20, cwd: options.cwd }, (err, out, errOut) =>
      err ? reject(new Error(`${path.basename(cmd)} ${args.join(' ')}: ${errOut || err.message}`)) : resolve(out),
    );
    if (options.echo) for (const stream of [child.stdout!, child.stderr!]) stream.on('data', (c: Buffer) => process.stderr.write(c));
    if (input !== undefined) child.stdin!.end(input);
  });
}
const kubectl = (...args: string[]) => run('kubectl', args);
const json = async <T>(...args: string[]) => JSON.parse(await kubectl(...args, '-o', 'json')) as T;

// The chart's and config/default's two Deployments, by their pods' app.kubernetes.io/name.
const controller = 'service-user-operator';
const verifier = 'service-user-operator-verifier';
type App = typeof controller | typeof verifier;

interface Pod {
  metadata: { name: string; uid: string };
  status: { phase: string; conditions?: { type: string; status: string }[]; containerStatuses?: { restartCount: number }[] };
}
const podsOf = async (app: App) => (await json<{ items: Pod[] }>('get', 'pods', '-n', namespace, '-l', `app.kubernetes.io/name=${app}`)).items;
const readyPod = (app: App, exclude: string[] = []) =>
  eventually(`a ${app} pod Ready`, async () => {
    const pods = (await podsOf(app)).filter((p) => !exclude.includes(p.metadata.name));
    return pods.find((p) => p.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'));
  }, 300_000);
const leaseHolder = async () =>
  (await json<{ spec: { holderIdentity?: string } }>('get', 'lease', '-n', namespace, 'service-user-operator').catch(() => undefined))?.spec.holderIdentity;

beforeAll(async () => {
  const image = await timed('image (npm run image)', async () => {
    const out = await run('bash', [path.join(repoRoot, 'test/image/build.sh')], undefined, { echo: true });
    return /^image-archive (\S+)$/m.exec(out)![1]!;
  });
  helm = await timed('helm build (cached)', async () => helmBinary());
  // The operator's CA, brought beforehand (docs/install.md: ca.secretName), so that the API
  // server can trust its client certificates from its start; and the CA of the API server's
  // webhook client certificate, which the operator trusts for TokenReview.
  const ca = await createCa({ commonName: 'e2e service users' });
  writeFileSync(path.join(work, 'operator-ca.crt'), ca.certPem);
  const webhookCa = await callerCa('e2e kube-apiserver webhook');
  const webhookClient = writeCertificate(work, 'webhook-client', await webhookCa.issue('kube-apiserver'));
  for (const k of Object.keys(ports) as (keyof typeof ports)[]) {
    do ports[k] = await freePort(); while (Object.entries(ports).some(([o, p]) => o !== k && p === ports[k]));
  }
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  writeFileSync(path.join(work, 'webhook.kubeconfig'), JSON.stringify({
    apiVersion: 'v1', kind: 'Config', 'current-context': 'w',
    clusters: [{ name: 'operator', cluster: { server: `https://127.0.0.1:${ports.verify}/apis/authentication.k8s.io/v1/tokenreviews`, 'certificate-authority-data': b64(ca.certPem) } }],
    users: [{ name: 'apiserver', user: { 'client-certificate': webhookClient.cert, 'client-key': webhookClient.key } }],
    contexts: [{ name: 'w', context: { cluster: 'operator', user: 'apiserver' } }],
  }));
  cluster = await timed('control plane and node Ready (kubelet build when cold)', () =>
    startControlPlane({
      dir: path.join(work, 'cluster'),
      node: { images: [image] },
      extraClientCa: path.join(work, 'operator-ca.crt'),
      apiserverArgs: [`--authentication-token-webhook-config-file=${path.join(work, 'webhook.kubeconfig')}`, '--authentication-token-webhook-version=v1'],
      startTimeoutMs: 40 * 60_000,
    }),
  );
  await kubectl('create', 'namespace', namespace);
  await kubectl('-n', namespace, 'create', 'secret', 'tls', 'service-user-operator-ca', `--cert=${path.join(work, 'operator-ca.crt')}`, `--key=${writeKey(ca.keyPem)}`);
  writeFileSync(path.join(work, 'webhook-ca.crt'), webhookCa.certPem);
  await kubectl('-n', namespace, 'create', 'secret', 'generic', 'apiserver-webhook-ca', `--from-file=ca.crt=${path.join(work, 'webhook-ca.crt')}`);
}, 60 * 60_000);

function writeKey(pem: string): string {
  const file = path.join(work, 'operator-ca.key');
  writeFileSync(file, pem, { mode: 0o600 });
  return file;
}

// A failed step shows what the operator said: the pod's log is gone with the cluster.
beforeEach(({ onTestFailed }) => {
  onTestFailed(async () => {
    const logs = await kubectl('logs', '-n', namespace, '-l', `app.kubernetes.io/name in (${controller},${verifier})`, '--tail=40', '--prefix').catch((err: Error) => err.message);
    process.stderr.write(`e2e: operator logs at the failure:\n${logs}\n`);
  });
});

afterAll(async () => {
  await cluster?.stop();
  rmSync(work, { recursive: true, force: true });
  process.stderr.write(`e2e timings:\n${timings.map(([s, t]) => `  ${t.toFixed(1).padStart(7)}s  ${s}`).join('\n')}\n`);
}, 120_000);

const server = () => new URL(cluster.kubeconfig ? readFileSync(cluster.kubeconfig, 'utf8').match(/server: (\S+)/)![1]! : '');
// What a single-node install with the pods on the host network needs (docs/install.md): one
// pod of each Deployment, and the verifier's metrics and health ports apart from the
// controller's, since both bind the node's.
const values = () => [
  '--set', 'image.pullPolicy=Never', '--set', 'replicaCount=1', '--set', 'verifier.replicaCount=1', '--set', 'hostNetwork=true',
  '--set', 'dnsPolicy=ClusterFirstWithHostNet', '--set', 'strategy.type=Recreate',
  // No kube-proxy here: the API server is reached on the address it listens on.
  '--set', 'extraEnv[0].name=KUBERNETES_SERVICE_HOST', '--set', `extraEnv[0].value=${server().hostname}`,
  '--set', 'extraEnv[1].name=KUBERNETES_SERVICE_PORT', '--set-string', `extraEnv[1].value=${server().port}`,
  '--set', `verification.port=${ports.verify}`, '--set', `metrics.port=${ports.metrics}`, '--set', `healthPort=${ports.health}`,
  '--set', `verifier.metricsPort=${ports.verifierMetrics}`, '--set', `verifier.healthPort=${ports.verifierHealth}`,
  '--set', 'verification.tokenReviewClientCaSecrets={apiserver-webhook-ca}', '--set', 'podDisruptionBudget.enabled=false',
];

// The container's main process of each Deployment, seen from the host: runs as 65532, on a
// read-only root. Found by its command line (the image's entrypoint and the chart's --mode).
async function expectLockedDown(): Promise<void> {
  const pids = (await run('pgrep', ['-f', 'dist/main.js'])).trim().split('\n');
  const argv = (pid: string) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  for (const mode of ['controller', 'verifier']) {
    const mine = pids.filter((pid) => {
      const a = argv(pid);
      return a[0] === '/nodejs/bin/node' && a.includes(`--mode=${mode}`) && a.includes(`--operator-namespace=${namespace}`);
    });
    expect(mine, `one --mode=${mode} process`).toHaveLength(1);
    const pid = mine[0]!;
    // Node as the benchmarks run it (test/image/runtime.ts reads the Dockerfile and the chart): the image's flags and ENV, the chart's NODE_OPTIONS.
    const image = imageRuntime();
    expect(argv(pid).slice(1, 1 + image.nodeFlags.length)).toEqual(image.nodeFlags);
    const environ = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
    expect(environ).toEqual(expect.arrayContaining(Object.entries(image.env).map(([k, v]) => `${k}=${v}`)));
    if (mode === 'controller') expect(environ).toContain(`NODE_OPTIONS=${chartRuntime().nodeOptions}`);
    expect(readFileSync(`/proc/${pid}/status`, 'utf8')).toMatch(/^Uid:\s+65532\s+65532\s+65532\s+65532$/m);
    const root = readFileSync(`/proc/${pid}/mountinfo`, 'utf8').split('\n').find((l) => l.split(' ')[4] === '/')!;
    expect(root.split(' ')[5]!.split(','), `--mode=${mode}'s root mount`).toContain('ro');
  }
}

// Carried from the Helm install to the kustomize one: the same user's credentials.
let issued: { user: string; data: Record<string, string> } = { user: '', data: {} };
const secretData = () => issued.data;
const userName = () => issued.user;
const credentials = async () => (await json<{ data: Record<string, string> }>('get', 'secret', '-n', 'ci', 'build-bot-credentials')).data;

describe('helm install on a fresh cluster with a real node', () => {
  let userName = '';
  let secretData: Record<string, string> = {};
  const token = () => Buffer.from(secretData.token!, 'base64').toString();
  const certificate = () => [`--client-certificate=${path.join(work, 'user.crt')}`, `--client-key=${path.join(work, 'user.key')}`];

  it('installs as docs/install.md says: the controller and the verifier Ready as 65532 on a read-only root', async () => {
    await timed('helm install', () => run(helm, ['install', release, chart, '--namespace', namespace, '--create-namespace', ...values()]));
    await timed('controller pod Ready', () => readyPod(controller));
    await timed('verifier pod Ready', () => readyPod(verifier));
    await expectLockedDown();
  });

  it('issues a token and a certificate that the kube-apiserver accepts through the verifier', async () => {
    await run('kubectl', ['apply', '-f', '-'], `apiVersion: v1\nkind: Namespace\nmetadata: { name: ci, labels: { team: release } }\n`);
    await kubectl('apply', '-f', path.join(repoRoot, 'config/samples/account-acme-prod.yaml'));
    await kubectl('apply', '-n', 'ci', '-f', path.join(repoRoot, 'config/samples/serviceuser-minimal.yaml'));
    secretData = await timed('ServiceUser credentials issued', () =>
      eventually('Secret build-bot-credentials with token and certificate', async () => {
        const s = await json<{ data?: Record<string, string> }>('get', 'secret', '-n', 'ci', 'build-bot-credentials').catch(() => undefined);
        return s?.data?.token && s.data['tls.crt'] ? s.data : undefined;
      }, 180_000),
    );
    const decoded = (k: string) => Buffer.from(secretData[k]!, 'base64').toString();
    const byToken = await whoami(['--token', token()]);
    writeFileSync(path.join(work, 'user.crt'), decoded('tls.crt'));
    writeFileSync(path.join(work, 'user.key'), decoded('tls.key'), { mode: 0o600 });
    const byCert = await whoami(certificate());
    expect(byToken).toContain('ci');
    expect(byToken).toContain('build-bot');
    expect(byCert).toContain('build-bot');
    userName = byToken;
  });

  it('fails over: the leader controller pod deleted, a new one takes the Lease; the verifier serves throughout', async () => {
    const leader = await readyPod(controller);
    const serving = await readyPod(verifier);
    expect(await leaseHolder()).toMatch(new RegExp(`^${leader.metadata.name}(_|$)`));
    // Returns once the leader's pod is gone: no controller runs until its replacement starts.
    await timed('leader controller pod deleted', () => kubectl('delete', 'pod', '-n', namespace, leader.metadata.name, '--wait=true', '--timeout=180s'));
    expect(await whoami(['--token', token()])).toBe(userName);
    const next = await timed('new controller pod Ready after the leader is deleted', () => readyPod(controller, [leader.metadata.name]));
    await timed('the Lease taken by the new controller pod', () =>
      eventually('the Lease held by the new pod', async () => (await leaseHolder())?.startsWith(next.metadata.name) || undefined, 180_000),
    );
    expect(await whoami(['--token', token()])).toBe(userName);
    expect(await whoami(certificate())).toContain('build-bot');
    // The same verifier pod answered before, during and after, never restarted.
    const [still] = (await podsOf(verifier)).filter((p) => p.metadata.uid === serving.metadata.uid);
    expect(still?.status.containerStatuses?.[0]?.restartCount).toBe(0);
  });

  it('helm upgrade with a changed value rolls both pods and changes no credential', async () => {
    const before = [...(await podsOf(controller)), ...(await podsOf(verifier))].map((p) => p.metadata.name);
    await timed('helm upgrade', () => run(helm, ['upgrade', release, chart, '--namespace', namespace, ...values(), '--set', 'logLevel=debug']));
    await timed('upgraded controller pod Ready', () => readyPod(controller, before));
    await timed('upgraded verifier pod Ready', () => readyPod(verifier, before));
    expect(await credentials()).toEqual(secretData);
    expect(await whoami(['--token', token()])).toBe(userName);
    expect(await whoami(certificate())).toContain('build-bot');
  });

  it('helm uninstall leaves the CRDs, the ServiceUsers and their Secrets', async () => {
    // What the controller says as it stops: whether it could release its Lease (helm uninstall
    // deletes its ServiceAccount and RBAC at the same time as its Deployment).
    const [leader] = await podsOf(controller);
    const follow = spawn('kubectl', ['logs', '-f', '-n', namespace, leader!.metadata.name], { env: { ...process.env, KUBECONFIG: cluster.kubeconfig } });
    let said = '';
    follow.stdout.on('data', (c: Buffer) => (said += c.toString()));
    await run(helm, ['uninstall', release, '--namespace', namespace, '--wait']);
    await eventually('no operator pods left', async () => ((await podsOf(controller)).length + (await podsOf(verifier)).length === 0) || undefined, 180_000);
    follow.kill();
    process.stderr.write(`e2e: the controller stopped by helm uninstall said about its Lease:\n${said.split('\n').filter((l) => /lease|stopp/i.test(l)).join('\n')}\ne2e: the Lease after helm uninstall: holder "${await leaseHolder()}"\n`);
    await kubectl('get', 'crd', 'serviceusers.serviceusers.dev');
    await kubectl('get', 'serviceuser', '-n', 'ci', 'build-bot');
    expect(await credentials()).toEqual(secretData);
    issued = { user: userName, data: secretData };
  });
});

interface Container { name: string; args: string[]; ports: { name: string; containerPort: number }[] }
interface Deployment { kind: string; metadata: { name: string }; spec: { template: { spec: { containers: Container[] } } } }

// config/default's Deployments for this node: its own args and ports with the bind addresses
// moved to the free host ports, everything else as written.
function onNodePorts(container: Container, byName: Record<string, number>, extraArgs: string[] = []) {
  const flag: Record<string, string> = { verify: '--verify-bind-address', metrics: '--metrics-bind-address', health: '--health-probe-bind-address' };
  const args = container.args.map((a) => {
    const name = Object.keys(flag).find((n) => a.startsWith(`${flag[n]}=`));
    return name ? `${flag[name]}=:${byName[name]}` : a;
  });
  const containerPorts = container.ports.map((p) => ({ ...p, containerPort: byName[p.name] ?? p.containerPort }));
  return { args: [...args, ...extraArgs], ports: containerPorts };
}

// What a user writes over config/default for this cluster: one replica of each Deployment on
// the host network, the local image, the API server's address, free ports, the webhook's CA.
async function writeOverlay(overlay: string): Promise<void> {
  const base = (loadAll(await run('kubectl', ['kustomize', path.join(repoRoot, 'config/default')])) as Deployment[]).filter((d) => d?.kind === 'Deployment');
  const container = (name: string) => base.find((d) => d.metadata.name === name)!.spec.template.spec.containers[0]!;
  const env = [{ name: 'KUBERNETES_SERVICE_HOST', value: server().hostname }, { name: 'KUBERNETES_SERVICE_PORT', value: server().port }];
  const onNode = (name: string, containerPatch: Record<string, unknown>, pod: Record<string, unknown> = {}) => ({
    apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name, namespace },
    spec: {
      replicas: 1, strategy: { type: 'Recreate', rollingUpdate: null },
      template: { spec: { hostNetwork: true, dnsPolicy: 'ClusterFirstWithHostNet', containers: [{ imagePullPolicy: 'Never', env, ...containerPatch }], ...pod } },
    },
  });
  const tokenReviewCa = '/etc/service-user-operator/tokenreview-ca';
  const patches: { name: App; merge: object; ports: Record<string, number>; extraArgs: string[] }[] = [
    { name: controller, merge: onNode(controller, { name: 'operator' }), ports: { metrics: ports.metrics, health: ports.health }, extraArgs: [] },
    {
      name: verifier,
      merge: onNode(verifier, { name: 'verifier', volumeMounts: [{ name: 'tokenreview-ca', mountPath: tokenReviewCa, readOnly: true }] },
        { volumes: [{ name: 'tokenreview-ca', secret: { secretName: 'apiserver-webhook-ca' } }] }),
      ports: { verify: ports.verify, metrics: ports.verifierMetrics, health: ports.verifierHealth },
      extraArgs: [`--tokenreview-client-ca=${tokenReviewCa}/ca.crt`],
    },
  ];
  mkdirSync(overlay);
  const entries: string[] = [];
  for (const p of patches) {
    writeFileSync(path.join(overlay, `${p.name}-patch.json`), JSON.stringify(p.merge));
    // Lists a strategic merge would merge by key (ports by number): replaced whole.
    const { args, ports: containerPorts } = onNodePorts(container(p.name), p.ports, p.extraArgs);
    const at = '/spec/template/spec/containers/0';
    writeFileSync(path.join(overlay, `${p.name}-replace.json`), JSON.stringify([
      { op: 'replace', path: `${at}/args`, value: args },
      { op: 'replace', path: `${at}/ports`, value: containerPorts },
    ]));
    entries.push(`- path: ${p.name}-patch.json`, `- { path: ${p.name}-replace.json, target: { kind: Deployment, name: ${p.name} } }`);
  }
  writeFileSync(path.join(overlay, 'kustomization.yaml'), [
    'apiVersion: kustomize.config.k8s.io/v1beta1', 'kind: Kustomization',
    `resources: [${path.relative(overlay, path.join(repoRoot, 'config/default'))}]`,
    'patches:', ...entries, '',
  ].join('\n'));
}

describe('kubectl apply -k config/default, as an overlay for one node', () => {
  it("runs the controller and the verifier, which adopt the credentials the chart's issued", async () => {
    const overlay = path.join(work, 'overlay');
    await writeOverlay(overlay);
    await timed('kubectl apply -k', () => kubectl('apply', '--server-side', '-k', overlay));
    const leading = await timed('kustomize controller pod Ready', () => readyPod(controller));
    await timed('kustomize verifier pod Ready', () => readyPod(verifier));
    await expectLockedDown();
    await timed('the Lease taken by the kustomize controller', () =>
      eventually('the Lease held by the kustomize controller', async () => (await leaseHolder())?.startsWith(leading.metadata.name) || undefined, 180_000),
    );
    expect(await whoami(['--token', Buffer.from(secretData().token!, 'base64').toString()])).toBe(userName());
    expect(await credentials()).toEqual(secretData());
  });
});

describe('from kubectl apply -k to the chart, as docs/install.md says', () => {
  const token = () => Buffer.from(secretData().token!, 'base64').toString();
  const certificate = () => [`--client-certificate=${path.join(work, 'user.crt')}`, `--client-key=${path.join(work, 'user.key')}`];

  it('adopts what kustomize made but the CRDs; the chart runs the operator, which serves the same credentials', async () => {
    // The block in docs/install.md, run as written.
    const doc = readFileSync(path.join(repoRoot, 'docs/install.md'), 'utf8').split('### From `kubectl apply -k config/default` to Helm')[1]!;
    const block = /```sh\n([\s\S]*?)```/.exec(doc)![1]!;
    const leading = (await leaseHolder())!;
    expect(leading).toMatch(/^service-user-operator-/);
    await timed('migration commands (docs/install.md)', () => run('bash', ['-euo', 'pipefail', '-c', block], undefined, { cwd: repoRoot }));
    await timed('kustomize pods gone', () =>
      eventually('no operator pods left', async () => ((await podsOf(controller)).length + (await podsOf(verifier)).length === 0) || undefined, 180_000),
    );
    // The kustomize controller, stopped by its Deployment's deletion (SIGTERM), released its Lease.
    expect(await leaseHolder()).toBe('');
    await timed('helm install over the adopted objects', () => run(helm, ['install', release, chart, '--namespace', namespace, '--create-namespace', ...values()]));
    await timed('chart controller pod Ready (migrated)', () => readyPod(controller));
    await timed('chart verifier pod Ready (migrated)', () => readyPod(verifier));
    await expectLockedDown();
    const next = await readyPod(controller);
    await timed('the Lease taken by the chart controller', () =>
      eventually('the Lease held by the chart controller', async () => (await leaseHolder())?.startsWith(next.metadata.name) || undefined, 180_000),
    );
    // Every object config/default made but the CRDs and the namespace is now the release's.
    const manifest = await run(helm, ['get', 'manifest', release, '--namespace', namespace]);
    const released = new Set((loadAll(manifest) as { kind: string; metadata: { name: string } }[]).filter(Boolean).map((o) => `${o.kind}/${o.metadata.name}`));
    const made = (loadAll(await kubectl('kustomize', path.join(repoRoot, 'config/default'))) as { kind: string; metadata: { name: string } }[])
      .filter((o) => !['CustomResourceDefinition', 'Namespace', 'PodDisruptionBudget'].includes(o.kind))
      .map((o) => `${o.kind}/${o.metadata.name}`);
    expect(made.filter((o) => !released.has(o))).toEqual([]);
    await kubectl('get', 'crd', 'serviceusers.serviceusers.dev');
    expect(await credentials()).toEqual(secretData());
    expect(await whoami(['--token', token()])).toBe(userName());
    expect(await whoami(certificate())).toContain('build-bot');
  });
});

async function whoami(auth: string[]): Promise<string> {
  // Only the given credentials: a kubeconfig naming the cluster and its CA, no user.
  const ca = path.join(work, 'cluster', 'pki', 'ca.crt');
  const out = await run('kubectl', ['auth', 'whoami', '--kubeconfig=/dev/null', `--server=${server().origin}`, `--certificate-authority=${ca}`, ...auth, '-o', 'jsonpath={.status.userInfo.username}']);
  return out.trim();
}
