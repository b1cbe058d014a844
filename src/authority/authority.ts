// The built-in CA, its revocation ledger and the ledger key, loaded as one runnable that
// publishes a typed state: `loading` (with why, and the key ring once it is there: tokens
// need the key, not the CA) or `ready` (CA, ledger and key ring). Readers take `state()`
// at the moment they act; nothing is half-built and nothing is changed in place: a key
// rotation publishes a new state, and the listeners are told.
//
// Invariants: API trouble (the namespace not there yet, a restarting server) is waited out,
// said once in one line a person can act on; CA material that cannot work is not, and fails
// `ready` with its reason. `tried` settles at the first attempt's outcome: reconciling waits
// for it only (when the CA loads at once nothing runs without it; when it does not, tokens
// go ahead). The CRL ConfigMaps and the ledger key Secret are followed on every replica.
import type { InformerSet } from '../controller/informer.ts';
import type { CacheScope, Manager, Runnable } from '../controller/manager.ts';
import { ApiError, type KubeClient, type KubeObject } from '../controller/kube.ts';
import { resources } from '../api/resources.ts';
import type { Ca } from '../credentials/ca.ts';
import type { KeyRing } from '../credentials/mac.ts';
import type { Logger } from '../observability/logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import { ensureCa } from './ca-store.ts';
import { ensureLedgerKey, keyRingOf, ledgerKeyLabels } from './ledger-key.ts';
import { RevocationLedger } from './revocations.ts';

export type AuthorityState =
  | { kind: 'loading'; reason: string; keyRing: KeyRing | undefined }
  | { kind: 'ready'; ca: Ca; ledger: RevocationLedger; keyRing: KeyRing };

export interface AuthorityOptions {
  /** Where the CA Secret, the ledger key Secret and the CRL ConfigMaps live. */
  namespace: string;
  caSecretName?: string | undefined;
  crlConfigMapName?: string | undefined;
  ledgerKeySecretName?: string | undefined;
  /** Create the namespace when it does not exist (a local run). */
  createNamespace?: boolean | undefined;
  now: () => number;
}

/** Why the CA Secret cannot be read or created, and what to do, in one line. */
export function caTrouble(err: ApiError, namespace: string, secretName: string): string {
  if (err.status === 404 && /namespaces? "[^"]*" not found/.test(err.message)) {
    return `namespace ${namespace} does not exist: create it with "kubectl create namespace ${namespace}", or pass --operator-namespace`;
  }
  if (err.status === 403) {
    return `not allowed to read or create Secret ${secretName} in namespace ${namespace}: grant the operator get and create on secrets there (config/rbac), or pass --operator-namespace`;
  }
  return `cannot read or create the CA Secret ${namespace}/${secretName}: ${err.message}`;
}

const sameRing = (a: KeyRing | undefined, b: KeyRing) =>
  !!a && a.current.id === b.current.id && a.keys.map((k) => `${k.id}:${k.secret.toString('hex')}`).join() === b.keys.map((k) => `${k.id}:${k.secret.toString('hex')}`).join();

export class Authority implements Runnable {
  readonly name = 'authority';
  /** Resolves once ready: true when something waited for it (a second look is due), false when it loaded at once. */
  readonly ready: Promise<boolean>;
  /** Settles at the first attempt's outcome. */
  readonly tried: Promise<void>;
  private current: AuthorityState = { kind: 'loading', reason: 'the built-in CA is loading', keyRing: undefined };
  private readonly rotated: ((ring: KeyRing) => void)[] = [];
  private stopping = false;
  private markTried!: () => void;
  private begin!: () => void;
  private readonly deps: { client: KubeClient; log: Logger; metrics: Metrics };
  private readonly options: AuthorityOptions;
  private readonly ledgerKeyName: string;

  constructor(deps: { client: KubeClient; log: Logger; metrics: Metrics }, options: AuthorityOptions) {
    this.deps = deps;
    this.options = options;
    this.ledgerKeyName = options.ledgerKeySecretName ?? 'service-user-operator-ledger-key';
    this.tried = new Promise((resolve) => (this.markTried = resolve));
    const begun = new Promise<void>((resolve) => (this.begin = resolve));
    this.ready = begun.then(() => this.load());
    this.ready.catch(() => this.markTried());
  }

  /** What there is now. */
  state(): AuthorityState {
    return this.current;
  }

  /** Called with the new key ring after a rotation (once ready). */
  onRotated(listener: (ring: KeyRing) => void): void {
    this.rotated.push(listener);
  }

  start(): void {
    this.begin();
  }

  /** The caches it follows: the ledger's ConfigMaps (head and shards) and the ledger key Secret. */
  follow(crlMaps: InformerSet, ledgerKeys: InformerSet): void {
    crlMaps.onChange((type, cm) => {
      // A failed start is reported once, through `ready`; this is only a follower.
      if (type !== 'DELETED') this.ready.then(() => this.current.kind === 'ready' && this.current.ledger.observe(cm), () => undefined);
    });
    ledgerKeys.onChange((type, secret) => {
      if (type === 'DELETED' || secret.metadata.name !== this.ledgerKeyName) return;
      this.ready.then(() => this.rotate(secret), () => undefined);
    });
  }

  stop(): void {
    this.stopping = true;
    if (this.current.kind === 'ready') this.current.ledger.stop();
  }

  private rotate(secret: KubeObject): void {
    const { log } = this.deps;
    let ring: KeyRing;
    try {
      ring = keyRingOf(secret);
    } catch (err) {
      // Keep verifying with the key in use: a bad edit must not stop verification.
      log.error({ err: err instanceof Error ? err.message : String(err) }, 'ledger key Secret changed and cannot be used; keeping the previous key');
      return;
    }
    if (sameRing(this.current.keyRing, ring)) return;
    this.current = { ...this.current, keyRing: ring };
    log.info({ current: ring.current.id, keys: ring.keys.map((k) => k.id) }, 'ledger key changed; records are judged again and re-MACed');
    for (const listener of this.rotated) listener(ring);
  }

  private async load(): Promise<boolean> {
    const { client, log, metrics } = this.deps;
    const ns = this.options.namespace;
    const secretName = this.options.caSecretName ?? 'service-user-operator-ca';
    let waited: string | undefined;
    let ca: Ca;
    for (let attempt = 1; ; attempt++) {
      try {
        // The ledger key first: tokens need it (their records are MACed), not the CA.
        const keyRing = await ensureLedgerKey(client, ns, this.ledgerKeyName, log);
        this.current = { kind: 'loading', reason: this.current.kind === 'loading' ? this.current.reason : 'the built-in CA is loading', keyRing };
        ca = await ensureCa(client, ns, secretName, log);
        break;
      } catch (err) {
        if (!(err instanceof ApiError) || this.stopping) throw err;
        if (await this.createNamespace(err)) continue;
        const reason = caTrouble(err, ns, secretName);
        const delay = Math.min(10_000, 500 * 2 ** attempt);
        // Said once, in one line a person can act on; the retries that follow are quiet.
        if (reason !== waited) log.warn({ retryInMs: delay }, `${reason}; meanwhile nothing is issued: the ledger key that signs token records lives there too`);
        else log.debug({ err: err.message, retryInMs: delay }, 'still waiting for the built-in CA');
        waited = reason;
        this.current = { kind: 'loading', reason, keyRing: this.current.keyRing };
        this.markTried();
        await new Promise((r) => setTimeout(r, delay));
      }
    }
    const ledger = new RevocationLedger({ client, ca, namespace: ns, name: this.options.crlConfigMapName ?? 'service-user-operator-crl', log, now: this.options.now });
    await ledger.start();
    const { keyRing } = this.current;
    if (!keyRing) throw new Error('the ledger key was not loaded before the CA'); // unreachable: loaded first, in the same attempt
    this.current = { kind: 'ready', ca, ledger, keyRing };
    metrics.crlOwners.top = (n) => ledger.topOwners(n);
    this.markTried();
    if (waited) log.info({ secret: `${ns}/${secretName}` }, 'the built-in CA is available: issuing the client certificates that waited');
    return waited !== undefined;
  }

  /** A local run: the operator namespace created when it does not exist (and allowed to). */
  private async createNamespace(err: ApiError): Promise<boolean> {
    const ns = this.options.namespace;
    if (!this.options.createNamespace || err.status !== 404 || !/namespaces? "[^"]*" not found/.test(err.message)) return false;
    const { client, log } = this.deps;
    return client
      .request('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns, labels: { 'app.kubernetes.io/managed-by': 'service-user-operator' } } })
      .then(
        () => (log.info(`namespace ${ns} did not exist: created it for the built-in CA, the ledger key and the CRL (a local run; --no-create-operator-namespace turns this off)`), true),
        (createErr: unknown) => (log.debug({ err: String(createErr) }, 'could not create the operator namespace'), false),
      );
  }
}

/** The Authority with its caches, added to the manager; reconciling waits for its first attempt. */
export function setupAuthority(mgr: Manager, options: AuthorityOptions): Authority {
  const authority = mgr.add(new Authority({ client: mgr.client, log: mgr.log, metrics: mgr.metrics }, options));
  const scope: CacheScope = { kind: 'namespace', namespace: options.namespace };
  const crlMaps = mgr.cache({
    resource: { group: '', version: 'v1', plural: 'configmaps', namespaced: true },
    scope,
    labelSelector: 'app.kubernetes.io/component=crl,app.kubernetes.io/managed-by=service-user-operator',
  });
  const ledgerKeys = mgr.cache({ resource: resources.secrets, scope, labelSelector: Object.entries(ledgerKeyLabels).map(([k, v]) => `${k}=${v}`).join(',') });
  authority.follow(crlMaps, ledgerKeys);
  mgr.holdReconcilesUntil(authority.tried);
  return authority;
}

/** What the ledger MACs are checked against, read from the published state at each use (never changed in place). */
export function trustOf(authority: Pick<Authority, 'state'>, adoptUnsigned: boolean): { readonly ring: KeyRing | undefined; adoptUnsigned?: boolean } {
  return {
    get ring() {
      return authority.state().keyRing;
    },
    ...(adoptUnsigned ? { adoptUnsigned: true } : {}),
  };
}

/** The CA and ledger of a ready authority; reading either before it is ready is a bug, said as such. */
export function readyParts(authority: Pick<Authority, 'state'>): { readonly ca: Ca; readonly ledger: RevocationLedger } {
  const ready = () => {
    const s = authority.state();
    if (s.kind !== 'ready') throw new Error(`the built-in CA is not loaded yet: ${s.reason}`);
    return s;
  };
  return {
    get ca() {
      return ready().ca;
    },
    get ledger() {
      return ready().ledger;
    },
  };
}
