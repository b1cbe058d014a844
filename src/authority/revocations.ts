// The revocation ledger and the CRL it publishes, kept in a ConfigMap in the operator's
// namespace (`revocations.json`, `ca.crl`): serials are not secret, and the ledger outlives
// the ServiceUsers whose certificates it lists. Changes are serialized in this process and
// written with optimistic concurrency, so replicas never lose each other's entries. The CRL
// is re-signed before it goes stale — a timer, not a poll.
import { buildCrl, liveRevocations, signedBy, type Revocation, type RevocationReason } from '../credentials/crl.ts';
import type { Ca } from '../credentials/ca.ts';
import { isConflict, isNotFound, type KubeClient, type KubeObject } from '../controller/kube.ts';
import type { Logger } from '../observability/logger.ts';

export interface LedgerEntry extends Revocation {
  /** namespace/name of the ServiceUser it belonged to. */
  owner: string;
}

const crlValidityMs = 7 * 86_400_000;
const resignBeforeMs = 86_400_000;

export class RevocationLedger {
  private readonly client: KubeClient;
  private readonly ca: Ca;
  private readonly path: string;
  private readonly namespace: string;
  private readonly name: string;
  private readonly log: Logger;
  private readonly now: () => number;
  private chain: Promise<unknown> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  /**
   * The ConfigMap as last read or written. Reconciles consult the ledger on every pass, so it
   * is read from memory; a write that conflicts (someone else changed it) re-reads it, and
   * observe() keeps it current from the operator's watch.
   */
  private cached: KubeObject | null | undefined;
  /** The last CRL published, for the verification service. */
  crlPem = '';

  constructor(options: { client: KubeClient; ca: Ca; namespace: string; name: string; log: Logger; now?: () => number }) {
    this.client = options.client;
    this.ca = options.ca;
    this.namespace = options.namespace;
    this.name = options.name;
    this.path = `/api/v1/namespaces/${encodeURIComponent(options.namespace)}/configmaps/${encodeURIComponent(options.name)}`;
    this.log = options.log;
    this.now = options.now ?? Date.now;
  }

  /** Revokes serials (idempotent). A revocation replaces a hold of the same serial. */
  revoke(owner: string, entries: { serialNumber: string; reason: RevocationReason; notAfter: string }[]): Promise<void> {
    if (!entries.length) return Promise.resolve();
    return this.update((ledger) => {
      let changed = false;
      for (const e of entries) {
        const existing = ledger.find((x) => x.serialNumber === e.serialNumber);
        if (existing && existing.reason !== 'certificateHold') continue;
        if (existing) ledger.splice(ledger.indexOf(existing), 1);
        ledger.push({ ...e, owner, revokedAt: new Date(this.now()).toISOString(), identity: identityOf(owner) });
        changed = true;
      }
      return changed;
    });
  }

  /** Makes `serials` the owner's only certificates on hold (disable puts on hold, enable releases). */
  setHolds(owner: string, serials: { serialNumber: string; notAfter: string }[]): Promise<void> {
    return this.update((ledger) => {
      const want = new Set(serials.map((s) => s.serialNumber));
      let changed = false;
      for (let i = ledger.length - 1; i >= 0; i--) {
        const e = ledger[i]!;
        if (e.owner === owner && e.reason === 'certificateHold' && !want.has(e.serialNumber)) {
          ledger.splice(i, 1);
          changed = true;
        }
      }
      for (const s of serials) {
        if (ledger.some((e) => e.serialNumber === s.serialNumber)) continue;
        ledger.push({ ...s, owner, reason: 'certificateHold', revokedAt: new Date(this.now()).toISOString(), identity: identityOf(owner) });
        changed = true;
      }
      return changed;
    });
  }

  /** Whether the ledger currently lists the serial (revoked or on hold). */
  async isListed(serialNumber: string): Promise<boolean> {
    const { ledger } = await this.read();
    return ledger.some((e) => e.serialNumber === serialNumber);
  }

  /** Whether the ledger lists the serial as revoked (a hold does not count: it can be released). */
  async isRevoked(serialNumber: string): Promise<boolean> {
    const { ledger } = await this.read();
    return ledger.some((e) => e.serialNumber === serialNumber && e.reason !== 'certificateHold');
  }

  /** Publishes the CRL if it is missing, stale or another CA's, and keeps it fresh. */
  start(): Promise<void> {
    return this.update(() => false, true);
  }

  stop(): void {
    clearTimeout(this.timer);
  }

  /** The ConfigMap as the watch sees it (another replica's write, our own echo). */
  observe(object: KubeObject): void {
    const newer = !this.cached || Number(object.metadata.resourceVersion) >= Number(this.cached.metadata.resourceVersion);
    if (!newer) return;
    this.cached = object;
    const crl = (object.data as Record<string, string> | undefined)?.['ca.crl'];
    if (crl) this.crlPem = crl;
  }

  private async read(): Promise<{ object: KubeObject | undefined; ledger: LedgerEntry[] }> {
    if (this.cached === undefined) {
      try {
        this.cached = await this.client.get(this.path);
      } catch (err) {
        if (!isNotFound(err)) throw err;
        this.cached = null;
      }
    }
    const object = this.cached ?? undefined;
    const data = (object?.data ?? {}) as Record<string, string>;
    return { object, ledger: data['revocations.json'] ? (JSON.parse(data['revocations.json']) as LedgerEntry[]) : [] };
  }

  private update(change: (ledger: LedgerEntry[]) => boolean, publish = false): Promise<void> {
    const run = async () => {
      for (let attempt = 0; ; attempt++) {
        const { object, ledger } = await this.read();
        const now = this.now();
        const live = liveRevocations(ledger, now) as LedgerEntry[];
        const pruned = live.length !== ledger.length;
        const changed = change(live);
        const data = (object?.data ?? {}) as Record<string, string>;
        const stale = !data['ca.crl'] || Number(data['next-update'] ? Date.parse(data['next-update']) : 0) - now < resignBeforeMs;
        // On start: a CRL this CA signed and still fresh is kept (a restart writes nothing);
        // one from another CA (the CA was replaced) is re-signed.
        const foreign = publish && !!data['ca.crl'] && !(await signedBy(data['ca.crl'], this.ca));
        if (!changed && !pruned && !stale && !foreign) {
          this.crlPem = data['ca.crl'] ?? this.crlPem;
          if (publish) this.schedule(Date.parse(data['next-update'] ?? '') - now - resignBeforeMs);
          return;
        }
        const number = Number(data['crl-number'] ?? 0) + 1;
        live.sort((a, b) => a.revokedAt.localeCompare(b.revokedAt));
        const crl = await buildCrl(this.ca, live, { number, now: new Date(now), validity: crlValidityMs });
        const body = {
          apiVersion: 'v1',
          kind: 'ConfigMap',
          metadata: {
            name: this.name,
            namespace: this.namespace,
            labels: { 'app.kubernetes.io/managed-by': 'service-user-operator', 'app.kubernetes.io/component': 'crl' },
            ...(object ? { resourceVersion: object.metadata.resourceVersion } : {}),
          },
          data: {
            'revocations.json': JSON.stringify(live, null, 1),
            'ca.crl': crl,
            'crl-number': String(number),
            'next-update': new Date(now + crlValidityMs).toISOString(),
          },
        };
        try {
          this.cached = await (object ? this.client.request('PUT', this.path, body) : this.client.request('POST', this.path.replace(/\/[^/]+$/, ''), body));
          this.crlPem = crl;
          this.schedule(crlValidityMs - resignBeforeMs);
          return;
        } catch (err) {
          this.cached = undefined;
          if (!isConflict(err) || attempt >= 10) throw err;
          this.log.debug({ attempt }, 'revocation ledger changed under us; retrying');
        }
      }
    };
    const next = this.chain.then(run, run);
    this.chain = next.catch(() => undefined);
    return next;
  }

  private schedule(ms: number): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.update(() => false, true).catch((err: unknown) => this.log.warn({ err: String(err) }, 'could not re-sign the CRL'));
    }, Math.min(Math.max(ms || 0, 1000), 2 ** 31 - 1));
    this.timer.unref();
  }
}

const identityOf = (owner: string) => `serviceuser:${owner.replace('/', ':')}`;
