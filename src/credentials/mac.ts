// MACs over what the operator records about a ServiceUser (token records, the Secret's
// self-description, the permissions and accounts in status), under a key only the operator
// holds. Whoever can write status or a Secret, but not the key, cannot make a record the
// operator or verification will honour.
//
// A MAC is `v1.<key id>.<HMAC-SHA256, base64url>` over a canonical encoding of
// [purpose, ServiceUser uid, the fields]: the purpose keeps a MAC made for one kind of record
// from passing for another, and the uid binds it to one ServiceUser — a record copied to
// another ServiceUser (or to a new one of the same name) does not verify. The canonical
// encoding is JSON with sorted keys and absent fields dropped, so the order the API server
// returns fields in does not matter.
//
// Keys have ids. New MACs use the current key; any listed key verifies, so a key is rotated
// by adding a new one, making it current, and removing the old one once every record has
// been re-MAC'd.
import { createHmac, createSecretKey, randomBytes, timingSafeEqual, type KeyObject } from 'node:crypto';

export interface LedgerKey {
  id: string;
  secret: Buffer;
}

export interface KeyRing {
  current: LedgerKey;
  /** Every key that verifies, the current one included. */
  keys: LedgerKey[];
}

export type MacPurpose = 'token-record' | 'secret-token' | 'status-seal';

export const keyIdPattern = /^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$/;
/** Below this many bytes a key is refused: HMAC-SHA256 wants at least its output's size. */
export const minKeyBytes = 32;

/** JSON with sorted keys and no undefined values. */
export function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v) && !Buffer.isBuffer(v)
      ? Object.fromEntries(Object.entries(v).filter(([, x]) => x !== undefined).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v,
  );
}

// A raw key given to createHmac is imported afresh on every call (a measurable share of a
// reconcile's CPU at thousands of MACs a second); a KeyObject is imported once per key.
const keyObjects = new WeakMap<Buffer, KeyObject>();
function keyObjectOf(secret: Buffer): KeyObject {
  let k = keyObjects.get(secret);
  if (!k) keyObjects.set(secret, (k = createSecretKey(secret)));
  return k;
}

function hmac(key: LedgerKey, purpose: MacPurpose, uid: string, fields: unknown): Buffer {
  return createHmac('sha256', keyObjectOf(key.secret)).update(canonical([purpose, uid, fields]), 'utf8').digest();
}

export function macOf(ring: KeyRing, purpose: MacPurpose, uid: string, fields: unknown): string {
  return `v1.${ring.current.id}.${hmac(ring.current, purpose, uid, fields).toString('base64url')}`;
}

/** Whether `mac` was made by a key of the ring over these fields, for this purpose and uid. */
export function macValid(ring: KeyRing | undefined, purpose: MacPurpose, uid: string | undefined, fields: unknown, mac: string | undefined): boolean {
  if (!ring || !uid || !mac) return false;
  const [, id, value] = /^v1\.([-a-z0-9]{1,32})\.([A-Za-z0-9_-]{43})$/.exec(mac) ?? [];
  const key = id === undefined ? undefined : ring.keys.find((k) => k.id === id);
  if (!key || value === undefined) return false;
  const presented = Buffer.from(value, 'base64url');
  const expected = hmac(key, purpose, uid, fields);
  return presented.length === expected.length && timingSafeEqual(presented, expected);
}

/** Whether `mac` was made with the current key (else it is re-made on the next write). */
export const madeWithCurrent = (ring: KeyRing, mac: string | undefined) => !!mac && mac.startsWith(`v1.${ring.current.id}.`);

export function newLedgerKey(id = 'k1', random: (n: number) => Buffer = randomBytes): LedgerKey {
  return { id, secret: random(minKeyBytes) };
}

/**
 * The key ring as a Secret holds it: `key.<id>` entries (at least 32 bytes each) and
 * `current`, the id new MACs use. Errors name the entry and say what is expected.
 */
export function parseKeyRing(data: Record<string, Buffer>): KeyRing {
  const keys: LedgerKey[] = [];
  for (const [name, value] of Object.entries(data)) {
    if (!name.startsWith('key.')) continue;
    const id = name.slice(4);
    if (!keyIdPattern.test(id)) throw new Error(`${name}: a key id must be 1-32 lower-case letters, digits or '-'`);
    if (value.length < minKeyBytes) throw new Error(`${name}: a key must be at least ${minKeyBytes} bytes (e.g. openssl rand -hex 32)`);
    keys.push({ id, secret: value });
  }
  if (!keys.length) throw new Error(`no key: add an entry key.<id> of at least ${minKeyBytes} bytes`);
  const currentId = data.current?.toString('utf8').trim();
  if (!currentId) throw new Error(`current: must name the key new MACs use (one of ${keys.map((k) => k.id).join(', ')})`);
  const current = keys.find((k) => k.id === currentId);
  if (!current) throw new Error(`current: names key ${currentId}, but there is no entry key.${currentId}`);
  return { current, keys };
}

/** The Secret data for a ring (the inverse of parseKeyRing). */
export function keyRingData(ring: KeyRing): Record<string, Buffer> {
  return { current: Buffer.from(ring.current.id), ...Object.fromEntries(ring.keys.map((k) => [`key.${k.id}`, k.secret])) };
}
