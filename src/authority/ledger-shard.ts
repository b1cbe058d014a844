// One shard of the revocation ledger: which shard a serial belongs to, and the compact form a
// shard's entries take in its ConfigMap. A ConfigMap holds at most 1 MiB; 100,000 entries as
// JSON are ~27 MB. Gzip'd tab-separated lines cost ~30 bytes an entry (~40 in base64; the
// serial's 16 random octets do not compress), so 64 shards hold 100,000 entries at ~65 KB each
// and ~1,000,000 before a shard nears its write limit.
import { createHash } from 'node:crypto';
import { gunzipSync, gzipSync } from 'node:zlib';
import { reasonCodes, serialPattern, type Revocation, type RevocationReason } from '../credentials/crl.ts';

export interface LedgerEntry extends Revocation {
  /** namespace/name of the ServiceUser it belonged to. */
  owner: string;
}

export const defaultShardCount = 64;
/** The ConfigMap key of a shard's entries. */
export const shardKey = 'revocations.tsv.gz';
/**
 * The largest encoded shard written: base64 in `binaryData` grows it by a third, and the
 * object's metadata needs room under the API server's 1 MiB (etcd's 1.5 MiB request) limit.
 */
export const maxShardBytes = 700 * 1024;
const header = 'serviceusers.dev/revocations v1';

/** The shard of `serialNumber` among `count`: the first four octets of its SHA-256. */
export function shardOf(serialNumber: string, count: number): number {
  return createHash('sha256').update(serialNumber.toLowerCase()).digest().readUInt32BE(0) % count;
}

/** The name of shard `index` of the ledger whose head ConfigMap is `head`: `<head>-07`, `<head>-3f`. */
export const shardName = (head: string, index: number) => `${head}-${index.toString(16).padStart(2, '0')}`;

export const identityOf = (owner: string) => `serviceuser:${owner.replace('/', ':')}`;

/**
 * Entries as gzip'd lines `serial reason revokedAt(ms) notAfter(ms) owner`, tab-separated,
 * sorted by serial so that equal shards encode equally. The identity is derived from the owner.
 */
export function encodeShard(entries: Iterable<LedgerEntry>): Buffer {
  const lines = [header];
  for (const e of [...entries].sort((a, b) => (a.serialNumber < b.serialNumber ? -1 : 1))) {
    lines.push(`${e.serialNumber}\t${e.reason}\t${Date.parse(e.revokedAt)}\t${Date.parse(e.notAfter)}\t${e.owner}`);
  }
  return gzipSync(`${lines.join('\n')}\n`, { level: 6 });
}

const ownerPattern = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?\/[a-z0-9]([-.a-z0-9]*[a-z0-9])?$/;

/** Whether `r` is a reason the CRL knows (RFC 5280's, by name). */
export const isReason = (r: unknown): r is RevocationReason => typeof r === 'string' && Object.hasOwn(reasonCodes, r);

/** Decodes a shard; `where` names it in errors (a ConfigMap edited by hand must not pass silently). */
export function decodeShard(data: Buffer, where: string): LedgerEntry[] {
  let text: string;
  try {
    text = gunzipSync(data).toString('utf8');
  } catch (err) {
    throw new Error(`${where}: ${shardKey} is not gzip data: ${String(err)}`, { cause: err });
  }
  const lines = text.split('\n');
  if (lines[0] !== header) throw new Error(`${where}: ${shardKey} must begin with the line ${JSON.stringify(header)}, not ${JSON.stringify(lines[0]?.slice(0, 80))}`);
  const out: LedgerEntry[] = [];
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i] ?? '';
    if (!line) continue;
    const at = `${where}: ${shardKey} line ${i + 1}`;
    const fields = line.split('\t');
    if (fields.length !== 5) throw new Error(`${at}: expected 5 tab-separated fields (serialNumber, reason, revokedAt, notAfter, owner)`);
    const [serialNumber = '', reason, revokedAt = '', notAfter = '', owner = ''] = fields;
    if (!serialPattern.test(serialNumber)) throw new Error(`${at}: serialNumber must be lowercase hexadecimal, at most 20 octets, not ${JSON.stringify(serialNumber)}`);
    if (!isReason(reason)) throw new Error(`${at}: reason must be one of ${Object.keys(reasonCodes).join(', ')}, not ${JSON.stringify(reason)}`);
    const times = [revokedAt, notAfter].map((t) => (/^\d{1,15}$/.test(t) ? new Date(Number(t)).toISOString() : undefined));
    if (!times[0]) throw new Error(`${at}: revokedAt must be milliseconds since the epoch, not ${JSON.stringify(revokedAt)}`);
    if (!times[1]) throw new Error(`${at}: notAfter must be milliseconds since the epoch, not ${JSON.stringify(notAfter)}`);
    if (!ownerPattern.test(owner)) throw new Error(`${at}: owner must be namespace/name, not ${JSON.stringify(owner)}`);
    out.push({ serialNumber, reason, revokedAt: times[0], notAfter: times[1], owner, identity: identityOf(owner) });
  }
  return out;
}
