// PKCS#12 bundles in the modern form: PBES2 with AES-256-CBC and PBKDF2-HMAC-SHA-256 for the
// key and the certificates, HMAC-SHA-256 for integrity. OpenSSL 3 reads them without the
// legacy provider; Java's keytool reads them too. Built with PKI.js, not by hand.
import { randomBytes, webcrypto } from 'node:crypto';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { x509 } from './x509.ts';

pkijs.setEngine('node', new pkijs.CryptoEngine({ name: 'node', crypto: webcrypto as unknown as Crypto }));

// The password is 192 random bits, not a human choice: iterations do not carry its strength.
const iterations = 10_000;

/** A generated password: 32 characters of base64url (192 bits). */
export function newPkcs12Password(): string {
  return randomBytes(24).toString('base64url');
}

export async function toPkcs12(options: { certPem: string; keyPem: string; caPem?: string; password: string; friendlyName: string }): Promise<Buffer> {
  const password = new TextEncoder().encode(options.password).buffer as ArrayBuffer;
  const cert = new x509.X509Certificate(options.certPem);
  const localKeyId = (await webcrypto.subtle.digest('SHA-1', cert.rawData)) as ArrayBuffer;
  const attributes = (withId: boolean) => [
    ...(withId ? [new pkijs.Attribute({ type: '1.2.840.113549.1.9.21', values: [new asn1js.OctetString({ valueHex: localKeyId })] })] : []),
    new pkijs.Attribute({ type: '1.2.840.113549.1.9.20', values: [new asn1js.BmpString({ value: options.friendlyName })] }),
  ];
  const certBag = (pem: string, withId: boolean) =>
    new pkijs.SafeBag({
      bagId: '1.2.840.113549.1.12.10.1.3',
      bagValue: new pkijs.CertBag({ parsedValue: pkijs.Certificate.fromBER(new x509.X509Certificate(pem).rawData) }),
      bagAttributes: attributes(withId),
    });
  const keyBag = new pkijs.PKCS8ShroudedKeyBag({ parsedValue: pkijs.PrivateKeyInfo.fromBER(x509.PemConverter.decodeFirst(options.keyPem)) });
  const encryption = { password, contentEncryptionAlgorithm: { name: 'AES-CBC', length: 256 }, hmacHashAlgorithm: 'SHA-256', iterationCount: iterations };
  const safe = new pkijs.AuthenticatedSafe({
    parsedValue: {
      safeContents: [
        { privacyMode: 0, value: new pkijs.SafeContents({ safeBags: [new pkijs.SafeBag({ bagId: '1.2.840.113549.1.12.10.1.2', bagValue: keyBag, bagAttributes: attributes(true) })] }) },
        { privacyMode: 1, value: new pkijs.SafeContents({ safeBags: [certBag(options.certPem, true), ...(options.caPem ? [certBag(options.caPem, false)] : [])] }) },
      ],
    },
  });
  await keyBag.makeInternalValues(encryption as never);
  await safe.makeInternalValues({ safeContents: [{}, encryption] });
  const pfx = new pkijs.PFX({ parsedValue: { integrityMode: 0, authenticatedSafe: safe } });
  await pfx.makeInternalValues({ password, iterations, pbkdf2HashAlgorithm: 'SHA-256', hmacHashAlgorithm: 'SHA-256' } as never);
  return Buffer.from(pfx.toSchema().toBER(false));
}
