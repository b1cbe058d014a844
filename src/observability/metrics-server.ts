// The /metrics endpoint, guarded as controller-runtime's WithAuthenticationAndAuthorization
// guards it: /metrics names every tenant's ServiceUsers (namespace, name, friendly name), so
// it is served over HTTPS and a scrape is answered only when its bearer token authenticates
// (a TokenReview) and is allowed `get` on the nonResourceURL /metrics (a SubjectAccessReview).
// Plain HTTP is for a local run only, on a loopback address.
//
// Invariants: verdicts are cached for a minute, allowed and refused apart and each bounded, so a
// scrape every 15 s costs two API calls a minute and a flood of made-up tokens can evict no
// scraper's verdict; only failures are throttled per address, and a caller whose verdict is
// cached is answered whatever else comes from its address — an address out of attempts only
// stops tokens not yet reviewed from costing API calls. Tokens are kept only as SHA-256 hashes
// and never logged.
import { createHash } from 'node:crypto';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Registry } from 'prom-client';
import type { Logger } from './logger.ts';
import { splitAddress } from './http.ts';
import { RateLimiter } from './ratelimit.ts';

/** What the guard needs of the Kubernetes client: one JSON request. */
export interface Reviewer {
  request<T>(method: string, path: string, body?: unknown): Promise<T>;
}

type Verdict = { kind: 'allowed'; user: string } | { kind: 'forbidden'; user: string } | { kind: 'unauthenticated' };
export type Admission = { status: 200; user: string } | { status: 401 | 403 | 429 | 503; message: string };

interface UserInfo {
  username: string;
  uid?: string;
  groups?: string[];
  extra?: Record<string, string[]>;
}

/** A map that forgets entries after `ttlMs` and its oldest beyond `max` entries. */
class ExpiringCache<V> {
  private readonly entries = new Map<string, { value: V; until: number }>();
  private readonly ttlMs: number;
  private readonly max: number;
  constructor(ttlMs: number, max: number) {
    this.ttlMs = ttlMs;
    this.max = max;
  }

  get(key: string, now: number): V | undefined {
    const entry = this.entries.get(key);
    if (entry && entry.until > now) return entry.value;
    this.entries.delete(key);
    return undefined;
  }

  set(key: string, value: V, now: number): void {
    this.entries.delete(key);
    this.entries.set(key, { value, until: now + this.ttlMs });
    // Insertion order is age order: the first key is the oldest.
    for (const oldest of this.entries.keys()) {
      if (this.entries.size <= this.max) break;
      this.entries.delete(oldest);
    }
  }
}

export class MetricsAccess {
  private readonly allowed: ExpiringCache<Verdict>;
  private readonly refused: ExpiringCache<Verdict>;
  private readonly inflight = new Map<string, Promise<Verdict>>();
  private readonly limiter: RateLimiter;
  private readonly now: () => number;
  private readonly log: Logger | undefined;
  private readonly client: Reviewer;

  constructor(client: Reviewer, options: { ttlMs?: number; maxEntries?: number; limiter?: RateLimiter; now?: () => number; log?: Logger } = {}) {
    this.client = client;
    this.log = options.log;
    // controller-runtime's filter caches both reviews for a minute, too.
    const ttl = options.ttlMs ?? 60_000;
    this.allowed = new ExpiringCache(ttl, options.maxEntries ?? 256);
    this.refused = new ExpiringCache(ttl, options.maxEntries ?? 256);
    this.limiter = options.limiter ?? new RateLimiter();
    this.now = options.now ?? Date.now;
  }

  /** Whether a request with this Authorization header, from this address, may read /metrics. */
  async admit(authorization: string | undefined, address: string): Promise<Admission> {
    const token = /^Bearer\s+(\S+)$/i.exec(authorization ?? '')?.[1];
    if (!token) return this.failed(address, { kind: 'unauthenticated' });
    const key = createHash('sha256').update(token).digest('hex');
    const now = this.now();
    const cached = this.allowed.get(key, now) ?? this.refused.get(key, now);
    if (cached) return cached.kind === 'allowed' ? { status: 200, user: cached.user } : this.failed(address, cached);
    // Out of attempts: a token not yet reviewed would cost API calls; it is refused unasked.
    if (this.limiter.exhausted(address)) return tooMany;
    let pending = this.inflight.get(key);
    if (!pending) {
      pending = this.review(token).finally(() => this.inflight.delete(key));
      this.inflight.set(key, pending);
    }
    let verdict: Verdict;
    try {
      verdict = await pending;
    } catch (err) {
      // Not the caller's failure, and not cached: the next scrape asks again. The cause is the
      // operator's to read (it may name its ServiceAccount), not an unauthenticated caller's.
      this.log?.warn({ err: err instanceof Error ? err.message : String(err) }, 'cannot review a metrics scrape\'s token (the operator needs create on tokenreviews and subjectaccessreviews)');
      return { status: 503, message: 'cannot review the token with the Kubernetes API now; try again' };
    }
    (verdict.kind === 'allowed' ? this.allowed : this.refused).set(key, verdict, this.now());
    return verdict.kind === 'allowed' ? { status: 200, user: verdict.user } : this.failed(address, verdict);
  }

  private failed(address: string, verdict: Exclude<Verdict, { kind: 'allowed' }>): Admission {
    if (!this.limiter.take(address)) return tooMany;
    if (verdict.kind === 'forbidden') return { status: 403, message: `${verdict.user} may not get the nonResourceURL /metrics: bind it to the metrics-reader ClusterRole` };
    return { status: 401, message: 'authenticate with a Kubernetes bearer token (a ServiceAccount token) allowed get on the nonResourceURL /metrics' };
  }

  private async review(token: string): Promise<Verdict> {
    const tr = await this.client.request<{ status?: { authenticated?: boolean; user?: UserInfo } }>('POST', '/apis/authentication.k8s.io/v1/tokenreviews', {
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'TokenReview',
      spec: { token },
    });
    const user = tr.status?.user;
    if (!tr.status?.authenticated || !user?.username) return { kind: 'unauthenticated' };
    const sar = await this.client.request<{ status?: { allowed?: boolean } }>('POST', '/apis/authorization.k8s.io/v1/subjectaccessreviews', {
      apiVersion: 'authorization.k8s.io/v1',
      kind: 'SubjectAccessReview',
      spec: { user: user.username, uid: user.uid, groups: user.groups, extra: user.extra, nonResourceAttributes: { path: '/metrics', verb: 'get' } },
    });
    return sar.status?.allowed ? { kind: 'allowed', user: user.username } : { kind: 'forbidden', user: user.username };
  }
}

const tooMany: Admission = { status: 429, message: 'too many failed authentication attempts from this address; slow down' };

/** Whether HOST:PORT binds a loopback address only (":8080" binds every interface). */
export function isLoopback(address: string): boolean {
  const [host] = splitAddress(address);
  return host === 'localhost' || host === '::1' || (!!host && /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host));
}

/** Why a metrics binding is refused, or undefined: plain HTTP only on loopback. */
export function metricsBindingProblem(address: string, secure: boolean): string | undefined {
  try {
    if (isLoopback(address) || secure) return undefined;
  } catch (err) {
    return `--metrics-bind-address: ${err instanceof Error ? err.message : String(err)}`;
  }
  return `--no-metrics-secure serves /metrics as plain HTTP without authentication, which names every tenant's ServiceUsers: it is allowed only on a loopback address (--metrics-bind-address 127.0.0.1:PORT), not "${address}"`;
}

/** The serving pair and word of each new one (the verification service's: src/verify/serving-certificate.ts). */
export interface MetricsTls {
  current(): { certPem: string; keyPem: string };
  onChange(listener: (pair: { certPem: string; keyPem: string }) => void): void;
}

export type MetricsServing = { secure: true; tls: MetricsTls; access: MetricsAccess } | { secure: false };

export async function serveMetrics(address: string, registry: Registry, serving: MetricsServing, log: Logger): Promise<Server> {
  const problem = metricsBindingProblem(address, serving.secure);
  if (problem) throw new Error(problem);
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    answer(req, res, registry, serving).catch((err: unknown) => {
      log.error({ err: err instanceof Error ? err.message : String(err) }, 'metrics request failed');
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
      res.end('internal error\n');
    });
  };
  let server: Server;
  if (serving.secure) {
    const tls = serving.tls;
    const https = createHttpsServer({ cert: tls.current().certPem, key: tls.current().keyPem, minVersion: 'TLSv1.2' }, handler);
    // A renewed or reloaded certificate serves new connections at once; open ones keep theirs.
    tls.onChange((pair) => https.setSecureContext({ cert: pair.certPem, key: pair.keyPem, minVersion: 'TLSv1.2' }));
    server = https;
  } else {
    server = createHttpServer(handler);
  }
  server.headersTimeout = 5_000;
  server.requestTimeout = 10_000;
  server.on('clientError', (_err, socket) => socket.destroy());
  const [host, port] = splitAddress(address);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return server;
}

async function answer(req: IncomingMessage, res: ServerResponse, registry: Registry, serving: MetricsServing): Promise<void> {
  const text = (status: number, body: string, headers: Record<string, string> = {}) => res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', ...headers }).end(body);
  if ((req.url ?? '').split('?')[0] !== '/metrics') return void text(404, 'not found\n');
  if (req.method !== 'GET') return void text(405, '/metrics takes GET\n', { allow: 'GET' });
  if (serving.secure) {
    const admission = await serving.access.admit(req.headers.authorization, req.socket.remoteAddress ?? 'unknown');
    if (admission.status !== 200) {
      const headers: Record<string, string> = admission.status === 401 ? { 'www-authenticate': 'Bearer realm="service-user-operator metrics"' } : admission.status === 429 ? { 'retry-after': '1' } : {};
      return void text(admission.status, `${admission.message}\n`, headers);
    }
  }
  const body = await registry.metrics();
  res.writeHead(200, { 'content-type': registry.contentType, 'cache-control': 'no-store' }).end(body);
}
