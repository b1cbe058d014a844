// Who is calling the verification service, and what they may learn. Callers authenticate with a
// service user's token (Bearer) or client certificate, whose roles grant verification:introspect
// / verification:authorize (their accounts only, scope.ts); or with a client certificate from a
// CA the platform team trusts for callers (--verify-client-ca, --tokenreview-client-ca),
// platform-wide. Invariants: only failures to authenticate are throttled, and only after
// authentication failed, so an authenticated caller is never refused for others' failures from
// its address; a connection's certificate trust is worked out once, a built-in CA certificate's
// holder is looked up on every request (it may have been disabled or renewed since).
import { X509Certificate } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { TLSSocket, type PeerCertificate } from 'node:tls';
import { identityOf } from '../api/names.ts';
import { x509 } from '../credentials/x509.ts';
import type { RateLimiter } from '../observability/ratelimit.ts';
import { certificateCaller, verifyPresented } from './answers.ts';
import type { Directory, Verifiable } from './directory.ts';
import { bearerToken, HttpError } from './http.ts';
import { platformWide, scopeOf, type Scope } from './scope.ts';

/** The catalog Role that grants calling the verification service (config/roles/service-user-operator.yaml). */
export const verifierRole = 'service-user-operator.verifier';

/** A 403 for a service user without the permission: what grants it, so the reader can act. */
export function notGranted(who: { namespace?: string; name: string }, what: 'introspect' | 'authorize'): string {
  return (
    `${who.namespace}/${who.name} is not granted verification:${what}: the Role ${verifierRole} grants it — ` +
    `bind it with a RoleBinding in namespace ${who.namespace} (subject ServiceUser ${who.name}), in an account the caller shares with the service users it verifies (docs/verification.md)`
  );
}

/** What a caller's client certificate is trusted for, by the CA it chains to. */
export type Trust = 'verify' | 'tokenreview';
export type Caller = { kind: 'serviceuser'; su: Verifiable } | { kind: 'certificate'; subject: string; trustedFor: ReadonlySet<Trust> };

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

type Peer = { peer: PeerCertificate; builtIn: boolean; trustedFor: ReadonlySet<Trust> } | null;

export const callerName = (caller: Caller) => (caller.kind === 'serviceuser' ? identityOf(caller.su) : caller.subject);

interface CallersDeps {
  directory: Directory;
  caPem: string;
  callerCaPems?: string[] | undefined;
  tokenReviewCaPems?: string[] | undefined;
  allowAnonymousTokenReview?: boolean | undefined;
  limiter: RateLimiter;
  now: () => number;
}

export class Callers {
  private readonly builtInCa: X509Certificate;
  /** The issuer as status records it (x509.ts's form), for the directory's issuer+serial index. */
  private readonly builtInIssuer: string;
  private readonly anchors: Record<Trust, X509Certificate[]>;
  // What a TLS connection's client certificate is trusted for is fixed for its life: worked
  // out once per connection (a kube-apiserver keeps its connections open).
  private readonly peers = new WeakMap<TLSSocket, Peer>();

  private readonly deps: CallersDeps;

  constructor(deps: CallersDeps) {
    this.deps = deps;
    this.builtInCa = new X509Certificate(deps.caPem);
    this.builtInIssuer = new x509.X509Certificate(deps.caPem).subject;
    this.anchors = { verify: (deps.callerCaPems ?? []).flatMap(certificatesIn), tokenreview: (deps.tokenReviewCaPems ?? []).flatMap(certificatesIn) };
  }

  /** The caller's scope for an endpoint; undefined when it may not call it at all. */
  scopeFor(caller: Caller, trust: Trust, what: 'introspect' | 'authorize'): Scope | undefined {
    if (caller.kind === 'certificate') return caller.trustedFor.has(trust) ? platformWide : undefined;
    return scopeOf(caller.su, what);
  }

  /**
   * Counts a failure to authenticate against the client's address, and answers 429 once the
   * address is out of attempts. Called only after authentication failed — never before it:
   * a gateway or kube-apiserver that authenticates is answered whoever else probes from its
   * address (a node's SNAT, a shared proxy). Authenticating first costs nothing to throttle:
   * a certificate's trust is worked out once per connection, a token is judged from memory.
   */
  throttleFailure(req: IncomingMessage, res: ServerResponse): void {
    if (this.deps.limiter.take(req.socket.remoteAddress ?? 'unknown')) return;
    res.setHeader('retry-after', '1');
    throw new HttpError(429, 'too many failed authentication attempts from this address; slow down');
  }

  /**
   * Who may ask a TokenReview: a client certificate from a --tokenreview-client-ca CA
   * (platform-wide), or a service user granted verification:introspect (its accounts only).
   * Only failures are throttled, so an authenticated kube-apiserver is never locked out by
   * someone else probing from its address.
   */
  tokenReviewCaller(req: IncomingMessage, res: ServerResponse): { scope: Scope; callerName: string } {
    if (this.deps.allowAnonymousTokenReview) return { scope: platformWide, callerName: 'anonymous (--tokenreview-allow-anonymous)' };
    const caller = this.authenticate(req);
    const scope = caller && this.scopeFor(caller, 'tokenreview', 'introspect');
    if (caller && scope) return { scope, callerName: callerName(caller) };
    if (caller?.kind === 'serviceuser') throw new HttpError(403, notGranted(caller.su.metadata, 'introspect'));
    this.throttleFailure(req, res);
    res.setHeader('www-authenticate', 'Bearer realm="service-user-operator"');
    throw new HttpError(
      401,
      'TokenReview callers authenticate: a client certificate from a CA given with --tokenreview-client-ca, or a service user (certificate or Bearer token) granted verification:introspect',
    );
  }

  private peerOf(socket: TLSSocket): Peer {
    let known = this.peers.get(socket);
    if (known === undefined) {
      const peer = socket.authorized ? socket.getPeerCertificate?.() : undefined;
      if (!peer || !peer.serialNumber) known = null;
      else {
        const leaf = new X509Certificate(peer.raw);
        const builtIn = issuedByAny(leaf, [this.builtInCa]);
        const trustedFor = new Set<Trust>(builtIn ? [] : (['verify', 'tokenreview'] as const).filter((t) => issuedByAny(leaf, this.anchors[t])));
        known = { peer, builtIn, trustedFor };
      }
      this.peers.set(socket, known);
    }
    return known;
  }

  certificateAuthenticate(req: IncomingMessage): Caller | undefined {
    const known = req.socket instanceof TLSSocket ? this.peerOf(req.socket) : null;
    if (!known) return undefined;
    const cn = typeof known.peer.subject?.CN === 'string' ? known.peer.subject.CN : undefined;
    if (known.builtIn) {
      // Looked up on every request: the service user may have been disabled or renewed since.
      const { su } = certificateCaller(this.deps.directory, { serialNumber: known.peer.serialNumber, issuer: this.builtInIssuer, identity: cn ?? '' }, this.deps.now());
      return su ? { kind: 'serviceuser', su } : undefined;
    }
    if (!known.trustedFor.size) return undefined;
    return { kind: 'certificate', subject: cn ?? 'client certificate', trustedFor: known.trustedFor };
  }

  authenticate(req: IncomingMessage): Caller | undefined {
    const byCertificate = this.certificateAuthenticate(req);
    if (byCertificate) return byCertificate;
    const token = bearerToken(req.headers.authorization);
    if (token) {
      const { verdict, su } = verifyPresented(this.deps.directory, token, this.deps.now(), req.socket.remoteAddress);
      if (verdict.active && su) return { kind: 'serviceuser', su };
    }
    return undefined;
  }
}
