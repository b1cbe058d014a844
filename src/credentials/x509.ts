// The X.509 library (@peculiar/x509) on Node's WebCrypto, and the key algorithms offered.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { derNull, oid, sequence } from './der.ts';

// Node's WebCrypto is the global `crypto` (the same object as node:crypto's webcrypto), typed
// as the DOM's, which the X.509 and PKCS#12 libraries are written against.
x509.cryptoProvider.set(crypto);

export { x509 };
export const subtle = crypto.subtle;

export type KeyAlgorithm = 'ECDSA' | 'RSA' | 'Ed25519';

/** An EC key's curve ("P-256"), undefined for other keys. */
export function namedCurveOf(alg: { name: string }): string | undefined {
  return 'namedCurve' in alg && typeof alg.namedCurve === 'string' ? alg.namedCurve : undefined;
}

/** Signature parameters for a key: ECDSA signs with the hash matching its curve. */
export function signingParams(key: CryptoKey): Algorithm | EcdsaParams | RsaHashedImportParams {
  const alg = key.algorithm;
  if (alg.name === 'ECDSA') return { name: 'ECDSA', hash: { 'P-384': 'SHA-384', 'P-521': 'SHA-512' }[namedCurveOf(alg) ?? ''] ?? 'SHA-256' };
  if (alg.name === 'Ed25519') return { name: 'Ed25519' };
  return { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
}

/** The AlgorithmIdentifier (DER) of what `key` signs with, as `signingParams` chooses it. */
export function signatureAlgorithmDer(key: CryptoKey): Buffer {
  const alg = key.algorithm;
  if (alg.name === 'ECDSA') return sequence(oid({ 'P-384': '1.2.840.10045.4.3.3', 'P-521': '1.2.840.10045.4.3.4' }[namedCurveOf(alg) ?? ''] ?? '1.2.840.10045.4.3.2'));
  if (alg.name === 'Ed25519') return sequence(oid('1.3.101.112'));
  return sequence(oid('1.2.840.113549.1.1.11'), derNull); // sha256WithRSAEncryption: parameters NULL (RFC 4055)
}

/** The digest node:crypto's sign() takes for `key` (null for Ed25519, which hashes itself): `signingParams`' hash. */
export function signingHash(key: CryptoKey): string | null {
  const params = signingParams(key);
  return 'hash' in params ? String(params.hash).replace('-', '').toLowerCase() : null;
}

const usages = ['sign', 'verify'] as const;

/** A key pair of this algorithm and size (RSA: RSASSA-PKCS1-v1_5 with SHA-256). */
export async function generateKeys(algorithm: KeyAlgorithm, size?: number): Promise<CryptoKeyPair> {
  switch (algorithm) {
    case 'RSA':
      return subtle.generateKey({ name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256', publicExponent: new Uint8Array([1, 0, 1]), modulusLength: size ?? 2048 }, true, usages);
    case 'Ed25519':
      return subtle.generateKey({ name: 'Ed25519' }, true, usages);
    case 'ECDSA':
      return subtle.generateKey({ name: 'ECDSA', namedCurve: ecCurve(size) }, true, usages);
  }
}

/** The curve of an ECDSA key of `size` bits (default 256). */
export function ecCurve(size?: number): string {
  const curve = { 256: 'P-256', 384: 'P-384', 521: 'P-521' }[size ?? 256];
  if (!curve) throw new Error(`ECDSA key size must be 256, 384 or 521, not ${size}`);
  return curve;
}

export async function privateKeyPem(key: CryptoKey): Promise<string> {
  return x509.PemConverter.encode(await subtle.exportKey('pkcs8', key), 'PRIVATE KEY');
}

/** Imports a PKCS#8 PEM private key whose algorithm is that of `certificate`'s public key. */
export async function importPrivateKey(pem: string, certificate: x509.X509Certificate): Promise<CryptoKey> {
  const alg = certificate.publicKey.algorithm;
  const params =
    alg.name === 'ECDSA' ? { name: 'ECDSA', namedCurve: namedCurveOf(alg) } : alg.name === 'Ed25519' ? { name: 'Ed25519' } : { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
  return subtle.importKey('pkcs8', x509.PemConverter.decodeFirst(pem), params, true, ['sign']);
}

/** A random positive serial number of 128 bits, as hex (RFC 5280 allows up to 20 octets). */
export function randomSerial(): string {
  const [first = 0, ...rest] = crypto.getRandomValues(new Uint8Array(16));
  return Buffer.from([(first & 0x7f) | 0x40, ...rest]).toString('hex'); // positive, and never shortened by a leading zero
}
