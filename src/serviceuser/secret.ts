// The Secret's key layout per profile (docs/api.md, The Secret). Certificates add their keys
// here when they land; plaintext credentials exist nowhere else.
import type { profiles } from '../api/serviceuser.ts';

export type Profile = (typeof profiles)[number];

export interface SecretContent {
  identity: string;
  expiresAt: string | undefined;
  token: string | undefined;
  certificate?: { certPem: string; keyPem: string; caPem: string; p12?: Buffer; p12Password?: string } | undefined;
}

/** Keys that carry a credential: wiped at expiry and deletion. */
export const credentialKeys = ['token', 'token-id', 'SM_API_KEY', 'tls.crt', 'tls.key', 'ca.crt', 'client.p12', 'client.p12.password', 'SM_CLIENT_CERT_PASSWORD'];

/** Key → value; binary values (client.p12) as Buffers, the rest as text. */
export function secretKeys(profile: Profile, content: SecretContent): Record<string, string | Buffer> {
  const data: Record<string, string | Buffer> = { identity: content.identity };
  const cert = content.certificate;
  if (cert) {
    data['tls.crt'] = cert.certPem;
    data['tls.key'] = cert.keyPem;
    data['ca.crt'] = cert.caPem;
    if (cert.p12 && cert.p12Password) {
      data['client.p12'] = cert.p12;
      data[profile === 'digicert-smctl' ? 'SM_CLIENT_CERT_PASSWORD' : 'client.p12.password'] = cert.p12Password;
    }
  }
  if (content.expiresAt) data['expires-at'] = content.expiresAt;
  if (content.token) {
    if (profile === 'digicert-smctl') {
      data.SM_API_KEY = content.token;
    } else {
      data.token = content.token;
      data['token-id'] = content.token.split('_')[1]!;
    }
  }
  return data;
}
