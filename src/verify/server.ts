// The verification service: HTTPS, in every replica, answering from memory (the directory
// fed by the ServiceUser informer, the CRL from the ledger) — no API call per request.
//
//   POST /apis/authentication.k8s.io/v1/tokenreviews   Kubernetes webhook token authentication (callers authenticate)
//   POST /v1/introspect                                  RFC 7662 (callers authenticate)
//   POST /v1/authorize                                   permission in an account (callers authenticate)
//   ANY  /v1/check                                       for gateways (Envoy ext_authz, nginx auth_request):
//                                                        the presented token in Authorization, the
//                                                        caller authenticated by its client certificate
//   GET  /v1/ca.crt, GET /v1/crl                         trust anchor and revocation list
//
// Callers authenticate with a service user's token (Bearer) or client certificate, whose roles
// grant verification:introspect (introspect, check, TokenReview) / verification:authorize, and
// then learn only about identities sharing an account of that grant (scope.ts); or with a
// client certificate from a CA the platform team trusts for callers — --verify-client-ca for
// introspect, authorize and check, --tokenreview-client-ca for TokenReview — platform-wide.
// Failures to authenticate get 401 and are rate-limited per address; only failures count, and
// callers are authenticated before any throttling, so an authenticated caller is never
// refused for others' failures from its address. Bodies are bounded in size and time;
// anything malformed gets a 4xx that says what is wrong. Tokens never reach a log line.
import { X509Certificate } from 'node:crypto';
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { PeerCertificate, TLSSocket } from 'node:tls';
import type { Verifiable } from './directory.ts';
import { identityOf } from '../api/names.ts';
import type { Logger } from '../observability/logger.ts';
import { authorize, certificateCaller, introspect, tokenReview, verifyInScope, verifyPresented } from './answers.ts';
import type { Directory } from './directory.ts';
import { forwardedClient } from './forwarded.ts';
import { RateLimiter } from '../observability/ratelimit.ts';
import { platformWide, scopeOf, visibleAccounts, type Scope } from './scope.ts';
import { splitAddress } from '../observability/http.ts';
import { x509 } from '../credentials/x509.ts';

/** The catalog Role that grants calling the verification service (config/roles/service-user-operator.yaml). */
export const verifierRole = 'service-user-operator.verifier';

/** A 403 for a service user without the permission: what grants it, so the reader can act. */
function notGranted(who: { namespace?: string; name: string }, what: 'introspect' | 'authorize'): string {
  return (
    `${who.namespace}/${who.name} is not granted verification:${what}: the Role ${verifierRole} grants it — ` +
    `bind it with a RoleBinding in namespace ${who.namespace} (subject ServiceUser ${who.name}), in an account the caller shares with the service users it verifies (docs/verification.md)`
  );
}

/** Where the serving pair comes from: the current one, and word of each new one. */
export interface ServingPair {
  current(): { certPem: string; keyPem: string };
  onChange(listener: (pair: { certPem: string; keyPem: string }) => void): void;
}

/** How a process serves verification (its flags): startOperator's and startVerifier's `verification`. */
export interface VerificationSettings {
  address: string;
  /** DNS names and IPs for the serving certificate the built-in CA issues (ignored with tls). */
  dnsNames?: string[];
  /** A serving certificate instead, fixed. */
  tls?: { certPem: string; keyPem: string };
  /** A mounted serving certificate instead, re-read as its files change (cert-manager renews it). */
  tlsFiles?: { certFile: string; keyFile: string };
  /** CAs whose client certificates may call introspect, authorize and check, platform-wide. */
  callerCaPems?: string[];
  /** CAs whose client certificates may call TokenReview (a kube-apiserver's), platform-wide. */
  tokenReviewCaPems?: string[];
  /** TokenReview for anyone who can reach the service: labs only. */
  allowAnonymousTokenReview?: boolean;
  /** Trusted proxies in front of the gateway (X-Forwarded-For), Envoy's xff_num_trusted_hops. */
  trustedProxyHops?: number;
}

/** The server's options from a process's settings and what it has loaded. */
export function verificationOptions(
  v: VerificationSettings,
  deps: { directory: Directory; tls: ServingPair; caPem: string; crl: () => string; metrics: { verifications: { inc(labels: { endpoint: string; result: string }): void } }; log: Logger; now: () => number },
): VerificationOptions {
  return {
    address: v.address,
    directory: deps.directory,
    tls: deps.tls,
    caPem: deps.caPem,
    crl: deps.crl,
    onAnswer: (endpoint, result) => deps.metrics.verifications.inc({ endpoint, result }),
    ...(v.callerCaPems ? { callerCaPems: v.callerCaPems } : {}),
    ...(v.tokenReviewCaPems ? { tokenReviewCaPems: v.tokenReviewCaPems } : {}),
    ...(v.allowAnonymousTokenReview ? { allowAnonymousTokenReview: true } : {}),
    ...(v.trustedProxyHops !== undefined ? { trustedProxyHops: v.trustedProxyHops } : {}),
    log: deps.log,
    now: deps.now,
  };
}

export interface VerificationOptions {
  address: string;
  directory: Directory;
  /** The serving certificate and key (PEM), followed as they change (serving-certificate.ts). */
  tls: ServingPair;
  /** The built-in CA (PEM): served at /v1/ca.crt, trusted for service users' client certificates. */
  caPem: string;
  crl: () => string;
  /** CAs whose client certificates may call introspect, authorize and check, platform-wide (PEM, bundles allowed). */
  callerCaPems?: string[];
  /** CAs whose client certificates may call TokenReview (a kube-apiserver's), platform-wide. */
  tokenReviewCaPems?: string[];
  /** Answer TokenReview for anyone who can reach the service (labs only; warned at start). */
  allowAnonymousTokenReview?: boolean;
  /**
   * Proxies in front of the gateway whose X-Forwarded-For entries are trusted (Envoy's
   * xff_num_trusted_hops); 0, the default, takes the entry the gateway appended.
   */
  trustedProxyHops?: number;
  log: Logger;
  now?: () => number;
  maxBodyBytes?: number;
  limiter?: RateLimiter;
  /** Told of every answer, for metrics: endpoint and result. */
  onAnswer?: (endpoint: string, result: string) => void;
}

class HttpError extends Error {
  readonly status: number;
  /** What the log says when it must say more than the caller is told. */
  readonly logReason: string | undefined;
  constructor(status: number, message: string, logReason?: string) {
    super(message);
    this.status = status;
    this.logReason = logReason;
  }
}

/** What a caller's client certificate is trusted for, by the CA it chains to. */
type Trust = 'verify' | 'tokenreview';
type Caller = { kind: 'serviceuser'; su: Verifiable } | { kind: 'certificate'; subject: string; trustedFor: ReadonlySet<Trust> };

/** Every certificate in a PEM bundle (throws on one that does not parse). */
export function certificatesIn(pem: string): X509Certificate[] {
  return (pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map((block) => new X509Certificate(block));
}

/**
 * Whether `leaf` was issued (and signed) by one of `anchors`. Only the direct issuer counts: a
 * TLS server in Node does not see the intermediates a client sent, so which CA vouches for a
 * certificate from an intermediate is known only when that intermediate is in the flag's
 * bundle. A root alone does not admit certificates from intermediates under it (fail closed).
 */
function issuedByAny(leaf: X509Certificate, anchors: X509Certificate[]): boolean {
  return anchors.some((a) => leaf.checkIssued(a) && leaf.verify(a.publicKey));
}

export async function startVerificationServer(options: VerificationOptions): Promise<Server> {
  const now = options.now ?? Date.now;
  const maxBody = options.maxBodyBytes ?? 64 * 1024;
  const limiter = options.limiter ?? new RateLimiter();
  const log = options.log.child({ component: 'verification' });
  const builtInCa = new X509Certificate(options.caPem);
  // The issuer as status records it (x509.ts's form), for the directory's issuer+serial index.
  const builtInIssuer = new x509.X509Certificate(options.caPem).subject;
  const anchors: Record<Trust, X509Certificate[]> = {
    verify: (options.callerCaPems ?? []).flatMap(certificatesIn),
    tokenreview: (options.tokenReviewCaPems ?? []).flatMap(certificatesIn),
  };
  const hops = options.trustedProxyHops ?? 0;
  // Checked once here so that a bad value fails the start, not a request.
  forwardedClient(undefined, hops);
  if (options.allowAnonymousTokenReview) {
    log.warn('TokenReview answers anonymous callers (--tokenreview-allow-anonymous): anyone who can reach this service learns whose a leaked token is; for labs only');
  }
  // What a TLS connection's client certificate is trusted for is fixed for its life: worked
  // out once per connection (a kube-apiserver keeps its connections open).
  const peers = new WeakMap<TLSSocket, { peer: PeerCertificate; builtIn: boolean; trustedFor: ReadonlySet<Trust> } | null>();

  const trusted = [options.caPem, ...(options.callerCaPems ?? []), ...(options.tokenReviewCaPems ?? [])];
  const server = createServer(
    {
      cert: options.tls.current().certPem,
      key: options.tls.current().keyPem,
      ca: trusted,
      requestCert: true,
      rejectUnauthorized: false,
      minVersion: 'TLSv1.2',
    },
    (req, res) => {
      const started = performance.now();
      handle(req, res).then(
        (outcome) => {
          log.info({ method: req.method, path: route(req), status: res.statusCode, ms: Math.round(performance.now() - started), ...outcome }, 'verification request');
          options.onAnswer?.(endpointOf(route(req)), resultOf(outcome));
        },
        (err: unknown) => {
          const status = err instanceof HttpError ? err.status : 500;
          const message = err instanceof HttpError ? err.message : 'internal error';
          if (!(err instanceof HttpError)) log.error({ err: err instanceof Error ? err.message : String(err) }, 'verification failed');
          if (!res.headersSent) send(res, status, { error: statusText(status), message });
          else res.end();
          log.info({ method: req.method, path: route(req), status, ms: Math.round(performance.now() - started), reason: (err instanceof HttpError && err.logReason) || message }, 'verification request');
          options.onAnswer?.(endpointOf(route(req)), `http_${status}`);
        },
      );
    },
  );
  // Slow clients cannot hold the server: headers within 5 s, the whole request within 10 s.
  server.headersTimeout = 5_000;
  server.requestTimeout = 10_000;
  server.keepAliveTimeout = 30_000;
  server.on('clientError', (_err, socket) => socket.destroy());

  const route = (req: IncomingMessage) => (req.url ?? '').split('?')[0] ?? '';
  const clientAddress = (req: IncomingMessage) => req.socket.remoteAddress ?? 'unknown';

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<Record<string, unknown>> {
    const path = route(req);
    if (req.method === 'GET' && path === '/v1/ca.crt') return void send(res, 200, options.caPem, 'application/x-pem-file'), {};
    if (req.method === 'GET' && path === '/v1/crl') return void send(res, 200, options.crl(), 'application/pkix-crl'), {};
    if (req.method === 'GET' && path === '/healthz') return void send(res, 200, 'ok\n', 'text/plain'), {};
    if (path === '/v1/check' || path.startsWith('/v1/check/')) return check(req, res);
    const known = ['/apis/authentication.k8s.io/v1/tokenreviews', '/v1/introspect', '/v1/authorize'];
    if (!known.includes(path)) throw new HttpError(404, `no such endpoint: ${path}`);
    if (req.method !== 'POST') {
      res.setHeader('allow', 'POST');
      throw new HttpError(405, `${path} takes POST`);
    }
    if (path === '/apis/authentication.k8s.io/v1/tokenreviews') {
      const { scope, callerName } = tokenReviewCaller(req, res);
      const body = (await readJson(req)) as { apiVersion?: unknown; kind?: unknown; spec?: { token?: unknown } };
      if (body.kind !== 'TokenReview' || typeof body.apiVersion !== 'string' || !body.apiVersion.startsWith('authentication.k8s.io/')) {
        throw new HttpError(400, 'expected a TokenReview (apiVersion authentication.k8s.io/v1, kind TokenReview)');
      }
      if (typeof body.spec?.token !== 'string' || !body.spec.token) throw new HttpError(400, 'spec.token must be a non-empty string');
      const answer = tokenReview(options.directory, body.spec.token, now(), scope);
      send(res, 200, { apiVersion: body.apiVersion, kind: 'TokenReview', status: answer.status });
      return { caller: callerName, authenticated: answer.status.authenticated, reason: answer.reason, identity: answer.identity };
    }

    const what = path === '/v1/introspect' ? 'introspect' : 'authorize';
    const caller = authenticate(req);
    if (!caller) {
      throttleFailure(req, res);
      res.setHeader('www-authenticate', 'Bearer realm="service-user-operator"');
      throw new HttpError(401, `authenticate with a service user's token (Authorization: Bearer) or client certificate whose roles grant verification:${what}`);
    }
    const scope = scopeFor(caller, 'verify', what);
    if (!scope) {
      throw new HttpError(
        403,
        caller.kind === 'serviceuser'
          ? notGranted(caller.su.metadata, what)
          : `the client certificate's CA is not trusted for ${path} (only --verify-client-ca CAs are)`,
      );
    }
    const callerName = caller.kind === 'serviceuser' ? identityOf(caller.su) : caller.subject;
    const params = await readParams(req);
    const reported = typeof params.client_address === 'string' && params.client_address ? params.client_address : undefined;
    if (what === 'introspect') {
      if (typeof params.token !== 'string' || !params.token) throw new HttpError(400, 'token must be a non-empty string');
      const answer = introspect(options.directory, params.token, now(), scope, reported);
      send(res, 200, answer.body);
      return { caller: callerName, active: answer.body.active, reason: answer.reason, identity: answer.identity };
    }
    const { token, identity, account, permission } = params;
    if (typeof account !== 'string' || !account) throw new HttpError(400, 'account must be a non-empty string');
    if (typeof permission !== 'string' || !permission) throw new HttpError(400, 'permission must be a non-empty string');
    const hasToken = typeof token === 'string' && token.length > 0;
    const hasIdentity = typeof identity === 'string' && identity.length > 0;
    if (hasToken === hasIdentity) throw new HttpError(400, 'give exactly one of token or identity');
    const answer = authorize(
      options.directory,
      { ...(hasToken ? { token: token as string } : { identity: identity as string }), account, permission, ...(reported ? { clientAddress: reported } : {}) },
      now(),
      scope,
    );
    send(res, 200, { allowed: answer.allowed, reason: answer.reason });
    return { caller: callerName, allowed: answer.allowed, reason: answer.hidden ? "holder outside the caller's accounts" : answer.reason, identity: answer.identity };
  }

  /**
   * Who may ask a TokenReview: a client certificate from a --tokenreview-client-ca CA
   * (platform-wide), or a service user granted verification:introspect (its accounts only).
   * Only failures are throttled, so an authenticated kube-apiserver is never locked out by
   * someone else probing from its address.
   */
  function tokenReviewCaller(req: IncomingMessage, res: ServerResponse): { scope: Scope; callerName: string } {
    if (options.allowAnonymousTokenReview) return { scope: platformWide, callerName: 'anonymous (--tokenreview-allow-anonymous)' };
    const caller = authenticate(req);
    const scope = caller && scopeFor(caller, 'tokenreview', 'introspect');
    if (caller && scope) return { scope, callerName: caller.kind === 'serviceuser' ? identityOf(caller.su) : caller.subject };
    if (caller?.kind === 'serviceuser') throw new HttpError(403, notGranted(caller.su.metadata, 'introspect'));
    throttleFailure(req, res);
    res.setHeader('www-authenticate', 'Bearer realm="service-user-operator"');
    throw new HttpError(
      401,
      'TokenReview callers authenticate: a client certificate from a CA given with --tokenreview-client-ca, or a service user (certificate or Bearer token) granted verification:introspect',
    );
  }

  /**
   * Counts a failure to authenticate against the client's address, and answers 429 once the
   * address is out of attempts. Called only after authentication failed — never before it:
   * a gateway or kube-apiserver that authenticates is answered whoever else probes from its
   * address (a node's SNAT, a shared proxy). Authenticating first costs nothing to throttle:
   * a certificate's trust is worked out once per connection, a token is judged from memory.
   */
  function throttleFailure(req: IncomingMessage, res: ServerResponse): void {
    if (limiter.take(clientAddress(req))) return;
    res.setHeader('retry-after', '1');
    throw new HttpError(429, 'too many failed authentication attempts from this address; slow down');
  }

  /** The caller's scope for an endpoint; undefined when it may not call it at all. */
  function scopeFor(caller: Caller, trust: Trust, what: 'introspect' | 'authorize'): Scope | undefined {
    if (caller.kind === 'certificate') return caller.trustedFor.has(trust) ? platformWide : undefined;
    return scopeOf(caller.su, what);
  }

  /**
   * The gateway protocol: the gateway forwards the request's headers (any method, any path
   * under /v1/check), authenticating itself with its client certificate; the service user's
   * token is the forwarded Authorization header. 200 with X-Serviceuser-* headers lets the
   * request through; 401 and 403 stop it. Optional X-Serviceuser-Account and
   * X-Serviceuser-Permission ask for an authorization decision as well; the client address
   * for allowedCIDRs is the X-Forwarded-For entry the trusted hops appended (forwarded.ts),
   * never one the client wrote.
   */
  async function check(req: IncomingMessage, res: ServerResponse): Promise<Record<string, unknown>> {
    const caller = certificateAuthenticate(req);
    const scope = caller && scopeFor(caller, 'verify', 'introspect');
    if (!caller || !scope) {
      throttleFailure(req, res);
      throw new HttpError(401, 'the gateway must present a client certificate from a CA trusted for callers (--verify-client-ca), or of a service user granted verification:introspect');
    }
    req.resume();
    const match = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '');
    if (!match) {
      res.setHeader('www-authenticate', 'Bearer realm="service-user-operator"');
      throw new HttpError(401, 'no service-user token in Authorization: Bearer');
    }
    const forwarded = forwardedClient(req.headers['x-forwarded-for'], hops);
    const account = req.headers['x-serviceuser-account'] as string | undefined;
    const permission = req.headers['x-serviceuser-permission'] as string | undefined;
    const callerName = caller.kind === 'serviceuser' ? identityOf(caller.su) : caller.subject;
    const { verdict, su, hidden } = verifyInScope(options.directory, match[1]!, now(), scope, forwarded);
    if (!verdict.active || !su) {
      res.setHeader('www-authenticate', 'Bearer realm="service-user-operator", error="invalid_token"');
      throw new HttpError(401, 'invalid token', hidden ? "holder outside the caller's accounts" : verdict.active ? 'unknown' : verdict.reason);
    }
    const identity = identityOf(su);
    if (account || permission) {
      if (!account || !permission) throw new HttpError(400, 'X-Serviceuser-Account and X-Serviceuser-Permission go together');
      const decision = authorize(options.directory, { identity, account, permission }, now(), scope);
      if (!decision.allowed) throw new HttpError(403, decision.reason);
    }
    res.setHeader('x-serviceuser', identity);
    res.setHeader('x-serviceuser-accounts', visibleAccounts(scope, su).join(','));
    send(res, 200, { allowed: true, identity });
    return { caller: callerName, identity, allowed: true };
  }

  function peerOf(socket: TLSSocket) {
    let known = peers.get(socket);
    if (known === undefined) {
      const peer = socket.authorized ? socket.getPeerCertificate?.() : undefined;
      if (!peer || !peer.serialNumber) known = null;
      else {
        const leaf = new X509Certificate(peer.raw);
        const builtIn = issuedByAny(leaf, [builtInCa]);
        const trustedFor = new Set<Trust>(builtIn ? [] : (['verify', 'tokenreview'] as const).filter((t) => issuedByAny(leaf, anchors[t])));
        known = { peer, builtIn, trustedFor };
      }
      peers.set(socket, known);
    }
    return known;
  }

  function certificateAuthenticate(req: IncomingMessage): Caller | undefined {
    const known = peerOf(req.socket as TLSSocket);
    if (!known) return undefined;
    if (known.builtIn) {
      // Looked up on every request: the service user may have been disabled or renewed since.
      const identity = typeof known.peer.subject?.CN === 'string' ? known.peer.subject.CN : '';
      const { su } = certificateCaller(options.directory, { serialNumber: known.peer.serialNumber, issuer: builtInIssuer, identity }, now());
      return su ? { kind: 'serviceuser', su } : undefined;
    }
    if (!known.trustedFor.size) return undefined;
    return { kind: 'certificate', subject: typeof known.peer.subject?.CN === 'string' ? known.peer.subject.CN : 'client certificate', trustedFor: known.trustedFor };
  }

  function authenticate(req: IncomingMessage): Caller | undefined {
    const byCertificate = certificateAuthenticate(req);
    if (byCertificate) return byCertificate;
    const header = req.headers.authorization;
    const match = header ? /^Bearer\s+(\S+)$/i.exec(header) : null;
    if (match) {
      const { verdict, su } = verifyPresented(options.directory, match[1]!, now(), req.socket.remoteAddress);
      if (verdict.active && su) return { kind: 'serviceuser', su };
    }
    return undefined;
  }

  async function readBody(req: IncomingMessage): Promise<string> {
    const length = Number(req.headers['content-length'] ?? 0);
    if (length > maxBody) throw new HttpError(413, `body over ${maxBody} bytes`);
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > maxBody) {
        req.destroy();
        throw new HttpError(413, `body over ${maxBody} bytes`);
      }
      chunks.push(chunk);
    }
    return Buffer.concat(chunks).toString('utf8');
  }

  async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
    const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    if (type !== 'application/json') throw new HttpError(415, 'content-type must be application/json');
    const text = await readBody(req);
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      throw new HttpError(400, 'body is not valid JSON');
    }
    if (!value || typeof value !== 'object' || Array.isArray(value)) throw new HttpError(400, 'body must be a JSON object');
    return value as Record<string, unknown>;
  }

  /** JSON, or application/x-www-form-urlencoded as RFC 7662 clients send. */
  async function readParams(req: IncomingMessage): Promise<Record<string, unknown>> {
    const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    if (type === 'application/x-www-form-urlencoded') return Object.fromEntries(new URLSearchParams(await readBody(req)));
    if (type === 'application/json') return readJson(req);
    throw new HttpError(415, 'content-type must be application/json or application/x-www-form-urlencoded');
  }

  // A renewed or reloaded serving certificate serves new connections at once (a kube-apiserver's
  // open connections keep theirs); the trust anchors for callers stay as they were.
  options.tls.onChange((pair) => server.setSecureContext({ cert: pair.certPem, key: pair.keyPem, ca: trusted, minVersion: 'TLSv1.2' }));
  const [host, port] = splitAddress(options.address);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return server;
}

function endpointOf(path: string): string {
  if (path.startsWith('/v1/check')) return 'check';
  return { '/apis/authentication.k8s.io/v1/tokenreviews': 'tokenreview', '/v1/introspect': 'introspect', '/v1/authorize': 'authorize', '/v1/ca.crt': 'ca', '/v1/crl': 'crl' }[path] ?? 'other';
}

function resultOf(outcome: Record<string, unknown>): string {
  if ('authenticated' in outcome) return outcome.authenticated ? 'authenticated' : 'refused';
  if ('active' in outcome) return outcome.active ? 'active' : 'inactive';
  if ('allowed' in outcome) return outcome.allowed ? 'allowed' : 'denied';
  return 'served';
}

function send(res: ServerResponse, status: number, body: unknown, type = 'application/json'): void {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function statusText(status: number): string {
  return { 400: 'BadRequest', 401: 'Unauthorized', 403: 'Forbidden', 404: 'NotFound', 405: 'MethodNotAllowed', 413: 'PayloadTooLarge', 415: 'UnsupportedMediaType', 429: 'TooManyRequests' }[status] ?? 'InternalError';
}
