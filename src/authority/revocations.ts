// The revocation ledger and the CRL it publishes. Serials are not secret, and the ledger
// outlives the ServiceUsers whose certificates it lists, so it lives in ConfigMaps in the
// operator's namespace:
//
// - shards `<name>-00` … `<name>-3f`: the entries, gzip'd (ledger-shard.ts), a serial in the
//   shard its hash picks, each shard far under the 1 MiB object limit at 100,000 entries;
// - the head `<name>`: the shard count. It is written once (and replaces the single-ConfigMap
//   format of older versions, whose entries are moved into the shards);
// - the journal `<name>-journal`: revocations of small batches, gzip'd like a shard. Hashing
//   spreads a batch of k serials over ~k shards, so thousands of end dates in a minute, arriving
//   a few at a time, would cost a shard write each; appended to the journal they cost one write
//   per batch, and are folded into their shards (≤ one write per shard) once the journal holds
//   `foldAt` entries, or after `foldIdleMs` without a journal write, or at a refresh. An entry
//   in the journal and in its shard at once (a crash mid-fold) is the same revocation twice.
//
// The CRL itself (≈6 MB of DER at 100,000 entries) is stored nowhere: every replica holds the
// CA key, so each signs it from its own copy of the ledger — kept current by the operator's
// watch on these ConfigMaps — whenever that copy changes, and serves it at /v1/crl from
// memory. Its CRL number is the signing time in milliseconds (and always above the last one),
// so numbers rise across replicas and restarts without a shared counter to write.
//
// A read-only ledger (the verifier process, which may not write ConfigMaps) only follows: it
// reads, signs and re-signs from its copy — pruning expired entries in memory, not in the
// shards — and refuses changes; the controller writes.
//
// Writes are batched: changes arriving while a batch is being written wait for the next one,
// which makes one write per shard it touches. Signatures are coalesced apart from the writes:
// one at a time, at most one every `minSignIntervalMs`, each covering every entry durable when
// it starts — at 100,000 entries a signature costs tens of milliseconds of CPU, and thousands
// of end dates in a minute would otherwise sign once per batch and starve the reconciles. A
// caller's promise resolves once its entries are durable and the CRL this replica serves lists them. Shards are written
// with optimistic concurrency (a conflict re-reads the shard and re-applies the batch to it),
// so replicas never lose each other's entries. The CRL is re-signed before it goes stale — a
// timer, checked against the wall clock hourly, as a suspended host's timers run late.
import { buildCrl, isLive, reasonCodes, serialPattern, type RevocationReason } from '../credentials/crl.ts';
import type { Ca } from '../credentials/ca.ts';
import { stringMap } from '../api/object.ts';
import { isConflict, isNotFound, type KubeClient, type KubeObject } from '../controller/kube.ts';
import type { Logger } from '../observability/logger.ts';
import { decodeShard, defaultShardCount, encodeShard, identityOf, isReason, maxShardBytes, shardKey, shardName, shardOf, type LedgerEntry } from './ledger-shard.ts';

export type { LedgerEntry } from './ledger-shard.ts';

const crlValidityMs = 7 * 86_400_000;
const resignBeforeMs = 86_400_000;
/** The least time between two CRL signatures of one replica (the first after a quiet spell is at once). */
const minSignIntervalMs = 250;
/** Shard writes in flight at once within a batch. */
const shardWriteConcurrency = 16;
const maxAttempts = 10;
/** Batches with fewer revocations than this go to the journal (larger ones touch most shards anyway). */
const defaultDirectAt = 256;
/** Journal entries that trigger a fold into the shards (~40 KB of journal). */
const defaultFoldAt = 1024;
/** Quiet time after the last journal write before the journal is folded. */
const defaultFoldIdleMs = 2_000;
/** Labels every ledger ConfigMap carries (the operator's watch selects on them). */
const ledgerLabels = { 'app.kubernetes.io/managed-by': 'service-user-operator', 'app.kubernetes.io/component': 'crl' };
/** The label naming the ledger a shard belongs to (its head's name). */
export const ledgerLabel = 'serviceusers.dev/revocation-ledger';

type RevokeEntry = { serialNumber: string; reason: RevocationReason; notAfter: string };

type Change =
  | { kind: 'revoke'; owner: string; at: string; entries: (RevokeEntry & { shard: number })[] }
  | { kind: 'holds'; owner: string; at: string; want: Map<string, string> }
  /** Entries from the single-ConfigMap format, added where absent. */
  | { kind: 'merge'; entries: LedgerEntry[] }
  /** Prune expired entries and re-sign the CRL (folds the journal too). */
  | { kind: 'refresh' }
  /** Move the journal's entries into their shards. */
  | { kind: 'fold' };

interface Pending {
  change: Change;
  resolve: () => void;
  reject: (err: unknown) => void;
}

interface Shard {
  resourceVersion: string | undefined;
  entries: Map<string, LedgerEntry>;
}

export class RevocationLedger {
  private readonly client: KubeClient;
  private readonly ca: Ca;
  private readonly namespace: string;
  private readonly name: string;
  private readonly log: Logger;
  private readonly now: () => number;
  /** How often the wall clock is compared with the CRL's nextUpdate (a timer alone runs late on a suspended host). */
  private readonly clockCheckMs: number;
  /** Follows and signs only: never writes (see the header). */
  private readonly readOnly: boolean;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private shards: Shard[] = [];
  /** Revocations not yet folded into their shards (never holds). */
  private journal: Shard = { resourceVersion: undefined, entries: new Map() };
  private readonly directAt: number;
  private readonly foldAt: number;
  private readonly foldIdleMs: number;
  private foldTimer: NodeJS.Timeout | undefined;
  /** Serials on hold per owner, so setHolds finds an owner's holds without a scan. */
  private readonly holds = new Map<string, Set<string>>();
  /**
   * Every serial listed per owner, with how many of the journal and its shard hold it (one
   * serial in both, mid-fold, is one entry): the per-owner CRL budget reads it without a scan.
   */
  private readonly owned = new Map<string, Map<string, number>>();
  private queue: Pending[] = [];
  private draining: Promise<void> | undefined;
  /** Owners with a change queued or being written: their next change cannot be judged from memory. */
  private readonly busy = new Map<string, number>();
  private merging = 0;
  /** Bumped on every change to this replica's copy; the CRL is re-signed when it moved. */
  private version = 0;
  private signed: { version: number; number: number; nextUpdate: number } | undefined;
  private signing: Promise<void> = Promise.resolve();
  /** Signatures asked for and not yet started: one run serves them all. */
  private signWanted: { due: boolean; waiters: { resolve: () => void; reject: (err: unknown) => void }[] } | undefined;
  private signTimer: NodeJS.Timeout | undefined;
  private signRunning = false;
  private lastSignedAt = -Infinity;
  /** The last CRL signed, for the verification service. */
  crlPem = '';

  constructor(options: {
    client: KubeClient; ca: Ca; namespace: string; name: string; log: Logger; now?: () => number; clockCheckMs?: number;
    /** The journal's thresholds (tests); `directAt: 0` writes every batch straight to its shards. */
    journal?: { directAt?: number; foldAt?: number; foldIdleMs?: number };
    /** Follow and sign only (the verifier): changes are refused, nothing is written. */
    readOnly?: boolean;
  }) {
    this.readOnly = options.readOnly ?? false;
    this.client = options.client;
    this.ca = options.ca;
    this.namespace = options.namespace;
    this.name = options.name;
    this.log = options.log;
    this.now = options.now ?? Date.now;
    this.clockCheckMs = options.clockCheckMs ?? 3_600_000;
    this.directAt = options.journal?.directAt ?? defaultDirectAt;
    this.foldAt = options.journal?.foldAt ?? defaultFoldAt;
    this.foldIdleMs = options.journal?.foldIdleMs ?? defaultFoldIdleMs;
    this.resetShards(defaultShardCount);
  }

  /** Entries in the ledger (revoked and on hold, expired ones not yet pruned included). */
  get size(): number {
    let n = this.shards.reduce((n, s) => n + s.entries.size, 0);
    for (const serial of this.journal.entries.keys()) if (!this.shardAt(shardOf(serial, this.shards.length)).entries.has(serial)) n++;
    return n;
  }

  /** Entries waiting in the journal to be folded into their shards. */
  get journalSize(): number {
    return this.journal.entries.size;
  }

  /** Shard `index`: always there once started (an index comes from shardOf over this.shards.length). */
  private shardAt(index: number): Shard {
    const shard = this.shards[index];
    if (!shard) throw new Error(`revocation ledger ${this.name}: no shard ${index} of ${this.shards.length}`);
    return shard;
  }

  /** The serial's entry as this replica knows it: the journal's revocation over its shard's entry. */
  private entry(serial: string): LedgerEntry | undefined {
    return this.journal.entries.get(serial) ?? this.shardAt(shardOf(serial, this.shards.length)).entries.get(serial);
  }

  /** Revokes serials (idempotent). A revocation replaces a hold of the same serial. */
  revoke(owner: string, entries: RevokeEntry[]): Promise<void> {
    if (!entries.length) return Promise.resolve();
    let change: Change;
    try {
      change = {
        kind: 'revoke',
        owner,
        at: new Date(this.now()).toISOString(),
        entries: entries.map((e, i) => {
          const serialNumber = checkSerial(e.serialNumber, `revoke(${owner}): entries[${i}].serialNumber`);
          checkTime(e.notAfter, `revoke(${owner}): entries[${i}].notAfter`);
          if (!Object.hasOwn(reasonCodes, e.reason)) throw new Error(`revoke(${owner}): entries[${i}].reason must be one of ${Object.keys(reasonCodes).join(', ')}, not ${JSON.stringify(e.reason)}`);
          return { serialNumber, reason: e.reason, notAfter: new Date(e.notAfter).toISOString(), shard: shardOf(serialNumber, this.shards.length) };
        }),
      };
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    return this.submit(change, owner);
  }

  /** Makes `serials` the owner's only certificates on hold (disable puts on hold, enable releases). */
  setHolds(owner: string, serials: { serialNumber: string; notAfter: string }[]): Promise<void> {
    const want = new Map<string, string>();
    try {
      serials.forEach((s, i) => {
        checkTime(s.notAfter, `setHolds(${owner}): serials[${i}].notAfter`);
        want.set(checkSerial(s.serialNumber, `setHolds(${owner}): serials[${i}].serialNumber`), new Date(s.notAfter).toISOString());
      });
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    return this.submit({ kind: 'holds', owner, at: new Date(this.now()).toISOString(), want }, owner);
  }

  /** How many serials the ledger lists for `owner` (namespace/name), from memory. */
  listedFor(owner: string): number {
    return this.owned.get(owner)?.size ?? 0;
  }

  /** The `n` owners with the most serials listed, most first (the per-owner metric). */
  topOwners(n: number): { owner: string; entries: number }[] {
    const top: { owner: string; entries: number }[] = [];
    for (const [owner, serials] of this.owned) {
      const last = top[n - 1];
      if (last && serials.size <= last.entries) continue;
      top.push({ owner, entries: serials.size });
      top.sort((a, b) => b.entries - a.entries || a.owner.localeCompare(b.owner));
      if (top.length > n) top.pop();
    }
    return top;
  }

  /** Whether the ledger currently lists the serial (revoked or on hold), from memory. */
  isListed(serialNumber: string): Promise<boolean> {
    return Promise.resolve(this.entry(serialNumber.toLowerCase()) !== undefined);
  }

  /** Whether the ledger lists the serial as revoked (a hold does not count: it can be released). */
  isRevoked(serialNumber: string): Promise<boolean> {
    const entry = this.entry(serialNumber.toLowerCase());
    return Promise.resolve(entry !== undefined && entry.reason !== 'certificateHold');
  }

  /**
   * Reads the ledger (moving the single-ConfigMap format into shards), signs the CRL, and
   * keeps it fresh. A restart writes nothing.
   */
  async start(): Promise<void> {
    let head: KubeObject | undefined;
    try {
      head = await this.client.get(this.path(this.name));
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    const data = stringData(head?.data);
    const shards = data.shards === undefined ? defaultShardCount : Number(data.shards);
    if (!Number.isInteger(shards) || shards < 1 || shards > 256) {
      throw new Error(`revocation ledger head ${this.where(this.name)}: shards must be an integer from 1 to 256, not ${JSON.stringify(data.shards)}`);
    }
    this.resetShards(shards);
    let cont: string | undefined;
    do {
      const page = await this.client.get<{ items: KubeObject[]; metadata: { continue?: string } }>(
        `${this.path()}?labelSelector=${encodeURIComponent(`${ledgerLabel}=${this.name}`)}&limit=16${cont ? `&continue=${encodeURIComponent(cont)}` : ''}`,
      );
      // A shard or journal that cannot be read stops the start: writing over it would lose its entries.
      for (const item of page.items) this.take(item);
      cont = page.metadata.continue || undefined;
    } while (cont);
    const migrate = !head || data.shards === undefined || data['revocations.json'] !== undefined;
    if (migrate && !this.readOnly) await this.writeHead(head);
    await this.sign();
    this.schedule();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.foldTimer);
    clearTimeout(this.signTimer);
    this.signTimer = undefined;
    // Whoever waits for a signature is told it will not come.
    this.startSigning();
    this.timer = undefined;
  }

  /** A ledger ConfigMap as the watch sees it (another replica's write, our own echo). */
  observe(object: KubeObject): void {
    const name = object.metadata.name;
    if (name === this.name) {
      // An older version wrote its single-ConfigMap format during an upgrade: move it again.
      if (!this.readOnly && stringMap(object)['revocations.json'] !== undefined) {
        this.writeHead(object).catch((err: unknown) => this.log.warn({ err: String(err) }, 'could not move revocations into the ledger shards'));
      }
      return;
    }
    if (object.metadata.labels?.[ledgerLabel] !== this.name) return;
    try {
      if (!this.take(object)) return;
    } catch (err) {
      this.log.error({ err: String(err) }, `revocation ledger ${name === this.journalName ? 'journal' : 'shard'} cannot be read; keeping the last one`);
      return;
    }
    this.listed().catch((err: unknown) => this.log.warn({ err: String(err) }, 'could not sign the CRL'));
  }

  // --- batching ---------------------------------------------------------------------------

  private submit(change: Change, owner?: string): Promise<void> {
    if (this.readOnly) return Promise.reject(new Error(`revocation ledger ${this.where(this.name)} is read-only here (the verifier): the controller revokes`));
    // Nothing to change (the common case: every reconcile releases holds it does not have) is
    // answered from memory — unless a change of the same owner is still queued or in flight.
    if (owner !== undefined && !this.busy.has(owner) && !this.merging && !this.changes(change)) return Promise.resolve();
    if (owner !== undefined) this.busy.set(owner, (this.busy.get(owner) ?? 0) + 1);
    const global = change.kind === 'merge' || change.kind === 'refresh';
    if (global) this.merging++;
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ change, resolve, reject });
      this.draining ??= this.drain().finally(() => (this.draining = undefined));
    }).finally(() => {
      if (owner !== undefined) {
        const n = (this.busy.get(owner) ?? 1) - 1;
        if (n) this.busy.set(owner, n);
        else this.busy.delete(owner);
      }
      if (global) this.merging--;
    });
  }

  private async drain(): Promise<void> {
    // Let the changes made in this turn of the event loop join the first batch.
    await new Promise((r) => setImmediate(r));
    while (this.queue.length) {
      const batch = this.queue.splice(0);
      try {
        const refresh = await this.write(batch.map((p) => p.change));
        // The next batch is written while this one waits for its CRL.
        this.listed(refresh).then(
          () => batch.forEach((p) => p.resolve()),
          (err: unknown) => batch.forEach((p) => p.reject(err)),
        );
      } catch (err) {
        for (const p of batch) p.reject(err);
      }
    }
  }

  /** Whether `change` would change the ledger as this replica knows it. */
  private changes(change: Change): boolean {
    if (change.kind === 'revoke') {
      return change.entries.some((e) => {
        const existing = this.entry(e.serialNumber);
        return !existing || existing.reason === 'certificateHold';
      });
    }
    if (change.kind === 'holds') {
      const held = this.holds.get(change.owner);
      if (held && [...held].some((s) => !change.want.has(s))) return true;
      return [...change.want.keys()].some((s) => !this.entry(s));
    }
    return true;
  }

  /**
   * One batch: revocations of a small batch are one journal write, the rest a write per shard
   * they change. Whether it asks for a re-signature however recent the last (a refresh).
   */
  private async write(changes: Change[]): Promise<boolean> {
    const now = this.now();
    const touched = new Set<number>();
    let refresh = false;
    let fold = false;
    const revocations = changes.filter((c) => c.kind === 'revoke');
    const count = revocations.reduce((n, c) => n + c.entries.length, 0);
    const journaled: Change[] = count > 0 && count < this.directAt ? revocations : [];
    for (const c of changes) {
      if (c.kind === 'revoke') {
        if (!journaled.includes(c)) for (const e of c.entries) touched.add(e.shard);
      } else if (c.kind === 'holds') for (const s of [...(this.holds.get(c.owner) ?? []), ...c.want.keys()]) touched.add(shardOf(s, this.shards.length));
      else if (c.kind === 'merge') for (const e of c.entries) touched.add(shardOf(e.serialNumber, this.shards.length));
      else if (c.kind === 'fold') fold = true;
      else {
        refresh = fold = true;
        this.shards.forEach((s, i) => {
          for (const e of s.entries.values()) {
            if (!isLive(e, now)) {
              touched.add(i);
              break;
            }
          }
        });
      }
    }
    await this.writeShards([...touched], changes.filter((c) => !journaled.includes(c)), now);
    if (journaled.length) await this.writeJournal(journaled, now);
    if (fold || this.journal.entries.size >= this.foldAt) await this.fold(now);
    else if (journaled.length) this.foldWhenQuiet();
    return refresh;
  }

  private get journalName(): string {
    return `${this.name}-journal`;
  }

  /** Adds the batch's revocations to the journal (one write), re-reading it on conflict. */
  private async writeJournal(changes: Change[], now: number): Promise<void> {
    await this.rewriteJournal(now, (entries) => {
      let changed = false;
      for (const c of changes) {
        if (c.kind !== 'revoke') continue;
        for (const e of c.entries) {
          const existing = entries.get(e.serialNumber) ?? this.shardAt(e.shard).entries.get(e.serialNumber);
          if (existing && existing.reason !== 'certificateHold') continue;
          entries.set(e.serialNumber, revocationOf(c, e));
          changed = true;
        }
      }
      return changed;
    });
  }

  /**
   * Moves the journal's entries into their shards, then drops them from the journal — those
   * still as they were: another replica may have added some meanwhile. A crash in between
   * leaves them in both places, which is the same revocation twice.
   */
  private async fold(now: number): Promise<void> {
    clearTimeout(this.foldTimer);
    this.foldTimer = undefined;
    const folded = [...this.journal.entries.values()];
    if (!folded.length) return;
    const change: Change = { kind: 'merge', entries: folded };
    await this.writeShards([...new Set(folded.map((e) => shardOf(e.serialNumber, this.shards.length)))], [change], now);
    await this.rewriteJournal(now, (entries) => {
      let changed = false;
      for (const e of folded) {
        const current = entries.get(e.serialNumber);
        if (current && current.reason === e.reason && current.revokedAt === e.revokedAt) {
          entries.delete(e.serialNumber);
          changed = true;
        }
      }
      return changed;
    });
  }

  /** A fold once no journal write has come for `foldIdleMs`: a quiet ledger keeps no journal. */
  private foldWhenQuiet(): void {
    clearTimeout(this.foldTimer);
    if (this.stopped) return;
    this.foldTimer = setTimeout(() => {
      this.foldTimer = undefined;
      this.submit({ kind: 'fold' }).catch((err: unknown) => this.log.warn({ err: String(err) }, 'could not fold the revocation ledger journal into its shards'));
    }, this.foldIdleMs);
    this.foldTimer.unref();
  }

  /** Writes the journal as `edit` changes it (expired entries pruned), with optimistic concurrency. */
  private async rewriteJournal(now: number, edit: (entries: Map<string, LedgerEntry>) => boolean): Promise<void> {
    const name = this.journalName;
    for (let attempt = 1; ; attempt++) {
      const entries = new Map(this.journal.entries);
      let changed = edit(entries);
      for (const [serial, e] of entries) {
        if (!isLive(e, now)) {
          entries.delete(serial);
          changed = true;
        }
      }
      if (!changed) return;
      try {
        this.replaceJournal(entries, await this.put('journal', name, entries, this.journal.resourceVersion));
        return;
      } catch (err) {
        if (!(isConflict(err) || isNotFound(err)) || attempt >= maxAttempts) throw err;
        this.log.debug({ journal: name, attempt }, 'revocation ledger journal changed under us; re-reading');
        const object = await this.fetch(name);
        this.journal = { resourceVersion: undefined, entries: this.journal.entries };
        if (object) this.replaceJournal(this.decodeJournal(object), object.metadata.resourceVersion);
      }
    }
  }

  /**
   * Writes a shard or the journal holding `entries`: a PUT at the version this replica knows
   * (a conflict is the caller's to resolve), or a POST when it knows none. Returns the new version.
   */
  private async put(what: 'shard' | 'journal', name: string, entries: Map<string, LedgerEntry>, resourceVersion: string | undefined): Promise<string | undefined> {
    const encoded = encodeShard(entries.values());
    if (encoded.length > maxShardBytes) {
      throw new Error(`revocation ledger ${what} ${this.where(name)} would hold ${entries.size} entries in ${encoded.length} bytes, over its ${maxShardBytes}-byte limit`);
    }
    const body = {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name, namespace: this.namespace, labels: { ...ledgerLabels, [ledgerLabel]: this.name }, ...(resourceVersion ? { resourceVersion } : {}) },
      data: { entries: String(entries.size) },
      binaryData: { [shardKey]: encoded.toString('base64') },
    };
    const written = resourceVersion ? await this.client.request('PUT', this.path(name), body) : await this.client.request('POST', this.path(), body);
    return written.metadata.resourceVersion;
  }

  /** A ledger ConfigMap as the API server has it now; undefined when deleted. */
  private async fetch(name: string): Promise<KubeObject | undefined> {
    try {
      return await this.client.get(this.path(name));
    } catch (err) {
      if (!isNotFound(err)) throw err;
      return undefined;
    }
  }

  private async writeShards(indexes: number[], changes: Change[], now: number): Promise<void> {
    // The workers share one iterator: each takes the next shard not yet taken.
    const todo = indexes.values();
    await Promise.all(
      Array.from({ length: Math.min(shardWriteConcurrency, indexes.length) }, async () => {
        for (const index of todo) await this.writeShard(index, changes, now);
      }),
    );
  }

  /** Applies the batch to shard `index` and writes it if that changed it; re-reads on conflict. */
  private async writeShard(index: number, changes: Change[], now: number): Promise<void> {
    const name = shardName(this.name, index);
    for (let attempt = 1; ; attempt++) {
      const shard = this.shardAt(index);
      const entries = new Map(shard.entries);
      if (!this.apply(index, entries, changes, now)) return;
      try {
        this.replaceShard(index, entries, await this.put('shard', name, entries, shard.resourceVersion));
        return;
      } catch (err) {
        // Changed or created by another replica (409), or deleted by hand (404: re-created
        // from what this replica knows).
        if (!(isConflict(err) || isNotFound(err)) || attempt >= maxAttempts) throw err;
        this.log.debug({ shard: name, attempt }, 'revocation ledger shard changed under us; re-reading');
        await this.reread(index);
      }
    }
  }

  private apply(index: number, entries: Map<string, LedgerEntry>, changes: Change[], now: number): boolean {
    let changed = false;
    for (const [serial, e] of entries) {
      if (!isLive(e, now)) {
        entries.delete(serial);
        changed = true;
      }
    }
    const count = this.shards.length;
    for (const c of changes) {
      if (c.kind === 'revoke') {
        for (const e of c.entries) {
          if (e.shard !== index) continue;
          const existing = entries.get(e.serialNumber);
          if (existing && existing.reason !== 'certificateHold') continue;
          entries.set(e.serialNumber, revocationOf(c, e));
          changed = true;
        }
      } else if (c.kind === 'holds') {
        for (const [serial, e] of entries) {
          if (e.owner === c.owner && e.reason === 'certificateHold' && !c.want.has(serial)) {
            entries.delete(serial);
            changed = true;
          }
        }
        for (const [serial, notAfter] of c.want) {
          if (shardOf(serial, count) !== index || entries.has(serial)) continue;
          entries.set(serial, { serialNumber: serial, reason: 'certificateHold', notAfter, revokedAt: c.at, owner: c.owner, identity: identityOf(c.owner) });
          changed = true;
        }
      } else if (c.kind === 'merge') {
        for (const e of c.entries) {
          if (shardOf(e.serialNumber, count) !== index || !isLive(e, now)) continue;
          const existing = entries.get(e.serialNumber);
          if (existing && !(existing.reason === 'certificateHold' && e.reason !== 'certificateHold')) continue;
          entries.set(e.serialNumber, e);
          changed = true;
        }
      }
    }
    return changed;
  }

  /**
   * Writes the head (absent, or still in the single-ConfigMap format): the entries of that
   * format are moved into the shards first, then a PUT replaces it — its `revocations.json`
   * and `ca.crl` go with it — so a crash in between moves them again on the next start.
   */
  private async writeHead(current: KubeObject | undefined): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const data = stringData(current?.data);
      if (current && data.shards !== undefined && data['revocations.json'] === undefined) return;
      if (data['revocations.json'] !== undefined) {
        const legacy = legacyEntries(data['revocations.json'], this.where(this.name));
        await this.submit({ kind: 'merge', entries: legacy });
        this.log.info({ entries: legacy.length }, 'moved the revocation ledger from its single ConfigMap into shards');
      }
      const body = {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: this.name, namespace: this.namespace, labels: ledgerLabels, ...(current ? { resourceVersion: current.metadata.resourceVersion } : {}) },
        data: {
          shards: String(this.shards.length),
          crl: `not stored: every replica signs it from the shards ${shardName(this.name, 0)}…${shardName(this.name, this.shards.length - 1)} and serves it at GET /v1/crl`,
        },
      };
      try {
        await (current ? this.client.request('PUT', this.path(this.name), body) : this.client.request('POST', this.path(), body));
        return;
      } catch (err) {
        if (!isConflict(err) || attempt >= maxAttempts) throw err;
        current = await this.client.get(this.path(this.name));
      }
    }
  }

  /** Shard `index` as the API server has it now; deleted: what this replica knows, written again by POST. */
  private async reread(index: number): Promise<void> {
    const object = await this.fetch(shardName(this.name, index));
    this.shards[index] = { resourceVersion: undefined, entries: this.shardAt(index).entries };
    if (object) this.replaceShard(index, this.decode(object), object.metadata.resourceVersion);
  }

  // --- the CRL ----------------------------------------------------------------------------

  /**
   * Signs the CRL from this replica's copy of the ledger, if the copy changed since the last
   * signature (or `due`: the CRL nears its nextUpdate).
   */
  private sign(due = false): Promise<void> {
    const run = async () => {
      const now = this.now();
      if (this.signed && this.signed.version === this.version && !due && this.signed.nextUpdate - now >= resignBeforeMs) return;
      const version = this.version;
      const entries: LedgerEntry[] = [];
      const journal = this.journal.entries;
      for (const s of this.shards) for (const e of s.entries.values()) if (isLive(e, now) && !journal.has(e.serialNumber)) entries.push(e);
      for (const e of journal.values()) if (isLive(e, now)) entries.push(e);
      entries.sort((a, b) => (a.serialNumber < b.serialNumber ? -1 : 1));
      const number = Math.max(now, (this.signed?.number ?? 0) + 1);
      this.crlPem = await buildCrl(this.ca, entries, { number, now: new Date(now), validity: crlValidityMs });
      this.signed = { version, number, nextUpdate: now + crlValidityMs };
    };
    const next = this.signing.then(run, run);
    this.signing = next.catch(() => undefined);
    return next;
  }

  /**
   * Resolves once a CRL signed after this call — so listing everything this replica holds
   * now — is served. Calls made while a signature waits or runs share the next one.
   */
  private listed(due = false): Promise<void> {
    return new Promise((resolve, reject) => {
      this.signWanted ??= { due: false, waiters: [] };
      this.signWanted.due ||= due;
      this.signWanted.waiters.push({ resolve, reject });
      this.startSigning();
    });
  }

  private startSigning(): void {
    if (this.signRunning || this.signTimer || !this.signWanted) return;
    if (this.stopped) {
      const { waiters } = this.signWanted;
      this.signWanted = undefined;
      for (const w of waiters) w.reject(new Error('the revocation ledger stopped before the CRL was signed'));
      return;
    }
    this.signTimer = setTimeout(() => {
      this.signTimer = undefined;
      const job = this.signWanted;
      this.signWanted = undefined;
      if (!job) return;
      this.signRunning = true;
      this.sign(job.due).then(
        () => job.waiters.forEach((w) => w.resolve()),
        (err: unknown) => job.waiters.forEach((w) => w.reject(err)),
      ).finally(() => {
        this.signRunning = false;
        this.lastSignedAt = performance.now();
        this.startSigning();
      });
    }, Math.max(0, this.lastSignedAt + minSignIntervalMs - performance.now()));
  }

  /** Re-signs (and prunes) a day before nextUpdate; the wall clock is checked at least hourly. */
  private schedule(): void {
    clearTimeout(this.timer);
    if (this.stopped) return;
    const due = (this.signed?.nextUpdate ?? 0) - resignBeforeMs - this.now();
    this.timer = setTimeout(() => {
      if ((this.signed?.nextUpdate ?? 0) - resignBeforeMs - this.now() > 0) return this.schedule();
      // Read-only: re-signed from this copy (expired entries drop out of the CRL, not the shards).
      (this.readOnly ? this.listed(true) : this.submit({ kind: 'refresh' })).then(
        () => this.schedule(),
        (err: unknown) => {
          this.log.warn({ err: String(err) }, 'could not re-sign the CRL');
          this.schedule();
        },
      );
    }, Math.max(Math.min(due, this.clockCheckMs), 0));
    this.timer.unref();
  }

  // --- memory -------------------------------------------------------------------------------

  private resetShards(count: number): void {
    this.shards = Array.from({ length: count }, () => ({ resourceVersion: undefined, entries: new Map() }));
    this.holds.clear();
    this.owned.clear();
    this.journal.entries.forEach((e) => this.own(e, 1));
    this.version++;
  }

  /** Counts an entry in (1) or out (-1) of its owner's serials. */
  private own(e: LedgerEntry, delta: 1 | -1): void {
    let serials = this.owned.get(e.owner);
    if (!serials) this.owned.set(e.owner, (serials = new Map()));
    const n = (serials.get(e.serialNumber) ?? 0) + delta;
    if (n > 0) serials.set(e.serialNumber, n);
    else serials.delete(e.serialNumber);
    if (!serials.size) this.owned.delete(e.owner);
  }

  /** Replaces shard `index` with a newer version, keeping the owner index of holds in step. */
  private replaceShard(index: number, entries: Map<string, LedgerEntry> | LedgerEntry[], resourceVersion: string | undefined): void {
    const shard = this.shardAt(index);
    if (!newer(resourceVersion, shard.resourceVersion)) return;
    for (const e of shard.entries.values()) if (e.reason === 'certificateHold') this.holds.get(e.owner)?.delete(e.serialNumber);
    const map = entries instanceof Map ? entries : new Map(entries.map((e) => [e.serialNumber, e]));
    for (const e of map.values()) {
      if (e.reason !== 'certificateHold') continue;
      let set = this.holds.get(e.owner);
      if (!set) this.holds.set(e.owner, (set = new Set()));
      set.add(e.serialNumber);
    }
    for (const [owner, set] of this.holds) if (!set.size) this.holds.delete(owner);
    for (const e of shard.entries.values()) this.own(e, -1);
    for (const e of map.values()) this.own(e, 1);
    this.shards[index] = { resourceVersion, entries: map };
    this.version++;
  }

  /**
   * A shard or the journal as read from the API server, taken if newer than this replica's
   * copy; false for any other ConfigMap or an older version. Throws when it cannot be read.
   */
  private take(object: KubeObject): boolean {
    const { name, resourceVersion } = object.metadata;
    if (name === this.journalName) {
      if (!newer(resourceVersion, this.journal.resourceVersion)) return false;
      this.replaceJournal(this.decodeJournal(object), resourceVersion);
      return true;
    }
    const index = this.shardIndex(name);
    if (index === undefined || !newer(resourceVersion, this.shardAt(index).resourceVersion)) return false;
    this.replaceShard(index, this.decode(object), resourceVersion);
    return true;
  }

  private replaceJournal(entries: Map<string, LedgerEntry> | LedgerEntry[], resourceVersion: string | undefined): void {
    if (!newer(resourceVersion, this.journal.resourceVersion)) return;
    for (const e of this.journal.entries.values()) this.own(e, -1);
    this.journal = { resourceVersion, entries: entries instanceof Map ? entries : new Map(entries.map((e) => [e.serialNumber, e])) };
    for (const e of this.journal.entries.values()) this.own(e, 1);
    this.version++;
  }

  /** The journal's entries: revocations only (a hold there would mask a revocation in its shard). */
  private decodeJournal(object: KubeObject): LedgerEntry[] {
    const where = this.where(object.metadata.name);
    const entries = this.entriesOf('journal', object);
    const held = entries.find((e) => e.reason === 'certificateHold');
    if (held) throw new Error(`revocation ledger journal ${where}: serial ${held.serialNumber} is a certificateHold; the journal holds revocations only`);
    return entries;
  }

  private decode(object: KubeObject): LedgerEntry[] {
    const where = this.where(object.metadata.name);
    const entries = this.entriesOf('shard', object);
    const index = this.shardIndex(object.metadata.name);
    if (index === undefined) throw new Error(`revocation ledger ConfigMap ${where} is not one of its ${this.shards.length} shards`);
    for (const e of entries) {
      const belongs = shardOf(e.serialNumber, this.shards.length);
      if (belongs !== index) throw new Error(`revocation ledger shard ${where}: serial ${e.serialNumber} belongs in shard ${shardName(this.name, belongs)}`);
    }
    return entries;
  }

  /** The entries a shard or the journal holds; `what` names it in errors. */
  private entriesOf(what: 'shard' | 'journal', object: KubeObject): LedgerEntry[] {
    const data = stringData(object.binaryData)[shardKey];
    const where = `revocation ledger ${what} ${this.where(object.metadata.name)}`;
    if (data === undefined) throw new Error(`${where}: binaryData.${shardKey} is missing`);
    return decodeShard(Buffer.from(data, 'base64'), where);
  }

  private shardIndex(name: string): number | undefined {
    if (!name.startsWith(`${this.name}-`)) return undefined;
    const suffix = name.slice(this.name.length + 1);
    const index = /^[0-9a-f]{2}$/.test(suffix) ? parseInt(suffix, 16) : NaN;
    return index < this.shards.length ? index : undefined;
  }

  private path(name?: string): string {
    return `/api/v1/namespaces/${encodeURIComponent(this.namespace)}/configmaps${name ? `/${encodeURIComponent(name)}` : ''}`;
  }

  private where(name: string): string {
    return `ConfigMap ${this.namespace}/${name}`;
  }
}

/** The ledger entry a revoke change makes of one of its serials. */
function revocationOf(change: { owner: string; at: string }, e: RevokeEntry): LedgerEntry {
  return { serialNumber: e.serialNumber, reason: e.reason, notAfter: e.notAfter, revokedAt: change.at, owner: change.owner, identity: identityOf(change.owner) };
}

/** The entries of the single-ConfigMap format (`revocations.json`); unreadable ones are named. */
function legacyEntries(json: string, where: string): LedgerEntry[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch (err) {
    throw new Error(`revocation ledger ${where}: revocations.json is not JSON: ${String(err)}`, { cause: err });
  }
  if (!Array.isArray(parsed)) throw new Error(`revocation ledger ${where}: revocations.json must be an array`);
  return parsed.map((raw: unknown, i) => {
    const e: Record<string, unknown> = raw && typeof raw === 'object' ? { ...raw } : {};
    const at = `revocation ledger ${where}: revocations.json[${i}]`;
    const serialNumber = checkSerial(String(e.serialNumber), `${at}.serialNumber`);
    checkTime(String(e.notAfter), `${at}.notAfter`);
    checkTime(String(e.revokedAt), `${at}.revokedAt`);
    if (typeof e.owner !== 'string' || !e.owner.includes('/')) throw new Error(`${at}.owner must be namespace/name, not ${JSON.stringify(e.owner)}`);
    if (!isReason(e.reason)) throw new Error(`${at}.reason must be one of ${Object.keys(reasonCodes).join(', ')}, not ${JSON.stringify(e.reason)}`);
    return {
      serialNumber,
      reason: e.reason,
      notAfter: new Date(String(e.notAfter)).toISOString(),
      revokedAt: new Date(String(e.revokedAt)).toISOString(),
      owner: e.owner,
      identity: identityOf(e.owner),
    };
  });
}

function checkSerial(serial: string, field: string): string {
  const s = String(serial).toLowerCase();
  if (!serialPattern.test(s)) throw new Error(`${field} must be a hexadecimal certificate serial of at most 20 octets, not ${JSON.stringify(serial)}`);
  return s;
}

function checkTime(value: string, field: string): void {
  if (!Number.isFinite(Date.parse(value))) throw new Error(`${field} must be an RFC 3339 time, not ${JSON.stringify(value)}`);
}

/** Whether resourceVersion `a` is newer than `b` (absent: nothing known yet). */
function newer(a: string | undefined, b: string | undefined): boolean {
  if (a === undefined) return b === undefined;
  return b === undefined || Number(a) > Number(b);
}

/** A ConfigMap's data or binaryData: its string values (anything else is not ours and is left out). */
function stringData(data: unknown): Record<string, string> {
  if (!data || typeof data !== 'object') return {};
  return Object.fromEntries(Object.entries(data).filter((kv): kv is [string, string] => typeof kv[1] === 'string'));
}
