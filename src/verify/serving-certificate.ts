// The serving certificate of the verification service (and of /metrics, which shares it):
// where the pair comes from, and when it changes. Two sources:
//   - mounted files (--verify-tls-cert/--verify-tls-key, a Secret cert-manager renews): read
//     again every `pollMs`; a new pair is taken only once both files parse and the key is the
//     certificate's — a half-updated mount (the kubelet swaps the files one symlink at a time)
//     keeps the old pair until the next poll;
//   - the built-in CA: issued at start and re-issued when two thirds of its life have passed.
// Servers follow with setSecureContext: new connections get the new pair at once, open ones
// keep theirs, and nothing restarts. The current pair is never an invalid one.
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { Ca } from '../credentials/ca.ts';
import { issueServingCertificate } from '../credentials/certificate.ts';
import type { Logger } from '../observability/logger.ts';

export interface TlsPair {
  certPem: string;
  keyPem: string;
}

// setTimeout holds at most 2^31-1 ms (~24.8 days): a later renewal re-arms on the way.
const maxTimerMs = 2 ** 31 - 1;

/** Why a pair cannot serve, or undefined when it can. */
export function pairProblem(pair: TlsPair): string | undefined {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(pair.certPem);
  } catch {
    return 'the certificate is not a PEM X.509 certificate';
  }
  try {
    if (!cert.checkPrivateKey(createPrivateKey(pair.keyPem))) return 'the key is not the certificate\'s';
  } catch {
    return 'the key is not a PEM private key';
  }
  return undefined;
}

export class ServingCertificate {
  private pair: TlsPair;
  private readonly listeners: ((pair: TlsPair) => void)[] = [];
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  private constructor(pair: TlsPair) {
    this.pair = pair;
  }

  /** A pair that never changes (tests, a caller that manages rotation itself). */
  static fixed(pair: TlsPair): ServingCertificate {
    return new ServingCertificate(pair);
  }

  /** Mounted files, re-read every `pollMs`; the first read must succeed (a clear error names the file). */
  static async mounted(files: { certFile: string; keyFile: string }, options: { log: Logger; pollMs?: number }): Promise<ServingCertificate> {
    const read = async () => ({ certPem: await readFile(files.certFile, 'utf8'), keyPem: await readFile(files.keyFile, 'utf8') });
    const first = await read().catch((err: unknown) => {
      throw new Error(`serving certificate ${files.certFile} / ${files.keyFile}: ${err instanceof Error ? err.message : String(err)}`);
    });
    const problem = pairProblem(first);
    if (problem) throw new Error(`serving certificate ${files.certFile} / ${files.keyFile}: ${problem}`);
    const serving = new ServingCertificate(first);
    const pollMs = options.pollMs ?? 10_000;
    let said: string | undefined;
    const poll = async () => {
      const next = await read().catch((err: unknown) => (err instanceof Error ? err : new Error(String(err))));
      if (serving.stopped) return;
      const why = next instanceof Error ? next.message : next.certPem === serving.pair.certPem && next.keyPem === serving.pair.keyPem ? undefined : pairProblem(next);
      if (why) {
        // Said once until it changes: a mount mid-update is normal for a moment.
        if (why !== said) options.log.warn({ cert: files.certFile, problem: why }, 'serving certificate files not taken; the current pair keeps serving');
      } else if (!(next instanceof Error) && (next.certPem !== serving.pair.certPem || next.keyPem !== serving.pair.keyPem)) {
        serving.replace(next);
        options.log.info({ cert: files.certFile, notAfter: new X509Certificate(next.certPem).validTo }, 'serving certificate reloaded');
      }
      said = why;
      serving.timer = setTimeout(() => void poll(), pollMs);
    };
    serving.timer = setTimeout(() => void poll(), pollMs);
    return serving;
  }

  /** Issued by `issue` now and again when two thirds of each one's life have passed. */
  static async issued(issue: () => Promise<TlsPair>, options: { log: Logger; now: () => number; retryMs?: number }): Promise<ServingCertificate> {
    const serving = new ServingCertificate(await issue());
    const arm = () => {
      if (serving.stopped) return;
      const cert = new X509Certificate(serving.pair.certPem);
      const from = Date.parse(cert.validFrom);
      const renewAt = from + ((Date.parse(cert.validTo) - from) * 2) / 3;
      const wait = Math.max(0, renewAt - options.now());
      serving.timer = setTimeout(() => {
        if (options.now() < renewAt) return arm();
        issue().then(
          (pair) => {
            serving.replace(pair);
            options.log.info({ notAfter: new X509Certificate(pair.certPem).validTo }, 'serving certificate renewed');
            arm();
          },
          (err: unknown) => {
            options.log.error({ err: err instanceof Error ? err.message : String(err) }, 'serving certificate renewal failed; retrying');
            serving.timer = setTimeout(arm, options.retryMs ?? 60_000);
          },
        );
      }, Math.min(wait, maxTimerMs));
    };
    arm();
    return serving;
  }

  current(): TlsPair {
    return this.pair;
  }

  /** Called with every new pair, after it is current. */
  onChange(listener: (pair: TlsPair) => void): void {
    this.listeners.push(listener);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private replace(pair: TlsPair): void {
    this.pair = pair;
    for (const l of this.listeners) l(pair);
  }
}

/** Where a process's serving pair comes from: fixed PEMs, mounted files, or else the built-in CA for `names`. */
export interface ServingSource {
  tls?: TlsPair | undefined;
  tlsFiles?: { certFile: string; keyFile: string } | undefined;
  names: string[];
}

export function servingCertificateFor(source: ServingSource, deps: { ca: Ca; log: Logger; now: () => number; pollMs?: number }): Promise<ServingCertificate> {
  if (source.tls) return Promise.resolve(ServingCertificate.fixed(source.tls));
  if (source.tlsFiles) return ServingCertificate.mounted(source.tlsFiles, { log: deps.log, ...(deps.pollMs ? { pollMs: deps.pollMs } : {}) });
  return ServingCertificate.issued(() => issueServingCertificate(deps.ca, source.names, new Date(deps.now())), { log: deps.log, now: deps.now });
}
