// The X.509 library (@peculiar/x509) on Node's WebCrypto, and the key algorithms offered.
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

export { x509 };
// Node's WebCrypto, typed as the DOM's (which the X.509 and PKCS#12 libraries are written against).
export const subtle = webcrypto.subtle as unknown as SubtleCrypto;

export type KeyAlgorithm = 'ECDSA' | 'RSA' | 'Ed25519';

/** WebCrypto parameters for generating and signing with a key of this algorithm and size. */
export function keyParams(algorithm: KeyAlgorithm, size?: number): RsaHashedKeyGenParams | EcKeyGenParams | Algorithm {
  switch (algorithm) {
    case 'RSA':
      return { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256', publicExponent: new Uint8Array([1, 0, 1]), modulusLength: size ?? 2048 } as RsaHashedKeyGenParams;
    case 'Ed25519':
      return { name: 'Ed25519' };
    case 'ECDSA': {
      const curve = { 256: 'P-256', 384: 'P-384', 521: 'P-521' }[size ?? 256];
      if (!curve) throw new Error(`ECDSA key size must be 256, 384 or 521, not ${size}`);
      return { name: 'ECDSA', namedCurve: curve } as EcKeyGenParams;
    }
  }
}

/** Signature parameters for a key: ECDSA signs with the hash matching its curve. */
export function signingParams(key: CryptoKey): Algorithm | EcdsaParams {
  const alg = key.algorithm as { name: string; namedCurve?: string };
  if (alg.name === 'ECDSA') return { name: 'ECDSA', hash: { 'P-384': 'SHA-384', 'P-521': 'SHA-512' }[alg.namedCurve ?? ''] ?? 'SHA-256' } as EcdsaParams;
  if (alg.name === 'Ed25519') return { name: 'Ed25519' };
  return { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' } as RsaHashedImportParams;
}

export async function generateKeys(algorithm: KeyAlgorithm, size?: number): Promise<CryptoKeyPair> {
  return (await subtle.generateKey(keyParams(algorithm, size) as RsaHashedKeyGenParams, true, ['sign', 'verify'])) as CryptoKeyPair;
}

export async function privateKeyPem(key: CryptoKey): Promise<string> {
  return x509.PemConverter.encode(await subtle.exportKey('pkcs8', key), 'PRIVATE KEY');
}

/** Imports a PKCS#8 PEM private key whose algorithm is that of `certificate`'s public key. */
export async function importPrivateKey(pem: string, certificate: x509.X509Certificate): Promise<CryptoKey> {
  const alg = certificate.publicKey.algorithm as { name: string; namedCurve?: string };
  const params =
    alg.name === 'ECDSA' ? { name: 'ECDSA', namedCurve: alg.namedCurve } : alg.name === 'Ed25519' ? { name: 'Ed25519' } : { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
  return subtle.importKey('pkcs8', x509.PemConverter.decodeFirst(pem), params, true, ['sign']);
}

/** A random positive serial number of 128 bits, as hex (RFC 5280 allows up to 20 octets). */
export function randomSerial(): string {
  const bytes = webcrypto.getRandomValues(new Uint8Array(16));
  bytes[0] = (bytes[0]! & 0x7f) | 0x40; // positive, and never shortened by a leading zero
  return Buffer.from(bytes).toString('hex');
}
