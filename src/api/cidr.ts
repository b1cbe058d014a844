// CIDR parsing for `token.allowedCIDRs`: the same rules the CRD enforces with the API
// server's CEL `isCIDR()` / `cidr().masked()`, and the containment check verification uses.
import { isIPv4, isIPv6 } from 'node:net';

export interface Cidr {
  family: 4 | 6;
  bytes: Uint8Array;
  prefix: number;
}

function ipBytes(ip: string): { family: 4 | 6; bytes: Uint8Array } | undefined {
  if (isIPv4(ip)) {
    const parts = ip.split('.').map(Number);
    // Leading zeros are ambiguous (octal in some parsers); Kubernetes refuses them too.
    if (ip.split('.').some((p) => p.length > 1 && p.startsWith('0'))) return undefined;
    return { family: 4, bytes: Uint8Array.from(parts) };
  }
  if (!isIPv6(ip) || ip.includes('.')) return undefined;
  const [head, tail] = ip.includes('::') ? ip.split('::') : [ip, undefined];
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups = tail === undefined ? left : [...left, ...Array(8 - left.length - right.length).fill('0'), ...right];
  if (groups.length !== 8) return undefined;
  const bytes = new Uint8Array(16);
  groups.forEach((g, i) => {
    const v = parseInt(g, 16);
    bytes[i * 2] = v >> 8;
    bytes[i * 2 + 1] = v & 0xff;
  });
  return { family: 6, bytes };
}

export function parseCidr(text: string): Cidr | undefined {
  const [, address, bits] = /^([^/]+)\/([0-9]{1,3})$/.exec(text) ?? [];
  if (address === undefined || bits === undefined) return undefined;
  const ip = ipBytes(address);
  const prefix = Number(bits);
  if (!ip || bits.length > 1 && bits.startsWith('0')) return undefined;
  if (prefix > ip.bytes.length * 8) return undefined;
  return { ...ip, prefix };
}

/** True when no bits are set past the prefix, i.e. the text names the network itself. */
export function isMasked(cidr: Cidr): boolean {
  return cidr.bytes.every((byte, i) => {
    const keep = Math.max(0, Math.min(8, cidr.prefix - i * 8));
    return (byte & (0xff >> keep)) === 0;
  });
}

export function cidrContains(cidr: Cidr, ip: string): boolean {
  // An IPv4-mapped IPv6 address (::ffff:10.0.0.1, as Node reports IPv4 peers on dual-stack
  // sockets) is matched as the IPv4 address it carries.
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip)?.[1];
  const addr = ipBytes(mapped ?? ip);
  if (!addr || addr.family !== cidr.family) return false;
  for (let bit = 0; bit < cidr.prefix; bit++) {
    const mask = 0x80 >> bit % 8;
    if (((addr.bytes[bit >> 3] ?? 0) & mask) !== ((cidr.bytes[bit >> 3] ?? 0) & mask)) return false;
  }
  return true;
}
