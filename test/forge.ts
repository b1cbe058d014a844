// What an attacker can make without the operator's keys: a validly formatted token (prefix,
// id, secret, checksum) carrying any public id they choose, e.g. a victim's; a certificate
// naming the built-in CA as issuer with a victim's serial.
import { randomBytes } from 'node:crypto';
import { subtle, x509 } from '../src/credentials/x509.ts';
import { issueToken, type IssuedToken } from '../src/credentials/token.ts';

const base32 = 'abcdefghijklmnopqrstuvwxyz234567';

export function tokenWithId(id: string): IssuedToken {
  let bits = 0n;
  for (const c of id) bits = (bits << 5n) | BigInt(base32.indexOf(c));
  const idBytes = Buffer.from(bits.toString(16).padStart(20, '0'), 'hex');
  return issueToken((n) => (n === 10 ? idBytes : randomBytes(n)));
}

/**
 * A certificate anyone can make: self-signed with their own key, but naming `issuer` (the
 * built-in CA's subject, say: it is public) as its issuer and carrying a serial they choose (a
 * victim's: any mTLS peer sees it). Returns the PEMs for a kubernetes.io/tls Secret.
 */
export async function certificateClaiming(claim: { issuer: string; serialNumber: string; commonName: string }): Promise<{ certPem: string; keyPem: string }> {
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = (await subtle.generateKey(alg, true, ['sign', 'verify'])) as CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: claim.serialNumber,
    subject: `CN=${claim.commonName}`,
    issuer: claim.issuer,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 30 * 86_400_000),
    publicKey: keys.publicKey,
    signingKey: keys.privateKey,
    signingAlgorithm: alg,
    extensions: [new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth])],
  });
  const pkcs8 = Buffer.from(await subtle.exportKey('pkcs8', keys.privateKey)).toString('base64');
  return { certPem: cert.toString('pem'), keyPem: `-----BEGIN PRIVATE KEY-----\n${pkcs8.match(/.{1,64}/g)!.join('\n')}\n-----END PRIVATE KEY-----\n` };
}
