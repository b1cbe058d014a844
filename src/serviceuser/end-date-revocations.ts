// Certificates revoked at their user's end date by a timer of their own, not by the reconcile
// that wipes the Secret. That reconcile waits its turn among `--concurrency` workers, and when
// thousands of end dates fall in the same minute, revocations made there were as few at a
// time as the workers, so the ledger could not batch them (a shard write each). Made here,
// every certificate due is handed to the ledger the moment it is due, whatever the backlog:
// those due together (or while a batch is being written) go into one batch, one CRL. The
// reconcile at the end date then finds its revocation already made, and only wipes.
//
// Nothing here decides alone: the reconcile says what to track (the built-in CA's certificate
// of a user with an end date), and at the end date the caller's `stillDue` — the current
// ServiceUser in the cache — confirms that the end date has not moved meanwhile.
import type { Logger } from '../observability/logger.ts';
import type { RevocationReason } from '../credentials/crl.ts';

export interface DueCertificate {
  serialNumber: string;
  /** RFC 3339. */
  notAfter: string;
}

export interface EndDateRevocationsOptions {
  revoke: (owner: string, entries: { serialNumber: string; reason: RevocationReason; notAfter: string }[]) => Promise<void>;
  /** Whether `owner` is (still) past its end date at `now`, and this replica acts. */
  stillDue: (owner: string, now: number) => boolean;
  log: Logger;
  now?: () => number;
}

// setTimeout holds at most 2^31-1 ms (~24.8 days): a later end date re-arms on the way.
const maxTimerMs = 2 ** 31 - 1;

export class EndDateRevocations {
  private readonly options: EndDateRevocationsOptions;
  private readonly now: () => number;
  private readonly tracked = new Map<string, { end: number; certificate: DueCertificate; timer: NodeJS.Timeout }>();
  private stopped = false;

  constructor(options: EndDateRevocationsOptions) {
    this.options = options;
    this.now = options.now ?? Date.now;
  }

  /** Certificates waiting for their end date. */
  get size(): number {
    return this.tracked.size;
  }

  /**
   * `owner`'s certificate to revoke at `end`; without an end date or a certificate, nothing.
   * Each call replaces the last (a renewal, a moved end date).
   */
  track(owner: string, end: number | undefined, certificate: DueCertificate | undefined): void {
    const current = this.tracked.get(owner);
    if (current && current.end === end && current.certificate.serialNumber === certificate?.serialNumber) return;
    this.forget(owner);
    if (this.stopped || end === undefined || !certificate) return;
    this.arm(owner, end, certificate);
  }

  forget(owner: string): void {
    const current = this.tracked.get(owner);
    if (!current) return;
    clearTimeout(current.timer);
    this.tracked.delete(owner);
  }

  stop(): void {
    this.stopped = true;
    for (const owner of [...this.tracked.keys()]) this.forget(owner);
  }

  private arm(owner: string, end: number, certificate: DueCertificate): void {
    const timer = setTimeout(() => this.fire(owner), Math.min(Math.max(0, end - this.now()), maxTimerMs));
    timer.unref();
    this.tracked.set(owner, { end, certificate, timer });
  }

  private fire(owner: string): void {
    const entry = this.tracked.get(owner);
    if (!entry || this.stopped) return;
    const now = this.now();
    // A timer may run a little early against the wall clock, or was capped: not yet.
    if (now < entry.end) return this.arm(owner, entry.end, entry.certificate);
    this.tracked.delete(owner);
    if (!this.options.stillDue(owner, now)) return;
    const { serialNumber, notAfter } = entry.certificate;
    // A failure is not lost: the reconcile at the end date revokes the same serial and retries.
    this.options.revoke(owner, [{ serialNumber, reason: 'cessationOfOperation', notAfter }]).catch((err: unknown) => {
      this.options.log.warn({ serviceUser: owner, serialNumber, err: String(err) }, 'could not revoke the certificate at the end date; its reconcile will');
    });
  }
}
