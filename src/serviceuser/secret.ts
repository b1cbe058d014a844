// The Secret's key layout per profile (DESIGN.md, The Secret). Certificates add their keys
// here when they land; plaintext credentials exist nowhere else.
import type { profiles } from '../api/serviceuser.ts';

export type Profile = (typeof profiles)[number];

export interface SecretContent {
  identity: string;
  expiresAt: string | undefined;
  token: string | undefined;
}

/** Keys that carry a credential: wiped at expiry and deletion. */
export const credentialKeys = ['token', 'token-id', 'SM_API_KEY', 'tls.crt', 'tls.key', 'ca.crt', 'client.p12', 'client.p12.password', 'SM_CLIENT_CERT_PASSWORD'];

export function secretKeys(profile: Profile, content: SecretContent): Record<string, string> {
  const data: Record<string, string> = { identity: content.identity };
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
