// PKCS#12 bundles in the modern form (RFC 7292 with RFC 8018 PBES2): the key and the
// certificates under PBES2 with AES-256-CBC and PBKDF2-HMAC-SHA-256, integrity by
// HMAC-SHA-256 with the PKCS#12 key derivation — what `openssl pkcs12 -export` writes by
// default in OpenSSL 3, which reads it without the legacy provider; Java's keytool reads it
// too (both are run on it in the tests). Encoded here with Node's crypto and the DER helpers:
// the structure is fixed, and a general ASN.1 library for it would be a second ASN.1 stack
// beside @peculiar/x509's.
//
// Iterations: 2,048 for PBKDF2 and for the MAC, OpenSSL 3's defaults (PKCS12_DEFAULT_ITER).
// Iterations slow down guessing a low-entropy password; this password is 192 random bits,
// whose guessing no iteration count changes (docs/certificates.md).
import { hash as oneShot, createCipheriv, createDecipheriv, createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual, X509Certificate } from 'node:crypto';
import { bmpString, child, children, derNull, explicit, integer, integerValue, octets, oid, oidString, readElement, sequence, setOf, tlv, type Element } from './der.ts';
import { x509 } from './x509.ts';

export const pkcs12Iterations = 2048;

/** A generated password: 32 characters of base64url (192 bits). */
export function newPkcs12Password(): string {
  return randomBytes(24).toString('base64url');
}

const oids = {
  data: '1.2.840.113549.1.7.1',
  encryptedData: '1.2.840.113549.1.7.6',
  keyBag: '1.2.840.113549.1.12.10.1.2', // pkcs8ShroudedKeyBag
  certBag: '1.2.840.113549.1.12.10.1.3',
  x509Certificate: '1.2.840.113549.1.9.22.1',
  friendlyName: '1.2.840.113549.1.9.20',
  localKeyId: '1.2.840.113549.1.9.21',
  pbes2: '1.2.840.113549.1.5.13',
  pbkdf2: '1.2.840.113549.1.5.12',
};
const hmacPrfs: Record<string, string> = { '1.2.840.113549.2.7': 'sha1', '1.2.840.113549.2.9': 'sha256', '1.2.840.113549.2.10': 'sha384', '1.2.840.113549.2.11': 'sha512' };
const aesCbc: Record<string, { cipher: string; keyLength: number }> = {
  '2.16.840.1.101.3.4.1.2': { cipher: 'aes-128-cbc', keyLength: 16 },
  '2.16.840.1.101.3.4.1.22': { cipher: 'aes-192-cbc', keyLength: 24 },
  '2.16.840.1.101.3.4.1.42': { cipher: 'aes-256-cbc', keyLength: 32 },
};
/** MAC digests: OID → hash name, output and block size in bytes (for the PKCS#12 KDF). */
/** The digest the bundles written here are MACed with. */
const sha256Mac = { hash: 'sha256', u: 32, v: 64 };
const macDigests: Record<string, { hash: string; u: number; v: number }> = {
  '1.3.14.3.2.26': { hash: 'sha1', u: 20, v: 64 },
  '2.16.840.1.101.3.4.2.1': sha256Mac,
  '2.16.840.1.101.3.4.2.2': { hash: 'sha384', u: 48, v: 128 },
  '2.16.840.1.101.3.4.2.3': { hash: 'sha512', u: 64, v: 128 },
};

// --- writing -------------------------------------------------------------------------------

/** PBES2 (PBKDF2-HMAC-SHA-256, AES-256-CBC) over `plain`: the AlgorithmIdentifier and the ciphertext. */
function pbes2Encrypt(password: string, plain: Buffer): { algorithm: Buffer; encrypted: Buffer } {
  const salt = randomBytes(16);
  const iv = randomBytes(16);
  const key = pbkdf2Sync(Buffer.from(password, 'utf8'), salt, pkcs12Iterations, 32, 'sha256');
  const cipher = createCipheriv('aes-256-cbc', key, iv);
  const encrypted = Buffer.concat([cipher.update(plain), cipher.final()]);
  const kdf = sequence(oid(oids.pbkdf2), sequence(octets(salt), integer(pkcs12Iterations), sequence(oid('1.2.840.113549.2.9'), derNull)));
  return { algorithm: sequence(oid(oids.pbes2), sequence(kdf, sequence(oid('2.16.840.1.101.3.4.1.42'), octets(iv)))), encrypted };
}

/** The PKCS#12 key derivation (RFC 7292 appendix B.2); the password as a BMPString with its terminating zero. */
export function pkcs12Kdf(password: string, salt: Buffer, id: number, iterations: number, digest: { hash: string; u: number; v: number }, length: number): Buffer {
  const { hash, u, v } = digest;
  const pw = password ? Buffer.concat([Buffer.from(password, 'utf16le').swap16(), Buffer.alloc(2)]) : Buffer.alloc(0);
  const fill = (b: Buffer) => (b.length ? Buffer.alloc(v * Math.ceil(b.length / v), b) : Buffer.alloc(0));
  const I = Buffer.concat([fill(salt), fill(pw)]);
  const D = Buffer.alloc(v, id);
  const out: Buffer[] = [];
  for (let produced = 0; produced < length; produced += u) {
    let A = createHash(hash).update(D).update(I).digest();
    // One-shot hash(): a Hash object per round costs several times the hashing itself.
    for (let r = 1; r < iterations; r++) A = oneShot(hash, A, 'buffer');
    out.push(A);
    // I_j = (I_j + B + 1) mod 2^(8v), B being A repeated to v bytes: only needed for the next block.
    const B = fill(A).subarray(0, v);
    for (let j = 0; j < I.length; j += v) {
      let carry = 1;
      for (let k = v - 1; k >= 0; k--) {
        const sum = I.readUInt8(j + k) + B.readUInt8(k) + carry;
        I[j + k] = sum & 0xff;
        carry = sum >> 8;
      }
    }
  }
  return Buffer.concat(out).subarray(0, length);
}

function macData(password: string, authSafe: Buffer): Buffer {
  const salt = randomBytes(16);
  const key = pkcs12Kdf(password, salt, 3, pkcs12Iterations, sha256Mac, 32);
  const mac = createHmac('sha256', key).update(authSafe).digest();
  return sequence(sequence(sequence(oid('2.16.840.1.101.3.4.2.1'), derNull), octets(mac)), octets(salt), integer(pkcs12Iterations));
}

const attribute = (type: string, value: Buffer) => sequence(oid(type), setOf(value));
const dataInfo = (content: Buffer) => sequence(oid(oids.data), explicit(0, octets(content)));

// async for its callers: the work is synchronous (native PBKDF2, HMAC and AES; ~2,048 hashes).
export async function toPkcs12(options: { certPem: string; keyPem: string; caPem?: string; password: string; friendlyName: string }): Promise<Buffer> {
  const { password } = options;
  const certDer = (pem: string) => Buffer.from(new x509.X509Certificate(pem).rawData);
  const leaf = certDer(options.certPem);
  // Key and certificate are paired by the SHA-1 of the certificate, as OpenSSL pairs them.
  const localKeyId = attribute(oids.localKeyId, octets(createHash('sha1').update(leaf).digest()));
  const friendlyName = attribute(oids.friendlyName, bmpString(options.friendlyName));
  const bag = (type: string, value: Buffer, ...attributes: Buffer[]) => sequence(oid(type), explicit(0, value), setOf(...attributes));
  const certBag = (der: Buffer, ...attributes: Buffer[]) => bag(oids.certBag, sequence(oid(oids.x509Certificate), explicit(0, octets(der))), ...attributes);

  const pkcs8 = Buffer.from(x509.PemConverter.decodeFirst(options.keyPem));
  const shrouded = pbes2Encrypt(password, pkcs8);
  const keyContents = sequence(bag(oids.keyBag, sequence(shrouded.algorithm, octets(shrouded.encrypted)), localKeyId, friendlyName));
  const certContents = sequence(certBag(leaf, localKeyId, friendlyName), ...(options.caPem ? [certBag(certDer(options.caPem), friendlyName)] : []));
  const sealed = pbes2Encrypt(password, certContents);
  const encryptedInfo = sequence(oid(oids.encryptedData), explicit(0, sequence(integer(0), sequence(oid(oids.data), sealed.algorithm, tlv(0x80, sealed.encrypted)))));
  const authSafe = sequence(dataInfo(keyContents), encryptedInfo);
  return sequence(integer(3), dataInfo(authSafe), macData(password, authSafe));
}

// --- reading -----------------------------------------------------------------------------

/** Decrypts PBES2 content: PBKDF2 with an HMAC PRF, AES-CBC. Throws on anything else. */
function pbes2Decrypt(algorithm: Element, encrypted: Buffer, password: string): Buffer {
  if (oidString(child(algorithm, 0, 0x06, 'encryption algorithm')) !== oids.pbes2) throw new Error('encrypted with something other than PBES2 (a legacy PKCS#12 cipher)');
  const params = child(algorithm, 1, 0x30, 'PBES2 parameters');
  const kdf = child(params, 0, 0x30, 'PBES2 key derivation');
  if (oidString(child(kdf, 0, 0x06, 'key derivation')) !== oids.pbkdf2) throw new Error('PBES2 key derivation is not PBKDF2');
  const kdfParams = children(child(kdf, 1, 0x30, 'PBKDF2 parameters').content);
  const prfElement = kdfParams.find((e) => e.tag === 0x30);
  const prf = prfElement ? hmacPrfs[oidString(child(prfElement, 0, 0x06, 'PBKDF2 PRF'))] : 'sha1';
  const scheme = child(params, 1, 0x30, 'PBES2 encryption scheme');
  const aes = aesCbc[oidString(child(scheme, 0, 0x06, 'PBES2 cipher'))];
  if (!prf || !aes || kdfParams[0]?.tag !== 0x04 || !kdfParams[1]) throw new Error('PBES2 with a PRF or cipher not read here');
  const key = pbkdf2Sync(Buffer.from(password, 'utf8'), kdfParams[0].content, integerValue(kdfParams[1]), aes.keyLength, prf);
  const decipher = createDecipheriv(aes.cipher, key, child(scheme, 1, 0x04, 'PBES2 IV').content);
  return Buffer.concat([decipher.update(encrypted), decipher.final()]);
}

function verifyMac(pfx: Element, authSafe: Buffer, password: string): void {
  const mac = child(pfx, 2, 0x30, 'MacData');
  const digestInfo = child(mac, 0, 0x30, 'MAC DigestInfo');
  const digest = macDigests[oidString(child(child(digestInfo, 0, 0x30, 'MAC algorithm'), 0, 0x06, 'MAC digest'))];
  if (!digest) throw new Error('integrity MAC with a digest not read here');
  const iterations = children(mac.content)[2] ? integerValue(child(mac, 2, 0x02, 'MAC iterations')) : 1;
  const key = pkcs12Kdf(password, child(mac, 1, 0x04, 'MAC salt').content, 3, iterations, digest, digest.u);
  const expected = child(digestInfo, 1, 0x04, 'MAC value').content;
  const actual = createHmac(digest.hash, key).update(authSafe).digest();
  if (expected.length !== actual.length || !timingSafeEqual(expected, actual)) throw new Error('integrity MAC does not verify: wrong password, or the bundle was altered');
}

/** What a bundle holds once opened with its password: the keys it decrypted, its certificates' serials (lowercase hex). */
export interface OpenedPkcs12 {
  keys: number;
  serials: string[];
}

/** Opens a bundle: checks the integrity MAC, decrypts every safe and every shrouded key. Throws, saying what failed. */
export function openPkcs12(der: Buffer, password: string): OpenedPkcs12 {
  const pfx = readElement(der);
  if (pfx.tag !== 0x30 || integerValue(child(pfx, 0, 0x02, 'PFX version')) !== 3) throw new Error('not a PKCS#12 (version 3) bundle');
  const authInfo = child(pfx, 1, 0x30, 'authSafe');
  if (oidString(child(authInfo, 0, 0x06, 'authSafe type')) !== oids.data) throw new Error('authSafe is not signed-less data (public-key integrity is not read here)');
  const authSafe = child(child(authInfo, 1, 0xa0, 'authSafe content'), 0, 0x04, 'authSafe octets').content;
  verifyMac(pfx, authSafe, password);
  const opened: OpenedPkcs12 = { keys: 0, serials: [] };
  for (const info of children(readElement(authSafe).content)) {
    const type = oidString(child(info, 0, 0x06, 'ContentInfo type'));
    const wrapped = child(info, 1, 0xa0, 'ContentInfo content');
    let contents: Buffer;
    if (type === oids.data) contents = child(wrapped, 0, 0x04, 'SafeContents').content;
    else if (type === oids.encryptedData) {
      const encryptedInfo = child(child(wrapped, 0, 0x30, 'EncryptedData'), 1, 0x30, 'EncryptedContentInfo');
      contents = pbes2Decrypt(child(encryptedInfo, 1, 0x30, 'content encryption'), child(encryptedInfo, 2, 0x80, 'encrypted content').content, password);
    } else throw new Error(`a safe of type ${type}, not data or encryptedData`);
    for (const safeBag of children(readElement(contents).content)) readBag(safeBag, password, opened);
  }
  return opened;
}

function readBag(safeBag: Element, password: string, opened: OpenedPkcs12): void {
  const type = oidString(child(safeBag, 0, 0x06, 'SafeBag type'));
  const value = child(child(safeBag, 1, 0xa0, 'SafeBag value'), 0, 0x30, 'SafeBag content');
  if (type === oids.keyBag) {
    // Decrypting the key is what proves the password opens it; the result must be a PKCS#8 SEQUENCE.
    const key = pbes2Decrypt(child(value, 0, 0x30, 'key encryption'), child(value, 1, 0x04, 'encrypted key').content, password);
    if (readElement(key).tag !== 0x30) throw new Error('the shrouded key does not decrypt to a PKCS#8 key');
    opened.keys++;
  } else if (type === oids.certBag && oidString(child(value, 0, 0x06, 'CertBag type')) === oids.x509Certificate) {
    const cert = new X509Certificate(child(child(value, 1, 0xa0, 'CertBag value'), 0, 0x04, 'certificate').content);
    opened.serials.push(cert.serialNumber.toLowerCase().replace(/^0+/, ''));
  }
}
