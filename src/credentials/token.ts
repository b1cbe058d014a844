// API tokens: `suo_<id>_<secret><checksum>`.
//   suo_      fixed prefix, so secret scanners (GitHub, gitleaks) can be taught to find them
//   id        16 characters of lower-case base32 (80 bits): public, names the token in
//             status, events and revokedTokenIds
//   secret    43 base62 characters from 32 random bytes: 256 bits
//   checksum  CRC-32 of everything before it, 6 base62 characters: a typo is caught offline
// Only the SHA-256 of a token leaves the Secret.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { tokenIdPattern } from '../api/primitives.ts';

export const tokenPrefix = 'suo_';
export const tokenPattern = /^suo_([a-z2-7]{16})_([0-9A-Za-z]{43})([0-9A-Za-z]{6})$/;

const base32 = 'abcdefghijklmnopqrstuvwxyz234567';
const base62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

function toBase62(value: bigint, width: number): string {
  let out = '';
  for (let i = 0; i < width; i++) {
    out = base62.charAt(Number(value % 62n)) + out;
    value /= 62n;
  }
  return out;
}

/** CRC-32 (IEEE, zlib's) of the UTF-8 body, in base62. */
function checksum(body: string): string {
  return toBase62(BigInt(crc32(Buffer.from(body, 'utf8'))), 6);
}

export interface IssuedToken {
  id: string;
  token: string;
  sha256: string;
}

export function newTokenId(random: (n: number) => Buffer = randomBytes): string {
  const bytes = random(10);
  let bits = 0n;
  for (const b of bytes) bits = (bits << 8n) | BigInt(b);
  let id = '';
  for (let i = 0; i < 16; i++) id += base32[Number((bits >> BigInt(75 - 5 * i)) & 31n)];
  return id;
}

export function issueToken(random: (n: number) => Buffer = randomBytes): IssuedToken {
  const id = newTokenId(random);
  const secret = toBase62(BigInt(`0x${random(32).toString('hex')}`), 43);
  const body = `${tokenPrefix}${id}_${secret}`;
  const token = body + checksum(body);
  return { id, token, sha256: tokenSha256(token) };
}

export type ParsedToken = { ok: true; id: string } | { ok: false; reason: string };

/** Checks form and checksum without any lookup: typos and truncation are caught here. */
export function parseToken(text: string): ParsedToken {
  const [, id, , sum] = tokenPattern.exec(text) ?? [];
  if (id === undefined) {
    return { ok: false, reason: text.startsWith(tokenPrefix) ? 'malformed token (wrong length or characters)' : 'not a service-user token' };
  }
  if (checksum(text.slice(0, -6)) !== sum) return { ok: false, reason: 'token checksum mismatch (typo or truncation)' };
  if (!tokenIdPattern.test(id)) return { ok: false, reason: 'malformed token id' };
  return { ok: true, id };
}

export function tokenSha256(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** Constant-time comparison of two hex digests. */
export function sameDigest(a: string, b: string): boolean {
  const x = Buffer.from(a, 'hex');
  const y = Buffer.from(b, 'hex');
  return x.length === y.length && x.length > 0 && timingSafeEqual(x, y);
}
