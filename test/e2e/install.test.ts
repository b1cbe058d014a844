// End to end, as a platform engineer installs it: the image built from the Dockerfile
// (npm run image), a fresh local control plane with one real node (kubelet, containerd,
// runc), `helm install` as docs/install.md says, then the operator's pod serving a
// kube-apiserver's token webhook and client certificates. Every packet stays on this machine:
// the pod uses the host network and the API server calls it on 127.0.0.1.
// Run with `npm run e2e` (root, containerd, runc, podman, mmdebstrap: .ci/install-packages).
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createCa } from '../../src/credentials/ca.ts';
import { callerCa, writeCertificate } from '../callers.ts';
import { repoRoot, startControlPlane, type ControlPlane } from '../cluster/controlplane.ts';
import { helmBinary } from '../helm/helm.ts';
import { eventually } from '../kube.ts';
import { freePort } from '../net.ts';

const release = 'service-user-operator';
const namespace = 'service-user-operator';
const chart = path.join(repoRoot, 'charts/service-user-operator');
const work = mkdtempSync(path.join(tmpdir(), 'e2e-install-'));
const timings: [string, number][] = [];
let cluster: ControlPlane;
let helm: string;
const ports = { verify: 0, metrics: 0, health: 0 };

async function timed<T>(step: string, f: () => Promise<T>): Promise<T> {
  const started = Date.now();
  const value = await f();
  timings.push([step, (Date.now() - started) / 1000]);
  process.stderr.write(`e2e: ${step} took ${((Date.now() - started) / 1000).toFixed(1)}s\n`);
  return value;
}

function run(cmd: string, args: string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { env: { ...process.env, KUBECONFIG: cluster?.kubeconfig ?? '' }, maxBuffer: 64 << 20 }, (err, out, errOut) =>
      err ? reject(new Error(`${path.basename(cmd)} ${args.join(' ')}: ${errOut || err.message}`)) : resolve(out),
    );
    if (input !== undefined) child.stdin!.end(input);
  });
}
const kubectl = (...args: string[]) => run('kubectl', args);
const json = async <T>(...args: string[]) => JSON.parse(await kubectl(...args, '-o', 'json')) as T;

interface Pod { metadata: { name: string; uid: string }; status: { phase: string; conditions?: { type: string; status: string }[] } }
const podsOf = async () => (await json<{ items: Pod[] }>('get', 'pods', '-n', namespace, '-l', 'app.kubernetes.io/name=service-user-operator')).items;
const readyPod = (exclude: string[] = []) =>
  eventually('an operator pod Ready', async () => {
    const pods = (await podsOf()).filter((p) => !exclude.includes(p.metadata.name));
    return pods.find((p) => p.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'));
  }, 300_000);

beforeAll(async () => {
  const image = await timed('image (npm run image)', async () => {
    const out = await run('bash', [path.join(repoRoot, 'test/image/build.sh')]);
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
  for (const k of Object.keys(ports) as (keyof typeof ports)[]) ports[k] = await freePort();
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
    const logs = await kubectl('logs', '-n', namespace, '-l', 'app.kubernetes.io/name=service-user-operator', '--tail=40', '--prefix').catch((err: Error) => err.message);
    process.stderr.write(`e2e: operator logs at the failure:\n${logs}\n`);
  });
});

afterAll(async () => {
  await cluster?.stop();
  rmSync(work, { recursive: true, force: true });
  process.stderr.write(`e2e timings:\n${timings.map(([s, t]) => `  ${t.toFixed(1).padStart(7)}s  ${s}`).join('\n')}\n`);
}, 120_000);

const server = () => new URL(cluster.kubeconfig ? readFileSync(cluster.kubeconfig, 'utf8').match(/server: (\S+)/)![1]! : '');
// What a single-node install with the pod on the host network needs (docs/install.md).
const values = () => [
  '--set', 'image.pullPolicy=Never', '--set', 'replicaCount=1', '--set', 'hostNetwork=true',
  '--set', 'dnsPolicy=ClusterFirstWithHostNet', '--set', 'strategy.type=Recreate',
  // No kube-proxy here: the API server is reached on the address it listens on.
  '--set', 'extraEnv[0].name=KUBERNETES_SERVICE_HOST', '--set', `extraEnv[0].value=${server().hostname}`,
  '--set', 'extraEnv[1].name=KUBERNETES_SERVICE_PORT', '--set-string', `extraEnv[1].value=${server().port}`,
  '--set', `verification.port=${ports.verify}`, '--set', `metrics.port=${ports.metrics}`, '--set', `healthPort=${ports.health}`,
  '--set', 'verification.tokenReviewClientCaSecrets={apiserver-webhook-ca}', '--set', 'podDisruptionBudget.enabled=false',
];

// Carried from the Helm install to the kustomize one: the same user's credentials.
let issued: { user: string; data: Record<string, string> } = { user: '', data: {} };
const secretData = () => issued.data;
const userName = () => issued.user;

describe('helm install on a fresh cluster with a real node', () => {
  let userName = '';
  let firstPod = '';
  let secretData: Record<string, string> = {};

  it('installs as docs/install.md says, and the pod is Ready as 65532 on a read-only root', async () => {
    await timed('helm install', () => run(helm, ['install', release, chart, '--namespace', namespace, '--create-namespace', ...values()]));
    const pod = await timed('operator pod Ready', () => readyPod());
    firstPod = pod.metadata.name;
    // The container's main process, seen from the host: its user and its root mount.
    const pid = (await run('pgrep', ['-f', 'dist/main.js'])).trim().split('\n')[0]!;
    expect(readFileSync(`/proc/${pid}/status`, 'utf8')).toMatch(/^Uid:\s+65532\s+65532\s+65532\s+65532$/m);
    const root = readFileSync(`/proc/${pid}/mountinfo`, 'utf8').split('\n').find((l) => l.split(' ')[4] === '/')!;
    expect(root.split(' ')[5]!.split(',')).toContain('ro');
  });

  it('issues a token and a certificate that the kube-apiserver accepts through the pod', async () => {
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
    const byToken = await whoami(['--token', decoded('token')]);
    writeFileSync(path.join(work, 'user.crt'), decoded('tls.crt'));
    writeFileSync(path.join(work, 'user.key'), decoded('tls.key'), { mode: 0o600 });
    const byCert = await whoami([`--client-certificate=${path.join(work, 'user.crt')}`, `--client-key=${path.join(work, 'user.key')}`]);
    expect(byToken).toContain('ci');
    expect(byToken).toContain('build-bot');
    expect(byCert).toContain('build-bot');
    userName = byToken;
  });

  it('fails over: the leader pod deleted, a new one takes the Lease and serves', async () => {
    await kubectl('delete', 'pod', '-n', namespace, firstPod, '--wait=false');
    const next = await timed('new pod Ready after the leader is deleted', () => readyPod([firstPod]));
    await eventually('the Lease held by the new pod', async () => {
      const leases = (await json<{ items: { spec: { holderIdentity?: string } }[] }>('get', 'leases', '-n', namespace)).items;
      return leases.some((l) => l.spec.holderIdentity?.startsWith(next.metadata.name)) || undefined;
    }, 180_000);
    expect(await whoami(['--token', Buffer.from(secretData.token!, 'base64').toString()])).toBe(userName);
  });

  it('helm upgrade with a changed value rolls the pod and changes no credential', async () => {
    const before = (await podsOf()).map((p) => p.metadata.name);
    await timed('helm upgrade', () => run(helm, ['upgrade', release, chart, '--namespace', namespace, ...values(), '--set', 'logLevel=debug']));
    await timed('upgraded pod Ready', () => readyPod(before));
    const after = await json<{ data: Record<string, string> }>('get', 'secret', '-n', 'ci', 'build-bot-credentials');
    expect(after.data).toEqual(secretData);
    expect(await whoami(['--token', Buffer.from(secretData.token!, 'base64').toString()])).toBe(userName);
  });

  it('helm uninstall leaves the CRDs, the ServiceUsers and their Secrets', async () => {
    await run(helm, ['uninstall', release, '--namespace', namespace, '--wait']);
    await kubectl('get', 'crd', 'serviceusers.serviceusers.dev');
    await kubectl('get', 'serviceuser', '-n', 'ci', 'build-bot');
    expect((await json<{ data: Record<string, string> }>('get', 'secret', '-n', 'ci', 'build-bot-credentials')).data).toEqual(secretData);
    issued = { user: userName, data: secretData };
  });
});

describe('kubectl apply -k config/default, as an overlay for one node', () => {
  it("runs the operator, which adopts the credentials the chart's operator issued", async () => {
    // What a user writes over config/default for this cluster: one replica on the host
    // network, the local image, the API server's address, free ports, the webhook's CA.
    const overlay = path.join(work, 'overlay');
    const args = [
      '--operator-namespace=service-user-operator', '--leader-elect',
      `--metrics-bind-address=:${ports.metrics}`, `--health-probe-bind-address=:${ports.health}`, `--verify-bind-address=:${ports.verify}`,
      '--verify-dns-names=service-user-operator,localhost,127.0.0.1', '--trusted-proxy-hops=0',
      '--tokenreview-client-ca=/etc/service-user-operator/tokenreview-ca/ca.crt',
    ];
    const patch = {
      apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'service-user-operator', namespace },
      spec: {
        replicas: 1, strategy: { type: 'Recreate', rollingUpdate: null },
        template: { spec: {
          hostNetwork: true, dnsPolicy: 'ClusterFirstWithHostNet',
          containers: [{
            name: 'operator', imagePullPolicy: 'Never',
            env: [{ name: 'KUBERNETES_SERVICE_HOST', value: server().hostname }, { name: 'KUBERNETES_SERVICE_PORT', value: server().port }],
            volumeMounts: [{ name: 'tokenreview-ca', mountPath: '/etc/service-user-operator/tokenreview-ca', readOnly: true }],
          }],
          volumes: [{ name: 'tokenreview-ca', secret: { secretName: 'apiserver-webhook-ca' } }],
        } },
      },
    };
    mkdirSync(overlay);
    writeFileSync(path.join(overlay, 'deployment-patch.json'), JSON.stringify(patch));
    // Lists a strategic merge would merge by key (ports by number): replaced whole.
    const container = '/spec/template/spec/containers/0';
    writeFileSync(path.join(overlay, 'replace.json'), JSON.stringify([
      { op: 'replace', path: `${container}/args`, value: args },
      { op: 'replace', path: `${container}/ports`, value: [{ name: 'verify', containerPort: ports.verify }, { name: 'metrics', containerPort: ports.metrics }, { name: 'health', containerPort: ports.health }] },
    ]));
    writeFileSync(path.join(overlay, 'kustomization.yaml'), [
      'apiVersion: kustomize.config.k8s.io/v1beta1', 'kind: Kustomization',
      `resources: [${path.relative(overlay, path.join(repoRoot, 'config/default'))}]`,
      'patches:',
      '- path: deployment-patch.json',
      '- { path: replace.json, target: { kind: Deployment, name: service-user-operator } }', '',
    ].join('\n'));
    await timed('kubectl apply -k', () => kubectl('apply', '--server-side', '-k', overlay));
    await timed('kustomize pod Ready', () => readyPod());
    expect(await whoami(['--token', Buffer.from(secretData().token!, 'base64').toString()])).toBe(userName());
    expect((await json<{ data: Record<string, string> }>('get', 'secret', '-n', 'ci', 'build-bot-credentials')).data).toEqual(secretData());
  });
});

async function whoami(auth: string[]): Promise<string> {
  // Only the given credentials: a kubeconfig naming the cluster and its CA, no user.
  const ca = path.join(work, 'cluster', 'pki', 'ca.crt');
  const out = await run('kubectl', ['auth', 'whoami', '--kubeconfig=/dev/null', `--server=${server().origin}`, `--certificate-authority=${ca}`, ...auth, '-o', 'jsonpath={.status.userInfo.username}']);
  return out.trim();
}
