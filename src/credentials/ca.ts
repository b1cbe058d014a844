// The built-in certificate authority: an ECDSA P-256 CA whose key and certificate live in a
// Secret in the operator's namespace (created on first start, or supplied by the user).
import { generateKeys, importPrivateKey, privateKeyPem, randomSerial, signingParams, x509 } from './x509.ts';

export interface CaMaterial {
  certPem: string;
  keyPem: string;
}

export interface Ca extends CaMaterial {
  certificate: x509.X509Certificate;
  key: CryptoKey;
}

export async function createCa(options: { commonName?: string; now?: Date; years?: number } = {}): Promise<CaMaterial> {
  const now = options.now ?? new Date();
  const keys = await generateKeys('ECDSA', 256);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: `CN=${options.commonName ?? 'service-user-operator CA'}, O=service-user-operator`,
    notBefore: new Date(now.getTime() - 60_000),
    notAfter: new Date(now.getTime() + (options.years ?? 10) * 365 * 86_400_000),
    signingAlgorithm: signingParams(keys.privateKey),
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: cert.toString('pem'), keyPem: await privateKeyPem(keys.privateKey) };
}

/** Parses CA material, checking that it is a CA and that key and certificate belong together. */
export async function loadCa(material: CaMaterial): Promise<Ca> {
  let certificate: x509.X509Certificate;
  try {
    certificate = new x509.X509Certificate(material.certPem);
  } catch (err) {
    throw new Error(`the CA certificate (tls.crt) is not a PEM X.509 certificate: ${String(err)}`, { cause: err });
  }
  const constraints = certificate.getExtension(x509.BasicConstraintsExtension);
  if (!constraints?.ca) throw new Error('the CA certificate (tls.crt) is not a CA: basicConstraints CA:TRUE is missing');
  let key: CryptoKey;
  try {
    key = await importPrivateKey(material.keyPem, certificate);
  } catch (err) {
    throw new Error(`the CA key (tls.key) is not a PKCS#8 PEM key of the certificate's algorithm: ${String(err)}`, { cause: err });
  }
  // Sign and verify a probe: a key that does not match the certificate would issue
  // certificates nobody can verify.
  const probe = await x509.X509CertificateGenerator.create({
    serialNumber: '01',
    subject: 'CN=probe',
    issuer: certificate.subjectName,
    publicKey: certificate.publicKey,
    signingKey: key,
    signingAlgorithm: signingParams(key),
  });
  if (!(await probe.verify({ publicKey: certificate.publicKey, signatureOnly: true }))) {
    throw new Error('the CA key (tls.key) does not belong to the CA certificate (tls.crt)');
  }
  return { ...material, certificate, key };
}
