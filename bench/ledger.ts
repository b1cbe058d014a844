// The revocation ledger at scale: N ServiceUsers with client certificates (10,000 by default)
// whose end dates fall in the same minute, reconciled by the operator as a process. For each:
// how late its Secret is wiped (a watch on the Secrets; target p99 ≤ 2 s) and how late its
// serial appears on the CRL the operator publishes at /v1/crl (polled; target ≤ 5 s). Then a
// namespace of D more such users (5,000 by default, all with live certificates) is deleted:
// the seconds until the namespace is gone, and every one of their serials on the CRL.
//
// LEDGER_USERS, LEDGER_DELETE_USERS and LEDGER_LEAD_SECONDS (the time from the start of the
// rollout to the first end date: the rollout must finish before it) size it.
import { request, type RequestOptions } from 'node:https';
import type { KubeConfig } from '@kubernetes/client-node';
import { Informer } from '../src/controller/informer.ts';
import { ApiError, isConflict, resourcePath, type KubeClient, type KubeObject } from '../src/controller/kube.ts';
import { resources } from '../src/api/resources.ts';
import { withControlPlane } from './cluster.ts';
import { parseMetrics, startOperatorProcess, sumOf, type OperatorProcess } from './operator-process.ts';
import { operatorQuiet } from './rollout.ts';
import { cpuSecondsOf } from './cpu.ts';

const percentile = (xs: number[], p: number) => {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
};
const summary = (xs: number[]) => ({ p50: percentile(xs, 50), p99: percentile(xs, 99), max: xs.length ? Math.max(...xs) : NaN });

function get(port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method: 'GET', path, rejectUnauthorized: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => (res.statusCode === 200 ? resolve(Buffer.concat(chunks).toString()) : reject(new Error(`GET ${path}: ${res.statusCode}`))));
    });
    req.on('error', reject);
    req.end();
  });
}

/** The serials and CRL number of a PEM CRL: a DER walk, fast enough to poll a 20,000-entry list. */
export function crlContents(pem: string): { number: number; serials: string[] } {
  const der = Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
  const read = (at: number) => {
    const tag = der[at]!;
    let len = der[at + 1]!;
    let head = 2;
    if (len & 0x80) {
      const n = len & 0x7f;
      len = 0;
      for (let i = 0; i < n; i++) len = len * 256 + der[at + 2 + i]!;
      head += n;
    }
    return { tag, start: at + head, end: at + head + len };
  };
  const children = (el: { start: number; end: number }) => {
    const out = [];
    for (let at = el.start; at < el.end; ) {
      const c = read(at);
      out.push(c);
      at = c.end;
    }
    return out;
  };
  const integer = (el: { start: number; end: number }) => der.subarray(el.start, el.end).toString('hex').replace(/^00(?=.)/, '');
  const tbs = children(read(0))[0]!;
  const parts = children(tbs);
  const serials: string[] = [];
  let number = NaN;
  for (const p of parts.slice(4)) {
    if (p.tag === 0x30) for (const entry of children(p)) serials.push(integer(children(entry)[0]!));
    if (p.tag === 0xa0) {
      for (const ext of children(children(p)[0]!)) {
        const [oid, ...rest] = children(ext);
        if (der.subarray(oid!.start, oid!.end).toString('hex') === '551d14') number = parseInt(integer(read(rest[rest.length - 1]!.start)), 16);
      }
    }
  }
  return { number, serials };
}

/**
 * Retries a request the connection dropped (a kept-alive socket the API server closed as it
 * was reused: "socket hang up" under load); an HTTP error is the API server's answer and is not retried.
 */
async function retrying<T>(what: string, call: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (err) {
      if (err instanceof ApiError || attempt >= 5) throw err;
      process.stderr.write(`ledger: ${what}: ${String(err)}; retrying\n`);
      await new Promise((r) => setTimeout(r, 200 * attempt));
    }
  }
}

/** ServiceUsers su-0 … su-(count-1), 16 requests in flight; one created by an attempt whose answer was lost counts. */
async function createUsers(client: KubeClient, namespace: string, count: number, spec: (i: number) => object = () => ({})): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (next < count) {
        const i = next++;
        let tries = 0;
        await retrying(`create ${namespace}/su-${i}`, () =>
          client.request('POST', resourcePath(resources.serviceUsers, namespace), {
            apiVersion: 'serviceusers.dev/v1alpha1', kind: 'ServiceUser', metadata: { name: `su-${i}` },
            spec: { email: 'bench@example.com', accounts: ['bench'], ...spec(i) },
          }).catch((err: unknown) => {
            if (tries++ > 0 && isConflict(err)) return undefined;
            throw err;
          }),
        );
      }
    }),
  );
}

/** Waits until `count` ServiceUsers in `namespace` are Active with a certificate; fails once `deadline` passes. */
async function untilIssued(client: KubeClient, namespace: string, count: number, deadline: number): Promise<void> {
  for (;;) {
    let issued = 0;
    let cont: string | undefined;
    do {
      const page = await retrying('list', () =>
        client.get<{ items: { status?: { phase?: string; certificate?: unknown } }[]; metadata: { continue?: string } }>(
          `${resourcePath(resources.serviceUsers, namespace)}?limit=2000${cont ? `&continue=${encodeURIComponent(cont)}` : ''}`,
        ),
      );
      issued += page.items.filter((o) => o.status?.phase === 'Active' && o.status.certificate).length;
      cont = page.metadata.continue || undefined;
    } while (cont);
    if (issued >= count) return;
    if (Date.now() > deadline) throw new Error(`${namespace}: ${issued} of ${count} Active with a certificate by the first end date; raise LEDGER_LEAD_SECONDS`);
    await new Promise((r) => setTimeout(r, 1000));
  }
}

/** name → certificate serial of every ServiceUser in `namespace`. */
async function serialsOf(client: KubeClient, namespace: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  let cont: string | undefined;
  do {
    const page = await client.get<{ items: (KubeObject & { status?: { certificate?: { serialNumber?: string } } })[]; metadata: { continue?: string } }>(
      `${resourcePath(resources.serviceUsers, namespace)}?limit=2000${cont ? `&continue=${encodeURIComponent(cont)}` : ''}`,
    );
    for (const su of page.items) if (su.status?.certificate?.serialNumber) out.set(su.metadata.name, su.status.certificate.serialNumber.toLowerCase());
    cont = page.metadata.continue || undefined;
  } while (cont);
  return out;
}

/** ConfigMap writes the API server has served (its own apiserver_request_total). */
async function configMapWrites(kc: KubeConfig): Promise<number> {
  const opts: RequestOptions = {};
  await kc.applyToHTTPSOptions(opts);
  const text = await new Promise<string>((resolve, reject) => {
    const req = request(new URL('/metrics', kc.getCurrentCluster()!.server), { ...opts, method: 'GET' }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`GET /metrics: ${res.statusCode}`))));
    });
    req.on('error', reject);
    req.end();
  });
  return sumOf(parseMetrics(text), 'apiserver_request_total', (l) => l.resource === 'configmaps' && ['POST', 'PUT'].includes(l.verb ?? ''));
}

/**
 * The floor of an expiry window: what the API server does with the least an expiry must
 * write — the Secret's credentials removed, the status set to Expired — issued by a bare
 * client at each end date, all at once (no worker limit, no ledger, no reads, no events).
 * Its ServiceUsers live in a namespace the operator does not watch. Returns each Secret
 * wipe's lateness (until the API server answered the patch).
 */
async function floorObjects(client: KubeClient, namespace: string, count: number): Promise<void> {
  // Credentials the size of the operator's (token, key, certificate chain, PKCS#12).
  const filler = (n: number) => Buffer.alloc(n, 7).toString('base64');
  let next = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (next < count) {
        const name = `su-${next++}`;
        const su = await retrying(`floor ${name}`, () =>
          client.request<KubeObject>('POST', resourcePath(resources.serviceUsers, namespace), {
            apiVersion: 'serviceusers.dev/v1alpha1', kind: 'ServiceUser', metadata: { name }, spec: { email: 'bench@example.com', accounts: ['bench'] },
          }),
        );
        await retrying(`floor ${name} Secret`, () =>
          client.request('POST', resourcePath(resources.secrets, namespace), {
            apiVersion: 'v1', kind: 'Secret', type: 'Opaque',
            metadata: { name: `${name}-credentials`, ownerReferences: [{ apiVersion: 'serviceusers.dev/v1alpha1', kind: 'ServiceUser', name, uid: su.metadata.uid!, controller: true }] },
            data: { token: filler(60), 'tls.key': filler(240), 'tls.crt': filler(700), 'ca.crt': filler(600), 'keystore.p12': filler(2000) },
          }),
        );
      }
    }),
  );
}

function floorWindow(client: KubeClient, namespace: string, ends: number[]): Promise<number[]> {
  return Promise.all(
    ends.map(async (end, i) => {
      await new Promise((r) => setTimeout(r, Math.max(0, end - Date.now())));
      const name = `su-${i}`;
      await retrying(`floor wipe ${name}`, () =>
        client.mergePatch(resourcePath(resources.secrets, namespace, `${name}-credentials`), { data: { token: null, 'tls.key': null, 'tls.crt': null, 'ca.crt': null, 'keystore.p12': null } }),
      );
      const wiped = Date.now() - end;
      await retrying(`floor status ${name}`, () => client.mergePatch(resourcePath(resources.serviceUsers, namespace, name, 'status'), { status: { phase: 'Expired' } }));
      return wiped;
    }),
  );
}

const cpuOf = (operator: OperatorProcess, controlPlanePid: number) => ({ operator: operator.cpuSeconds(), controlPlane: cpuSecondsOf(controlPlanePid) });
const cpuSince = (before: { operator: number; controlPlane: number }, after: { operator: number; controlPlane: number }) => ({
  operator: Math.round((after.operator - before.operator) * 10) / 10,
  controlPlane: Math.round((after.controlPlane - before.controlPlane) * 10) / 10,
});

export function benchLedger(count = 10_000, deleteCount = Math.round(count / 2), leadSeconds?: number) {
  const lead = (leadSeconds ?? Math.max(90, (count + deleteCount) * 0.07)) * 1000;
  return withControlPlane('ledger', ['service-user-operator', 'ledger', 'ledger-delete', 'ledger-floor'], async ({ controlPlane, kc, client }) => {
    const operator = await startOperatorProcess(controlPlane.kubeconfig, ['ledger', 'ledger-delete'], 'service-user-operator');
    // The floor's objects first, before the operator has anything to do.
    const floorSetup = performance.now();
    await floorObjects(client, 'ledger-floor', count);
    process.stderr.write(`ledger: floor: ${count} ServiceUsers and Secrets in ${Math.round((performance.now() - floorSetup) / 1000)} s\n`);
    // The floor's window: the same spread of end dates, while the operator has nothing to do.
    const floorStart = Date.now() + 5000;
    const floorCpu = cpuOf(operator, controlPlane.pid);
    const floorLateness = await floorWindow(client, 'ledger-floor', Array.from({ length: count }, (_, i) => floorStart + Math.floor((i * 60_000) / count)));
    const floorCpuSeconds = cpuSince(floorCpu, cpuOf(operator, controlPlane.pid));
    process.stderr.write(`ledger: floor window over: wipe p99 ${summary(floorLateness).p99} ms\n`);
    const secrets = new Informer(client, {
      resource: resources.secrets, namespace: 'ledger', labelSelector: 'serviceusers.dev/name',
      // Only whether the credentials are there: 10,000 Secrets' keys are not the benchmark's to hold.
      transform: (s) => ({ metadata: { name: s.metadata.name, resourceVersion: s.metadata.resourceVersion }, data: Object.fromEntries(Object.keys((s.data as object | undefined) ?? {}).map((k) => [k, ''])) }),
    });
    const wiped = new Map<string, number>();
    secrets.onChange((type, s) => {
      const data = (s.data as Record<string, string> | undefined) ?? {};
      if (type !== 'DELETED' && !('tls.crt' in data) && !('token' in data) && !wiped.has(s.metadata.name)) wiped.set(s.metadata.name, Date.now());
    });
    try {
      const rolloutStarted = Date.now();
      const first = rolloutStarted + lead;
      const ends = Array.from({ length: count }, (_, i) => first + Math.floor((i * 60_000) / count));
      process.stderr.write(`ledger: ${deleteCount} users to delete later, then ${count} ending between ${new Date(first).toISOString()} and +60 s\n`);
      await createUsers(client, 'ledger-delete', deleteCount);
      await createUsers(client, 'ledger', count, (i) => ({ endDate: new Date(ends[i]!).toISOString() }));
      await untilIssued(client, 'ledger-delete', deleteCount, first - 5000);
      await untilIssued(client, 'ledger', count, first - 5000);
      const rolloutSeconds = (Date.now() - rolloutStarted) / 1000;
      process.stderr.write(`ledger: ${count + deleteCount} Active in ${Math.round(rolloutSeconds)} s\n`);
      // The window measures expiry, not the tail of the rollout: the operator must be idle first.
      await operatorQuiet(operator, 3000, Math.max(0, first - 10_000 - Date.now())).catch(() => {
        throw new Error(`the operator was still busy with the rollout 10 s before the first end date; raise LEDGER_LEAD_SECONDS`);
      });
      const slackSeconds = Math.round((first - Date.now()) / 1000);
      const serials = await retrying('list', () => serialsOf(client, 'ledger'));
      const doomed = await retrying('list', () => serialsOf(client, 'ledger-delete'));
      if (serials.size !== count || doomed.size !== deleteCount) throw new Error(`certificates recorded: ${serials.size} of ${count}, ${doomed.size} of ${deleteCount}`);
      secrets.start();
      await secrets.synced;
      const before = { writes: await configMapWrites(kc), crl: crlContents(await get(operator.verifyPort, '/v1/crl')), cpu: cpuOf(operator, controlPlane.pid) };

      // Poll the published CRL through the window and 10 s past it: when each serial first shows.
      const listedAt = new Map<string, number>();
      const wanted = new Set(serials.values());
      let fetches = 0;
      let lastCrl = before.crl;
      while (Date.now() < ends[ends.length - 1]! + 10_000 && (listedAt.size < wanted.size || wiped.size < count)) {
        const pem = await retrying('GET /v1/crl', () => get(operator.verifyPort, '/v1/crl'));
        const at = Date.now();
        fetches++;
        lastCrl = crlContents(pem);
        for (const s of lastCrl.serials) if (wanted.has(s) && !listedAt.has(s)) listedAt.set(s, at);
        await new Promise((r) => setTimeout(r, 200));
      }
      const after = { writes: await configMapWrites(kc), cpu: cpuOf(operator, controlPlane.pid) };
      const names = [...serials.keys()];
      const endOf = (name: string) => ends[Number(name.split('-')[1])]!;
      const wipeLateness = names.filter((n) => wiped.has(`${n}-credentials`)).map((n) => wiped.get(`${n}-credentials`)! - endOf(n));
      const crlLateness = names.filter((n) => listedAt.has(serials.get(n)!)).map((n) => listedAt.get(serials.get(n)!)! - endOf(n));

      process.stderr.write(`ledger: expiry window over: ${wiped.size} wiped, ${listedAt.size} listed; deleting namespace ledger-delete\n`);
      // Delete a namespace of live certificate holders: every finalizer revokes one.
      const deleteStarted = performance.now();
      await retrying('delete the namespace', () => client.request('DELETE', '/api/v1/namespaces/ledger-delete'));
      for (;;) {
        const gone = await client.get('/api/v1/namespaces/ledger-delete').then(() => false, () => true);
        if (gone) break;
        if (performance.now() - deleteStarted > 1_200_000) throw new Error('namespace ledger-delete still there after 20 minutes');
        await new Promise((r) => setTimeout(r, 500));
      }
      const deleteSeconds = (performance.now() - deleteStarted) / 1000;
      const final = crlContents(await get(operator.verifyPort, '/v1/crl'));
      const finalSet = new Set(final.serials);
      const ledgerMaps = await client.get<{ items: KubeObject[] }>('/api/v1/namespaces/service-user-operator/configmaps?labelSelector=app.kubernetes.io%2Fcomponent%3Dcrl');
      const sizes = ledgerMaps.items.map((m) => Buffer.byteLength(JSON.stringify(m)));
      return {
        name: 'ledger',
        count,
        kubernetes: controlPlane.version,
        rolloutSeconds: Math.round(rolloutSeconds),
        operatorIdleSecondsBeforeFirstEnd: slackSeconds,
        endDatesWithinSeconds: 60,
        secretWipeLatenessMs: { ...summary(wipeLateness), notWiped: count - wipeLateness.length, early: wipeLateness.filter((x) => x < 0).length, target: 'p99 ≤ 2000' },
        // The least an expiry writes, by a bare client, same end dates, same API server.
        floorSecretWipeLatenessMs: { ...summary(floorLateness), writesPerUser: 2, windowCpuSeconds: floorCpuSeconds },
        windowCpuSeconds: cpuSince(before.cpu, after.cpu),
        crlListingLatenessMs: {
          ...summary(crlLateness),
          notListed: count - crlLateness.length,
          over5s: crlLateness.filter((x) => x > 5000).length,
          pollIntervalMs: 200,
          fetches,
          target: 'every serial on /v1/crl within 5000 (max ≤ 5000)',
        },
        expiryWindow: {
          revocations: count,
          ledgerConfigMapWrites: after.writes - before.writes,
          crlEntriesAtEnd: lastCrl.serials.length,
        },
        namespaceDeletion: {
          users: deleteCount,
          seconds: Math.round(deleteSeconds * 10) / 10,
          serialsOnCrl: [...doomed.values()].filter((s) => finalSet.has(s)).length,
          target: 'completes, every serial on the CRL',
        },
        finalLedger: {
          crlEntries: final.serials.length,
          crlBytes: Buffer.byteLength(await get(operator.verifyPort, '/v1/crl')),
          configMaps: ledgerMaps.items.length,
          largestConfigMapBytes: Math.max(...sizes),
          objectLimitBytes: 1 << 20,
        },
      };
    } finally {
      await secrets.stop();
      await operator.stop();
    }
  });
}
