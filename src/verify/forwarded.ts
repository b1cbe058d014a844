// The client address a gateway forwards in X-Forwarded-For, read as Envoy reads it with
// `xff_num_trusted_hops`: each proxy appends the address of the peer it received the request
// from, so only the entries appended by proxies we trust are facts; everything to their left
// was written by the client and proves nothing. With `trustedHops` = 0 the answer is the
// rightmost entry (the one the gateway itself appended); with N, the entry N+1 from the
// right. Never the leftmost: that is the one an attacker writes.
import { isIP } from 'node:net';

/**
 * `header`: the X-Forwarded-For value(s) as Node gives them (repeated headers are joined with
 * ", "). Undefined when the header is absent, has fewer entries than the hops require, or the
 * chosen entry is not a bare IP address: the address is then unknown, and a token limited to
 * networks fails closed.
 */
export function forwardedClient(header: string | string[] | undefined, trustedHops: number): string | undefined {
  if (!Number.isInteger(trustedHops) || trustedHops < 0) throw new RangeError(`trustedHops must be a non-negative integer, got ${trustedHops}`);
  if (header === undefined) return undefined;
  const entries = (Array.isArray(header) ? header.join(',') : header).split(',').map((e) => e.trim());
  // An empty element (",," or a trailing comma) is still an element a proxy could have
  // appended after; counting it keeps the position honest, and it is never an address.
  if (entries.length === 1 && entries[0] === '') return undefined;
  const chosen = entries[entries.length - 1 - trustedHops];
  return chosen !== undefined && isIP(chosen) ? chosen : undefined;
}

/** Parses the `--trusted-proxy-hops` flag: a non-negative integer, or an error naming the flag. */
export function parseTrustedHops(text: string): number {
  if (!/^[0-9]{1,2}$/.test(text)) throw new Error(`--trusted-proxy-hops must be a whole number from 0 to 99 (the proxies in front of the gateway you trust), got "${text}"`);
  return Number(text);
}
