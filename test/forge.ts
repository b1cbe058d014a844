// What an attacker can make without the operator's keys: a validly formatted token (prefix,
// id, secret, checksum) carrying any public id they choose, e.g. a victim's.
import { randomBytes } from 'node:crypto';
import { issueToken, type IssuedToken } from '../src/credentials/token.ts';

const base32 = 'abcdefghijklmnopqrstuvwxyz234567';

export function tokenWithId(id: string): IssuedToken {
  let bits = 0n;
  for (const c of id) bits = (bits << 5n) | BigInt(base32.indexOf(c));
  const idBytes = Buffer.from(bits.toString(16).padStart(20, '0'), 'hex');
  return issueToken((n) => (n === 10 ? idBytes : randomBytes(n)));
}
