// Peer: cert-manager and the operator side by side in the same run, each issuing N client
// certificates (BENCH_PEER, 10,000 by default) from a CA into Secrets: the seconds from the
// first create until all N are Ready, and the issuing process's resident memory then.
//
// What keeps it fair:
// - Each side has its own fresh control plane (withControlPlane, as the other benchmarks
//   isolate): neither pays for the other's N objects in etcd and the API server's caches.
//   They run one after the other in the same process, cert-manager first.
// - The same credential: an ECDSA P-256 key and a 90-day certificate for client auth, signed
//   by an ECDSA P-256 CA, in a Secret. So the ServiceUsers ask for a certificate only: no
//   token and no PKCS#12 bundle (both on by default), which cert-manager does not write.
// - The same client: objects created 16 at a time, completion seen by one watch per side
//   (no list polling, whose cost would grow with N on the benchmark's shared cores).
// - Each process's memory read the same way, from /proc/<pid>/status: VmRSS when the last
//   credential is Ready, VmHWM for the peak. cert-manager is the v1.21 the tests build
//   (test/certmanager): one controller process running the controllers a CA Issuer needs.
//   A real install adds a webhook and a cainjector process, not counted here; and the
//   wrapper lets its client make 100 requests a second (burst 200) where cert-manager's own
//   default is 20 (burst 50), so cert-manager is measured faster than it ships.
import { readFileSync } from 'node:fs';
import { createCa } from '../src/credentials/ca.ts';
import { ApiError, isConflict, resourcePath, type KubeClient, type KubeObject, type WatchEvent } from '../src/controller/kube.ts';
import { resources } from '../src/api/resources.ts';
import { startCertManager } from '../test/certmanager/certmanager.ts';
import { withControlPlane } from './cluster.ts';
import { startOperatorProcess } from './operator-process.ts';
import { untilServing } from './rollout.ts';

const concurrency = 16;
const namespace = 'peer';

type Condition = { type: string; status: string };
const isReady = (o: KubeObject) => ((o.status as { conditions?: Condition[] } | undefined)?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');
const isActiveWithCertificate = (o: KubeObject) => {
  const status = o.status as { phase?: string; certificate?: unknown } | undefined;
  return status?.phase === 'Active' && !!status.certificate;
};

interface Side {
  seconds: number;
  memory: { before: Memory; after: Memory };
}
interface Memory {
  rss: number;
  peak: number;
}

/** Resident set size now and its peak (VmHWM), in bytes, of any process. */
function memoryOf(pid: number): Memory {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n');
  const field = (name: string) => Number(/(\d+) kB/.exec(status.find((l) => l.startsWith(name)) ?? '')?.[1] ?? NaN) * 1024;
  return { rss: field('VmRSS:'), peak: field('VmHWM:') };
}

/**
 * Resolves with the time (performance.now()) a watch on `path` has seen `count` objects
 * satisfying `done` at once. A watch the server ends resumes where it was; one whose version
 * expired starts over (its replay of every object rebuilds the set).
 */
export function whenAll(client: KubeClient, path: string, count: number, done: (o: KubeObject) => boolean, timeoutMs: number): { at: Promise<number>; stop: () => void } {
  const abort = new AbortController();
  const seen = new Set<string>();
  let timer: NodeJS.Timeout | undefined;
  const at = new Promise<number>((resolve, reject) => {
    timer = setTimeout(() => (abort.abort(), reject(new Error(`${path}: ${seen.size} of ${count} done after ${timeoutMs / 1000} s`))), timeoutMs);
    void (async () => {
      let rv: string | undefined;
      while (!abort.signal.aborted) {
        await client.watch(`${path}?watch=1${rv ? `&resourceVersion=${rv}` : ''}`, (event: WatchEvent) => {
          if (event.type === 'BOOKMARK') return;
          if (event.type === 'ERROR') {
            rv = undefined; // expired (410): the next watch replays every object
            return;
          }
          rv = event.object.metadata.resourceVersion;
          if (event.type !== 'DELETED' && done(event.object)) seen.add(event.object.metadata.name);
          else seen.delete(event.object.metadata.name);
          if (seen.size < count) return;
          clearTimeout(timer);
          resolve(performance.now());
          abort.abort();
        }, abort.signal).catch((err: unknown) => {
          if (abort.signal.aborted) return;
          clearTimeout(timer);
          abort.abort();
          reject(err);
        });
      }
    })();
  });
  // Stopped before the end (a create failed): no timer left to fail the run later.
  return { at, stop: () => (clearTimeout(timer), abort.abort()) };
}

/**
 * POSTs objects 0 … count-1, `concurrency` in flight. A connection the API server dropped
 * under load is retried (as ledger.ts does); a retry that finds the object created counts.
 */
async function createAll(count: number, post: (i: number) => Promise<unknown>): Promise<void> {
  const one = async (i: number) => {
    for (let attempt = 1; ; attempt++) {
      try {
        return await post(i);
      } catch (err) {
        if (attempt > 1 && isConflict(err)) return;
        if (err instanceof ApiError || attempt >= 5) throw err;
        await new Promise((r) => setTimeout(r, 200 * attempt));
      }
    }
  };
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < count) await one(next++);
  }));
}

/** Seconds from the first create until the watch has seen all `count` done; the process's memory before and then. */
async function timed(client: KubeClient, path: string, count: number, pid: number, post: (i: number) => Promise<unknown>, done: (o: KubeObject) => boolean): Promise<Side> {
  const before = memoryOf(pid);
  // At worst a credential every half second; past that the run has stalled.
  const watch = whenAll(client, path, count, done, Math.max(600_000, count * 500));
  const started = performance.now();
  try {
    await createAll(count, post);
    const at = await watch.at;
    return { seconds: (at - started) / 1000, memory: { before, after: memoryOf(pid) } };
  } finally {
    watch.stop();
  }
}

/** A CA Secret and an Issuer on it, waited for until Ready. */
async function caIssuer(client: KubeClient): Promise<void> {
  const ca = await createCa({ commonName: 'peer bench CA' });
  await client.request('POST', `/api/v1/namespaces/${namespace}/secrets`, {
    apiVersion: 'v1', kind: 'Secret', type: 'kubernetes.io/tls', metadata: { name: 'issuer-ca' },
    data: { 'tls.crt': Buffer.from(ca.certPem).toString('base64'), 'tls.key': Buffer.from(ca.keyPem).toString('base64') },
  });
  await client.request('POST', `/apis/cert-manager.io/v1/namespaces/${namespace}/issuers`, {
    apiVersion: 'cert-manager.io/v1', kind: 'Issuer', metadata: { name: 'ca' }, spec: { ca: { secretName: 'issuer-ca' } },
  });
  for (let i = 0; !isReady(await client.get(`/apis/cert-manager.io/v1/namespaces/${namespace}/issuers/ca`)); i++) {
    if (i > 600) throw new Error('the CA Issuer is not Ready after 60 s');
    await new Promise((r) => setTimeout(r, 100));
  }
}

function certManagerSide(count: number): Promise<Side & { version: string }> {
  return withControlPlane('peer-cert-manager', [namespace], async ({ controlPlane, client }) => {
    const certManager = await startCertManager(controlPlane.kubeconfig);
    try {
      await caIssuer(client);
      const path = `/apis/cert-manager.io/v1/namespaces/${namespace}/certificates`;
      const side = await timed(client, path, count, certManager.pid, (i) =>
        client.request('POST', path, {
          apiVersion: 'cert-manager.io/v1', kind: 'Certificate', metadata: { name: `c-${i}` },
          spec: {
            secretName: `c-${i}`, commonName: `client-${i}`, duration: '2160h', usages: ['client auth', 'digital signature'],
            privateKey: { algorithm: 'ECDSA', size: 256 }, issuerRef: { name: 'ca', kind: 'Issuer' },
          },
        }), isReady);
      return { ...side, version: certManager.version };
    } finally {
      await certManager.stop();
    }
  });
}

function operatorSide(count: number): Promise<Side & { kubernetes: string }> {
  return withControlPlane('peer-operator', ['service-user-operator', namespace], async ({ controlPlane, client }) => {
    const operator = await startOperatorProcess(controlPlane.kubeconfig, [namespace], 'service-user-operator');
    try {
      // Its CA made and its start-up requests done, as cert-manager's Issuer is Ready first.
      await untilServing(operator);
      const path = resourcePath(resources.serviceUsers, namespace);
      const side = await timed(client, path, count, operator.pid, (i) =>
        client.request('POST', path, {
          apiVersion: 'serviceusers.dev/v1alpha1', kind: 'ServiceUser', metadata: { name: `su-${i}` },
          spec: { email: 'bench@example.com', accounts: ['bench'], credentials: { token: { enabled: false }, clientCertificate: { pkcs12: false } } },
        }), isActiveWithCertificate);
      return { ...side, kubernetes: controlPlane.version };
    } finally {
      await operator.stop();
    }
  });
}

const mib = (bytes: number) => Math.round((bytes / 2 ** 20) * 10) / 10;
const round = (x: number) => Math.round(x * 100) / 100;

function report(side: Side, count: number) {
  return {
    seconds: round(side.seconds),
    rssMiB: mib(side.memory.after.rss),
    peakRssMiB: mib(side.memory.after.peak),
    rssBeforeMiB: mib(side.memory.before.rss),
    perCredentialMs: round((side.seconds * 1000) / count),
    // What the N credentials added to the resident set (after less before the first create).
    bytesPerCredential: Math.round((side.memory.after.rss - side.memory.before.rss) / count),
  };
}

export async function benchPeer(count = 10_000) {
  process.stderr.write(`peer: cert-manager, ${count} Certificates…\n`);
  const certManager = await certManagerSide(count);
  process.stderr.write(`peer: cert-manager ${Math.round(certManager.seconds)} s; the operator, ${count} ServiceUsers…\n`);
  const operator = await operatorSide(count);
  return {
    name: 'peer',
    count,
    concurrency,
    kubernetes: operator.kubernetes,
    certManager: { version: certManager.version, process: 'cert-manager controller (test/certmanager; no webhook, no cainjector)', ...report(certManager, count) },
    operator: { process: 'node dist/main.js', ...report(operator, count) },
    // The operator's figure over cert-manager's: below 1 is below cert-manager.
    ratios: {
      time: round(operator.seconds / certManager.seconds),
      rss: round(operator.memory.after.rss / certManager.memory.after.rss),
      peakRss: round(operator.memory.after.peak / certManager.memory.after.peak),
    },
  };
}
