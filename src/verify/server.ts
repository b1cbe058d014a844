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
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { identityOf } from '../api/names.ts';
import type { Logger } from '../observability/logger.ts';
import { authorize, introspect, tokenReview, verifyInScope } from './answers.ts';
import { callerName, Callers, notGranted } from './callers.ts';
import type { Directory } from './directory.ts';
import { forwardedClient } from './forwarded.ts';
import { bearerToken, endpointOf, headerValue, HttpError, nonEmpty, readJson, readParams, resultOf, route, send, statusText } from './http.ts';
import { RateLimiter } from '../observability/ratelimit.ts';
import { visibleAccounts } from './scope.ts';
import { splitAddress } from '../observability/http.ts';

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

/** What every endpoint reads: the options, who is calling, the clock. */
interface Endpoints {
  options: VerificationOptions;
  callers: Callers;
  now: () => number;
  maxBody: number;
  hops: number;
}
type Outcome = Record<string, unknown>;

async function handle(ctx: Endpoints, req: IncomingMessage, res: ServerResponse): Promise<Outcome> {
  const path = route(req);
  if (req.method === 'GET' && path === '/v1/ca.crt') return void send(res, 200, ctx.options.caPem, 'application/x-pem-file'), {};
  if (req.method === 'GET' && path === '/v1/crl') return void send(res, 200, ctx.options.crl(), 'application/pkix-crl'), {};
  if (req.method === 'GET' && path === '/healthz') return void send(res, 200, 'ok\n', 'text/plain'), {};
  if (path === '/v1/check' || path.startsWith('/v1/check/')) return check(ctx, req, res);
  const known = ['/apis/authentication.k8s.io/v1/tokenreviews', '/v1/introspect', '/v1/authorize'];
  if (!known.includes(path)) throw new HttpError(404, `no such endpoint: ${path}`);
  if (req.method !== 'POST') {
    res.setHeader('allow', 'POST');
    throw new HttpError(405, `${path} takes POST`);
  }
  if (path === '/apis/authentication.k8s.io/v1/tokenreviews') return tokenReviewEndpoint(ctx, req, res);
  return introspectOrAuthorize(ctx, req, res, path === '/v1/introspect' ? 'introspect' : 'authorize');
}

async function tokenReviewEndpoint(ctx: Endpoints, req: IncomingMessage, res: ServerResponse): Promise<Outcome> {
  const { scope, callerName } = ctx.callers.tokenReviewCaller(req, res);
  const body = await readJson(req, ctx.maxBody);
  const { apiVersion, kind, spec } = body;
  if (kind !== 'TokenReview' || typeof apiVersion !== 'string' || !apiVersion.startsWith('authentication.k8s.io/')) {
    throw new HttpError(400, 'expected a TokenReview (apiVersion authentication.k8s.io/v1, kind TokenReview)');
  }
  const token = nonEmpty(spec && typeof spec === 'object' && 'token' in spec ? spec.token : undefined);
  if (!token) throw new HttpError(400, 'spec.token must be a non-empty string');
  const answer = tokenReview(ctx.options.directory, token, ctx.now(), scope);
  send(res, 200, { apiVersion, kind: 'TokenReview', status: answer.status });
  return { caller: callerName, authenticated: answer.status.authenticated, reason: answer.reason, identity: answer.identity };
}

async function introspectOrAuthorize(ctx: Endpoints, req: IncomingMessage, res: ServerResponse, what: 'introspect' | 'authorize'): Promise<Outcome> {
  const { options, callers } = ctx;
  const caller = callers.authenticate(req);
  if (!caller) {
    callers.throttleFailure(req, res);
    res.setHeader('www-authenticate', 'Bearer realm="service-user-operator"');
    throw new HttpError(401, `authenticate with a service user's token (Authorization: Bearer) or client certificate whose roles grant verification:${what}`);
  }
  const scope = callers.scopeFor(caller, 'verify', what);
  if (!scope) {
    throw new HttpError(
      403,
      caller.kind === 'serviceuser' ? notGranted(caller.su.metadata, what) : `the client certificate's CA is not trusted for ${route(req)} (only --verify-client-ca CAs are)`,
    );
  }
  const params = await readParams(req, ctx.maxBody);
  const reported = nonEmpty(params.client_address);
  if (what === 'introspect') {
    const token = nonEmpty(params.token);
    if (!token) throw new HttpError(400, 'token must be a non-empty string');
    const answer = introspect(options.directory, token, ctx.now(), scope, reported);
    send(res, 200, answer.body);
    return { caller: callerName(caller), active: answer.body.active, reason: answer.reason, identity: answer.identity };
  }
  const account = nonEmpty(params.account);
  const permission = nonEmpty(params.permission);
  if (!account) throw new HttpError(400, 'account must be a non-empty string');
  if (!permission) throw new HttpError(400, 'permission must be a non-empty string');
  const token = nonEmpty(params.token);
  const identity = nonEmpty(params.identity);
  const holder = token !== undefined && identity === undefined ? { token } : identity !== undefined && token === undefined ? { identity } : undefined;
  if (!holder) throw new HttpError(400, 'give exactly one of token or identity');
  const answer = authorize(options.directory, { ...holder, account, permission, ...(reported ? { clientAddress: reported } : {}) }, ctx.now(), scope);
  send(res, 200, { allowed: answer.allowed, reason: answer.reason });
  return { caller: callerName(caller), allowed: answer.allowed, reason: answer.hidden ? "holder outside the caller's accounts" : answer.reason, identity: answer.identity };
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
async function check(ctx: Endpoints, req: IncomingMessage, res: ServerResponse): Promise<Outcome> {
  const { options, callers } = ctx;
  const caller = callers.certificateAuthenticate(req);
  const scope = caller && callers.scopeFor(caller, 'verify', 'introspect');
  if (!caller || !scope) {
    callers.throttleFailure(req, res);
    throw new HttpError(401, 'the gateway must present a client certificate from a CA trusted for callers (--verify-client-ca), or of a service user granted verification:introspect');
  }
  req.resume();
  const token = bearerToken(req.headers.authorization ?? '');
  if (!token) {
    res.setHeader('www-authenticate', 'Bearer realm="service-user-operator"');
    throw new HttpError(401, 'no service-user token in Authorization: Bearer');
  }
  const forwarded = forwardedClient(req.headers['x-forwarded-for'], ctx.hops);
  const account = headerValue(req.headers['x-serviceuser-account']);
  const permission = headerValue(req.headers['x-serviceuser-permission']);
  const { verdict, su, hidden } = verifyInScope(options.directory, token, ctx.now(), scope, forwarded);
  if (!verdict.active || !su) {
    res.setHeader('www-authenticate', 'Bearer realm="service-user-operator", error="invalid_token"');
    throw new HttpError(401, 'invalid token', hidden ? "holder outside the caller's accounts" : verdict.active ? 'unknown' : verdict.reason);
  }
  const identity = identityOf(su);
  if (account || permission) {
    if (!account || !permission) throw new HttpError(400, 'X-Serviceuser-Account and X-Serviceuser-Permission go together');
    const decision = authorize(options.directory, { identity, account, permission }, ctx.now(), scope);
    if (!decision.allowed) throw new HttpError(403, decision.reason);
  }
  res.setHeader('x-serviceuser', identity);
  res.setHeader('x-serviceuser-accounts', visibleAccounts(scope, su).join(','));
  send(res, 200, { allowed: true, identity });
  return { caller: callerName(caller), identity, allowed: true };
}

/** Answers one request, logs it and counts it; a failure becomes its status and a message, never a crash. */
function answer(ctx: Endpoints, log: Logger, req: IncomingMessage, res: ServerResponse): void {
  const started = performance.now();
  const onAnswer = ctx.options.onAnswer;
  handle(ctx, req, res).then(
    (outcome) => {
      // Per request at debug: at info (the chart's default) the answers are counted in
      // serviceuser_verifications_total, and nothing is built or written per request.
      if (log.isLevelEnabled('debug')) log.debug({ method: req.method, path: route(req), status: res.statusCode, ms: Math.round(performance.now() - started), ...outcome }, 'verification request');
      onAnswer?.(endpointOf(route(req)), resultOf(outcome));
    },
    (err: unknown) => {
      const status = err instanceof HttpError ? err.status : 500;
      const message = err instanceof HttpError ? err.message : 'internal error';
      if (!(err instanceof HttpError)) log.error({ err: err instanceof Error ? err.message : String(err) }, 'verification failed');
      if (!res.headersSent) send(res, status, { error: statusText(status), message });
      else res.end();
      if (log.isLevelEnabled('debug')) log.debug({ method: req.method, path: route(req), status, ms: Math.round(performance.now() - started), reason: (err instanceof HttpError && err.logReason) || message }, 'verification request');
      onAnswer?.(endpointOf(route(req)), `http_${status}`);
    },
  );
}

export async function startVerificationServer(options: VerificationOptions): Promise<Server> {
  const now = options.now ?? Date.now;
  const log = options.log.child({ component: 'verification' });
  const callers = new Callers({ ...options, limiter: options.limiter ?? new RateLimiter(), now });
  const hops = options.trustedProxyHops ?? 0;
  // Checked once here so that a bad value fails the start, not a request.
  forwardedClient(undefined, hops);
  if (options.allowAnonymousTokenReview) {
    log.warn('TokenReview answers anonymous callers (--tokenreview-allow-anonymous): anyone who can reach this service learns whose a leaked token is; for labs only');
  }
  const ctx: Endpoints = { options, callers, now, maxBody: options.maxBodyBytes ?? 64 * 1024, hops };
  const trusted = [options.caPem, ...(options.callerCaPems ?? []), ...(options.tokenReviewCaPems ?? [])];
  const server = createServer(
    { cert: options.tls.current().certPem, key: options.tls.current().keyPem, ca: trusted, requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.2' },
    (req, res) => answer(ctx, log, req, res),
  );
  // Slow clients cannot hold the server: headers within 5 s, the whole request within 10 s.
  server.headersTimeout = 5_000;
  server.requestTimeout = 10_000;
  server.keepAliveTimeout = 30_000;
  server.on('clientError', (_err, socket) => socket.destroy());
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
