// Whether a presented token is valid for a ServiceUser right now. The verification service
// answers with this; it checks the clock itself, so a token is refused from the exact
// instant of the end date, not from the next reconcile. Only tokens recorded Active, or in
// Grace before validUntil, in status are valid: a token in a Secret but not in status
// (written just before a crash) is not.
import type { TokenStatus } from '../api/serviceuser.ts';
import type { Verifiable } from './directory.ts';
import { parseToken, sameDigest, tokenSha256 } from '../credentials/token.ts';
import { expiresAt } from '../api/expiry.ts';
import { cidrContains, parseCidr } from '../api/cidr.ts';

export type Verdict = { active: true; token: TokenStatus } | { active: false; reason: string };

/**
 * `clientAddress`: where the token is being used from, when the caller knows; a token
 * restricted by allowedCIDRs is refused when it is unknown (fail closed).
 */
export function verifyToken(su: Verifiable | undefined, presented: string, now: number, clientAddress?: string): Verdict {
  const parsed = parseToken(presented);
  if (!parsed.ok) return { active: false, reason: parsed.reason };
  if (!su) return { active: false, reason: 'unknown token' };
  const user = userActive(su, now);
  if (!user.active) return user;
  if (!su.spec.credentials.token.enabled) return { active: false, reason: 'tokens are disabled for this service user' };
  if (su.spec.credentials.token.revokedTokenIds?.includes(parsed.id)) return { active: false, reason: 'token revoked' };
  const digest = tokenSha256(presented);
  const record = su.status?.tokens?.find((t) => t.id === parsed.id);
  if (!record || !sameDigest(record.sha256, digest)) return { active: false, reason: 'unknown token' };
  const live = record.state === 'Active' || (record.state === 'Grace' && !!record.validUntil && now < Date.parse(record.validUntil));
  if (!live) return { active: false, reason: record.state === 'Grace' ? 'grace period over' : 'token revoked' };
  const networks = su.spec.credentials.token.allowedCIDRs ?? [];
  if (networks.length) {
    if (!clientAddress) return { active: false, reason: 'token is restricted to networks (allowedCIDRs) and the client address is unknown' };
    if (!networks.some((n) => { const c = parseCidr(n); return c !== undefined && cidrContains(c, clientAddress); })) {
      return { active: false, reason: `client address ${clientAddress} is outside allowedCIDRs` };
    }
  }
  return { active: true, token: record };
}

/** Whether a ServiceUser may act at all right now (certificate callers, authorize by identity). */
export function userActive(su: Verifiable | undefined, now: number): { active: true; su: Verifiable } | { active: false; reason: string } {
  if (!su) return { active: false, reason: 'unknown service user' };
  if (su.metadata.deletionTimestamp) return { active: false, reason: 'service user is being deleted' };
  const end = expiresAt(su.spec.endDate);
  if (end !== undefined && now >= end) return { active: false, reason: 'service user expired' };
  if (su.spec.disabled) return { active: false, reason: 'service user disabled' };
  return { active: true, su };
}
