// The controller runtime on its own: the work queue, and the informer against an HTTPS
// server that produces the faults a real API server will not on demand (failed lists,
// silent watches, expired resource versions); and leader election against a Lease endpoint
// that stops answering.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { Informer } from '../../src/controller/informer.ts';
import { KubeClient } from '../../src/controller/kube.ts';
import { LeaderElector } from '../../src/controller/leader.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { WorkQueue } from '../../src/controller/queue.ts';
import { requestInfo } from '../../src/controller/request-info.ts';
import { eventually } from '../kube.ts';

/** A gate work can wait at until the test opens it (then it stays open). */
function gate(): { wait: Promise<void>; open: () => void } {
  let open!: () => void;
  const wait = new Promise<void>((r) => (open = r));
  return { wait, open };
}

describe('WorkQueue', () => {
  afterEach(() => vi.useRealTimers());

  it('runs a key once however often it is added while waiting', async () => {
    const runs: string[] = [];
    let release!: () => void;
    const blocker = new Promise<void>((r) => (release = r));
    const q = new WorkQueue(async (k) => {
      runs.push(k);
      if (k === 'block') await blocker;
    }, { concurrency: 1 });
    q.add('block');
    for (let i = 0; i < 5; i++) q.add('a');
    release();
    await eventually('both keys run and the queue idle', () => runs.length === 2 && q.size.pending === 0 && q.size.processing === 0);
    expect(runs).toEqual(['block', 'a']);
  });

  it('never runs one key twice at once; an add during a run runs it again after', async () => {
    let running = 0;
    let maxRunning = 0;
    let runs = 0;
    const work = gate();
    const q = new WorkQueue(async () => {
      running++;
      maxRunning = Math.max(maxRunning, running);
      runs++;
      await work.wait;
      running--;
    }, { concurrency: 4 });
    q.add('k');
    await eventually('the first run under way', () => running === 1);
    q.add('k');
    q.add('k');
    work.open();
    await eventually('two runs', () => runs === 2 && running === 0 && q.size.pending === 0 && q.size.processing === 0);
    expect(maxRunning).toBe(1);
  });

  it('bounds concurrency across keys', async () => {
    let running = 0;
    let maxRunning = 0;
    const work = gate();
    const q = new WorkQueue(async () => {
      running++;
      maxRunning = Math.max(maxRunning, running);
      await work.wait;
      running--;
    }, { concurrency: 3 });
    for (let i = 0; i < 20; i++) q.add(`k${i}`);
    await eventually('as many runs as allowed', () => running === 3);
    work.open();
    await eventually('all done', () => q.size.pending === 0 && q.size.processing === 0);
    expect(maxRunning).toBe(3);
  });

  it('retries a failing key with growing, jittered delays, and resets after success', async () => {
    vi.useFakeTimers();
    const times: number[] = [];
    const q = new WorkQueue(async () => {
      times.push(Date.now());
      if (times.length < 4) throw new Error('boom');
    }, { baseRetryMs: 40, maxRetryMs: 1000, random: () => 1 });
    q.add('k');
    await vi.advanceTimersByTimeAsync(1000);
    vi.useRealTimers();
    expect(times).toHaveLength(4);
    const gaps = times.slice(1).map((t, i) => t - times[i]!);
    expect(gaps[0]).toBeGreaterThanOrEqual(35);
    expect(gaps[1]).toBeGreaterThanOrEqual(75);
    expect(gaps[2]).toBeGreaterThanOrEqual(155);
    expect(q.retryDelay(30)).toBe(1000);
    const jittered = new WorkQueue(async () => {}, { baseRetryMs: 100, random: () => 0 });
    expect(jittered.retryDelay(3)).toBe(200);
  });

  it('requeues after the delay a reconcile asks for, keeping the earliest timer', async () => {
    vi.useFakeTimers();
    const times: number[] = [];
    const q = new WorkQueue(async () => {
      times.push(Date.now());
      return times.length === 1 ? { requeueAfterMs: 50 } : {};
    });
    q.addAfter('k', 10_000);
    q.add('k');
    await vi.advanceTimersByTimeAsync(100);
    vi.useRealTimers();
    expect(times).toHaveLength(2);
    expect(times[1]! - times[0]!).toBeGreaterThanOrEqual(45);
    await q.shutdown();
  });

  it('shuts down: waits for running work, drops timers, takes nothing new', async () => {
    let started = false;
    let finished = false;
    const work = gate();
    const q = new WorkQueue(async () => {
      started = true;
      await work.wait;
      finished = true;
    });
    q.add('k');
    q.addAfter('later', 60_000);
    await eventually('the run under way', () => started);
    const stopped = q.shutdown();
    work.open();
    await stopped;
    expect(finished).toBe(true);
    expect(q.size).toEqual({ pending: 0, processing: 0, timers: 0 });
    q.add('again');
    expect(q.size.pending).toBe(0);
  });
});

describe('Informer', () => {
  let server: Server;
  let client: KubeClient;
  let behave: (url: URL, res: ServerResponse) => void = () => {};
  const requests: string[] = [];

  beforeAll(async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'informer-'));
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1',
      '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem')], { stdio: 'ignore' });
    server = createServer({ key: readFileSync(path.join(dir, 'key.pem')), cert: readFileSync(path.join(dir, 'cert.pem')) }, (req, res) => {
      const url = new URL(req.url!, 'https://127.0.0.1');
      requests.push(`${url.searchParams.get('watch') ? 'watch' : 'list'} ${url.searchParams.get('resourceVersion') ?? ''}`.trim());
      behave(url, res);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const kc = new KubeConfig();
    const port = (server.address() as { port: number }).port;
    kc.loadFromClusterAndUser(
      { name: 'fake', server: `https://127.0.0.1:${port}`, caData: readFileSync(path.join(dir, 'cert.pem')).toString('base64'), skipTLSVerify: false },
      { name: 'u', token: 'test' },
    );
    client = new KubeClient(kc);
  });
  afterAll(() => {
    client.close();
    server.closeAllConnections();
    server.close();
  });

  const item = (name: string, rv: string) => ({ metadata: { name, namespace: 'ns', resourceVersion: rv } });
  const resource = { group: 'serviceusers.dev', version: 'v1alpha1', plural: 'serviceusers', namespaced: true };

  it('restarts a failed list with backoff, then follows the watch', async () => {
    requests.length = 0;
    let lists = 0;
    behave = (url, res) => {
      if (!url.searchParams.get('watch')) {
        lists++;
        if (lists === 1) return void res.writeHead(500).end('{"message":"etcd unavailable"}');
        return void res.writeHead(200).end(JSON.stringify({ items: [item('a', '5')], metadata: { resourceVersion: '5' } }));
      }
      res.writeHead(200);
      res.write(`${JSON.stringify({ type: 'ADDED', object: item('b', '6') })}\n`);
      res.write(`${JSON.stringify({ type: 'DELETED', object: item('a', '7') })}\n`);
      // hold the watch open
    };
    const errors: unknown[] = [];
    const seen: string[] = [];
    const informer = new Informer(client, { resource, baseBackoffMs: 20, onError: (e) => errors.push(e), random: () => 0.5 });
    informer.onChange((type, obj) => seen.push(`${type} ${obj.metadata.name}`));
    informer.start();
    await informer.synced;
    await eventually('watch events', () => seen.length === 3);
    expect(errors).toHaveLength(1);
    expect(String(errors[0])).toContain('etcd unavailable');
    expect(seen).toEqual(['ADDED a', 'ADDED b', 'DELETED a']);
    expect(informer.list().map((o) => o.metadata.name)).toEqual(['b']);
    expect(requests).toEqual(['list', 'list', 'watch 5']);
    await informer.stop();
  });

  it('relists when a watch goes silent past its timeout (half-open connection)', async () => {
    requests.length = 0;
    behave = (url, res) => {
      if (!url.searchParams.get('watch')) return void res.writeHead(200).end(JSON.stringify({ items: [item('a', '5')], metadata: { resourceVersion: '5' } }));
      res.writeHead(200); // then nothing, ever
    };
    const errors: string[] = [];
    const informer = new Informer(client, { resource, watchTimeoutSeconds: 1, silenceGraceMs: 100, baseBackoffMs: 10, onError: (e) => errors.push(String(e)) });
    informer.start();
    await eventually('a relist', () => informer.lists >= 2, 5000);
    expect(errors[0]).toContain('silent');
    await informer.stop();
  });

  it('relists on 410 Gone and resumes a watch the server ended', async () => {
    requests.length = 0;
    let watches = 0;
    behave = (url, res) => {
      if (!url.searchParams.get('watch')) return void res.writeHead(200).end(JSON.stringify({ items: [], metadata: { resourceVersion: '10' } }));
      watches++;
      res.writeHead(200);
      if (watches === 1) return void res.end(`${JSON.stringify({ type: 'BOOKMARK', object: { metadata: { resourceVersion: '12' } } })}\n`);
      if (watches === 2) return void res.end(`${JSON.stringify({ type: 'ERROR', object: { metadata: {}, code: 410, message: 'too old' } })}\n`);
    };
    const informer = new Informer(client, { resource, baseBackoffMs: 10 });
    informer.start();
    await eventually('the relist after 410', () => requests.length >= 5);
    await informer.stop();
    expect(requests.slice(0, 5)).toEqual(['list', 'watch 10', 'watch 12', 'list', 'watch 10']);
  });

  it('keeps serving the last good cache while a relist fails', async () => {
    let fail = false;
    let failedLists = 0;
    behave = (url, res) => {
      if (!url.searchParams.get('watch')) {
        if (fail) return void (failedLists++, res.writeHead(503).end('{}'));
        return void res.writeHead(200).end(JSON.stringify({ items: [item('kept', '1')], metadata: { resourceVersion: '1' } }));
      }
      res.writeHead(200);
      fail = true;
      res.end(`${JSON.stringify({ type: 'ERROR', object: { metadata: {}, code: 410 } })}\n`);
    };
    const informer = new Informer(client, { resource, baseBackoffMs: 10, maxBackoffMs: 20 });
    informer.start();
    await informer.synced;
    await eventually('relists that fail', () => failedLists >= 2);
    expect(informer.get('ns/kept')?.metadata.name).toBe('kept');
    await informer.stop();
  });

  it('finds objects by index through list, modify and delete, and caches them trimmed', async () => {
    const su = (name: string, rv: string, friendlyName: string) => ({ metadata: { name, namespace: 'ns', resourceVersion: rv, managedFields: [{ manager: 'x' }] }, spec: { friendlyName } });
    behave = (url, res) => {
      if (!url.searchParams.get('watch')) return void res.writeHead(200).end(JSON.stringify({ items: [su('a', '1', 'build'), su('b', '2', 'build')], metadata: { resourceVersion: '2' } }));
      res.writeHead(200);
      res.write(`${JSON.stringify({ type: 'MODIFIED', object: su('a', '3', 'deploy') })}\n`);
      res.write(`${JSON.stringify({ type: 'DELETED', object: su('b', '4', 'build') })}\n`);
    };
    const informer = new Informer(client, { resource, indexers: { fn: (o) => [(o.spec as { friendlyName: string }).friendlyName] } });
    const names = (v: string) => informer.byIndex('fn', v).map((o) => o.metadata.name).sort();
    let events = 0;
    informer.onChange(() => events++);
    informer.start();
    await informer.synced;
    expect(names('build')).toEqual(['a', 'b']);
    expect(informer.get('ns/a')?.metadata.managedFields).toBeUndefined();
    await eventually('watch events', () => events === 4);
    expect(names('build')).toEqual([]);
    expect(names('deploy')).toEqual(['a']);
    expect(informer.list('ns').map((o) => o.metadata.name)).toEqual(['a']);
    expect(informer.list('other')).toEqual([]);
    await informer.stop();
  });

  it('lists in pages of 500, following continue, and hands each handler what it held before the change', async () => {
    requests.length = 0;
    const pages: string[] = [];
    behave = (url, res) => {
      if (!url.searchParams.get('watch')) {
        pages.push(`limit=${url.searchParams.get('limit')} continue=${url.searchParams.get('continue') ?? ''}`);
        const first = !url.searchParams.get('continue');
        return void res.writeHead(200).end(JSON.stringify(first ? { items: [item('a', '1')], metadata: { resourceVersion: '2', continue: 'next' } } : { items: [item('b', '2')], metadata: { resourceVersion: '2' } }));
      }
      res.writeHead(200);
      res.write(`${JSON.stringify({ type: 'MODIFIED', object: item('a', '3') })}\n`);
      res.write(`${JSON.stringify({ type: 'DELETED', object: item('b', '4') })}\n`);
    };
    const informer = new Informer(client, { resource });
    const seen: string[] = [];
    informer.onChange((type, obj, old) => seen.push(`${type} ${obj.metadata.name}@${obj.metadata.resourceVersion} was ${old?.metadata.resourceVersion ?? 'none'}`));
    informer.start();
    await informer.synced;
    expect(pages).toEqual(['limit=500 continue=', 'limit=500 continue=next']);
    expect(informer.list().map((o) => o.metadata.name).sort()).toEqual(['a', 'b']);
    await eventually('watch events', () => seen.length === 4);
    expect(seen).toEqual(['ADDED a@1 was none', 'ADDED b@2 was none', 'MODIFIED a@3 was 1', 'DELETED b@4 was 2']);
    await informer.stop();
  });
});

describe('requestInfo', () => {
  it.each([
    ['GET', '/apis/serviceusers.dev/v1alpha1/namespaces/a/serviceusers?limit=500', 'list', 'serviceusers.dev', 'serviceusers'],
    ['GET', '/apis/serviceusers.dev/v1alpha1/namespaces/a/serviceusers?watch=1&resourceVersion=5', 'watch', 'serviceusers.dev', 'serviceusers'],
    ['GET', '/api/v1/namespaces/a/secrets/x', 'get', '', 'secrets'],
    ['PATCH', '/apis/serviceusers.dev/v1alpha1/namespaces/a/serviceusers/x/status?fieldManager=f&force=true', 'patch', 'serviceusers.dev', 'serviceusers/status'],
    ['POST', '/api/v1/namespaces/a/events', 'create', '', 'events'],
    ['PUT', '/apis/coordination.k8s.io/v1/namespaces/a/leases/l', 'update', 'coordination.k8s.io', 'leases'],
    ['DELETE', '/apis/cert-manager.io/v1/namespaces/a/certificates/c', 'delete', 'cert-manager.io', 'certificates'],
    ['DELETE', '/api/v1/namespaces/a/secrets', 'deletecollection', '', 'secrets'],
    ['GET', '/apis/serviceusers.dev/v1alpha1/roles?watch=true', 'watch', 'serviceusers.dev', 'roles'],
    ['GET', '/api/v1/namespaces/a', 'get', '', 'namespaces'],
    ['POST', '/api/v1/namespaces/a/serviceaccounts/s/token', 'create', '', 'serviceaccounts/token'],
  ])('%s %s is %s on %s %s', (method, path, verb, group, resource) => {
    expect(requestInfo(method, path, 200)).toEqual({ verbs: [verb], group, resource });
  });
  it('a server-side apply that created its object was authorized as patch and create', () => {
    expect(requestInfo('PATCH', '/api/v1/namespaces/a/secrets/x?fieldManager=f', 201).verbs).toEqual(['patch', 'create']);
  });
});

describe('LeaderElector', () => {
  // One Lease, served by two HTTPS endpoints (one per replica) with optimistic concurrency;
  // replica A's endpoint can stop answering, as a stalled connection does.
  const lease: { body?: { metadata: Record<string, unknown>; spec: Record<string, unknown> }; rv: number } = { rv: 0 };
  const servers: Server[] = [];
  const clients: KubeClient[] = [];
  const puts: { holder: string; at: number }[] = [];
  /** Lease reads per endpoint: a replica's attempts to take or renew it. */
  const reads: Record<string, number> = {};
  let stallA = false;
  let heldAborted = 0;

  async function endpoint(name: string, stalled: () => boolean): Promise<KubeClient> {
    const dir = mkdtempSync(path.join(tmpdir(), 'leader-'));
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1',
      '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem')], { stdio: 'ignore' });
    const server = createServer({ key: readFileSync(path.join(dir, 'key.pem')), cert: readFileSync(path.join(dir, 'cert.pem')) }, (req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        if (stalled()) {
          res.on('close', () => heldAborted++);
          return; // never answered
        }
        const send = (status: number, object: unknown) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(object));
        if (req.method === 'GET') reads[name] = (reads[name] ?? 0) + 1;
        if (req.method === 'GET') return lease.body ? send(200, lease.body) : send(404, { kind: 'Status', code: 404, reason: 'NotFound', message: 'not found' });
        const object = JSON.parse(body) as { metadata: Record<string, unknown>; spec: Record<string, unknown> };
        if (req.method === 'POST' && lease.body) return send(409, { kind: 'Status', code: 409, reason: 'AlreadyExists', message: 'exists' });
        if (req.method === 'PUT' && object.metadata.resourceVersion !== String(lease.rv)) return send(409, { kind: 'Status', code: 409, reason: 'Conflict', message: 'conflict' });
        lease.rv++;
        lease.body = { ...object, metadata: { ...object.metadata, resourceVersion: String(lease.rv) } };
        puts.push({ holder: String(object.spec.holderIdentity), at: Date.now() });
        send(200, lease.body);
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    servers.push(server);
    const kc = new KubeConfig();
    kc.loadFromClusterAndUser(
      { name, server: `https://127.0.0.1:${(server.address() as { port: number }).port}`, caData: readFileSync(path.join(dir, 'cert.pem')).toString('base64'), skipTLSVerify: false },
      { name: 'u', token: 'test' },
    );
    const client = new KubeClient(kc);
    clients.push(client);
    return client;
  }
  afterAll(() => {
    for (const c of clients) c.close();
    for (const s of servers) {
      s.closeAllConnections();
      s.close();
    }
  });

  it('a leader whose requests hang gives up at the renew deadline, before the other replica can take the Lease', { timeout: 15_000 }, async () => {
    const timings = { leaseDurationMs: 1500, renewDeadlineMs: 1000, retryPeriodMs: 200 };
    const log = createLogger('silent');
    const events: { who: string; what: string; at: number }[] = [];
    const elector = (who: string, client: KubeClient) =>
      new LeaderElector({
        client, namespace: 'ns', name: 'lease', identity: who, ...timings, log,
        onStartedLeading: () => events.push({ who, what: 'started', at: Date.now() }),
        onStoppedLeading: () => events.push({ who, what: 'stopped', at: Date.now() }),
      });
    const a = elector('a', await endpoint('a', () => stallA));
    a.start();
    await eventually('a to lead', () => a.leading);
    const b = elector('b', await endpoint('b', () => false));
    b.start();
    await eventually('b to try for the Lease three times', () => (reads.b ?? 0) >= 3);
    expect(b.leading).toBe(false);

    stallA = true;
    const stalledAt = Date.now();
    const lastRenewal = puts.filter((p) => p.holder === 'a').at(-1)!.at;
    await eventually('a to give up', () => events.some((e) => e.who === 'a' && e.what === 'stopped'), 5000);
    await eventually('b to lead', () => b.leading, 5000);
    const stopped = events.find((e) => e.who === 'a' && e.what === 'stopped')!.at;
    const taken = puts.find((p) => p.holder === 'b')!.at;
    // a stopped within the renew deadline of its last renewal (give or take a timer tick),
    // well before the lease ran out; b took the Lease only after a had stopped.
    expect(stopped - lastRenewal).toBeLessThan(timings.renewDeadlineMs + 150);
    expect(stopped).toBeLessThan(lastRenewal + timings.leaseDurationMs);
    expect(taken).toBeGreaterThan(stopped);
    expect(a.leading).toBe(false);
    // The hanging requests were aborted, not left to the 30 s socket timeout.
    expect(heldAborted).toBeGreaterThan(0);
    expect(stopped - stalledAt).toBeLessThan(timings.renewDeadlineMs + 150);
    await b.stop();
  });

  it('refuses timings where a leader could outlive its lease', () => {
    const base = { client: clients[0]!, namespace: 'ns', name: 'lease', identity: 'x', log: createLogger('silent'), onStartedLeading: () => undefined, onStoppedLeading: () => undefined };
    expect(() => new LeaderElector({ ...base, leaseDurationMs: 10_000, renewDeadlineMs: 10_000 })).toThrow(/leaseDuration \(10000 ms\) must be greater than renewDeadline/);
    expect(() => new LeaderElector({ ...base, renewDeadlineMs: 2_000, retryPeriodMs: 2_000 })).toThrow(/renewDeadline \(2000 ms\) must be greater than 1.2 × retryPeriod/);
  });
});
