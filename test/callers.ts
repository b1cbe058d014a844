// Callers of the verification service that are not service users — a kube-apiserver's token
// webhook, a gateway — authenticate with a client certificate from a CA the platform team
// trusts (--tokenreview-client-ca, --verify-client-ca). This makes such a CA and its
// certificates for tests and benchmarks; an intermediate CA too, so that chains are exercised.
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { loadCa, type Ca } from '../src/credentials/ca.ts';
import { generateKeys, privateKeyPem, randomSerial, signingParams, x509 } from '../src/credentials/x509.ts';

export interface CallerCertificate {
  /** Leaf first, then any intermediates: what the client presents. */
  certPem: string;
  keyPem: string;
}

export interface CallerCa {
  /** The trust anchor: what the operator's flag is given. */
  certPem: string;
  issue(commonName: string): Promise<CallerCertificate>;
  /** A CA under this one; its certificates are presented with the intermediate attached. */
  intermediate(commonName: string): Promise<CallerCa>;
}

function issuer(ca: Ca, chain: string[]): CallerCa {
  return {
    certPem: ca.certPem,
    async issue(commonName) {
      const keys = await generateKeys('ECDSA', 256);
      const cert = await x509.X509CertificateGenerator.create({
        serialNumber: randomSerial(),
        subject: `CN=${commonName}`,
        issuer: ca.certificate.subject,
        notBefore: new Date(Date.now() - 60_000),
        notAfter: new Date(Date.now() + 86_400_000),
        publicKey: keys.publicKey,
        signingKey: ca.key,
        signingAlgorithm: signingParams(ca.key),
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
          new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
          await x509.AuthorityKeyIdentifierExtension.create(ca.certificate),
        ],
      });
      return { certPem: [cert.toString('pem'), ...chain].join('\n'), keyPem: await privateKeyPem(keys.privateKey) };
    },
    async intermediate(commonName) {
      const keys = await generateKeys('ECDSA', 256);
      const cert = await x509.X509CertificateGenerator.create({
        serialNumber: randomSerial(),
        subject: `CN=${commonName}`,
        issuer: ca.certificate.subject,
        notBefore: new Date(Date.now() - 60_000),
        notAfter: new Date(Date.now() + 86_400_000),
        publicKey: keys.publicKey,
        signingKey: ca.key,
        signingAlgorithm: signingParams(ca.key),
        extensions: [
          new x509.BasicConstraintsExtension(true, 0, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.digitalSignature, true),
          await x509.AuthorityKeyIdentifierExtension.create(ca.certificate),
          await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
        ],
      });
      const material = { certPem: cert.toString('pem'), keyPem: await privateKeyPem(keys.privateKey) };
      return issuer(await loadCa(material), [material.certPem, ...chain]);
    },
  };
}

export async function callerCa(commonName: string): Promise<CallerCa> {
  // Not the operator's createCa: that CA has pathLen 0 and could not have an intermediate.
  const keys = await generateKeys('ECDSA', 256);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: `CN=${commonName}`,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 7 * 86_400_000),
    signingAlgorithm: signingParams(keys.privateKey),
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 1, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.digitalSignature, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return issuer(await loadCa({ certPem: cert.toString('pem'), keyPem: await privateKeyPem(keys.privateKey) }), []);
}

/** Writes a certificate and key to `dir` as `<name>.crt` / `<name>.key`, for kubeconfigs and curl. */
export function writeCertificate(dir: string, name: string, c: CallerCertificate): { cert: string; key: string } {
  mkdirSync(dir, { recursive: true });
  const cert = path.join(dir, `${name}.crt`);
  const key = path.join(dir, `${name}.key`);
  writeFileSync(cert, c.certPem);
  writeFileSync(key, c.keyPem, { mode: 0o600 });
  return { cert, key };
}
