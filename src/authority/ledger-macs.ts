// What the operator MACs about a ServiceUser, and what it honours of what it reads back:
//   - each token record in status (every field: id, sha256, createdAt, state, validUntil,
//     revokedAt, reason) carries `mac`;
//   - the Secret's self-description of its token (id, sha256, created-at, replaces, the
//     rotation request it answered) carries the annotation serviceusers.dev/token-mac;
//   - status.permissions, status.accounts and status.certificate (the serial verification
//     indexes) are sealed together by status.seal.
// All are bound to the ServiceUser's uid (src/credentials/mac.ts). Anyone who may write
// status or the Secret, but does not hold the ledger key, can only make records that are
// never honoured: not by the reconcile, not by verification.
import type { ServiceUserStatus, TokenStatus } from '../api/serviceuser.ts';
import { macOf, macValid, type KeyRing } from '../credentials/mac.ts';

export const tokenMacAnnotation = 'serviceusers.dev/token-mac';
export const rotationRequestAnnotation = 'serviceusers.dev/token-rotation-request';

/**
 * Unsigned records (written before the ledger was MAC'd) are honoured only with this set:
 * a one-time upgrade, where the operator re-MACs every record it finds (docs/install.md).
 */
export interface LedgerTrust {
  ring: KeyRing | undefined;
  adoptUnsigned?: boolean;
}

const recordFields = (t: TokenStatus) => ({
  id: t.id,
  sha256: t.sha256,
  createdAt: t.createdAt,
  state: t.state,
  validUntil: t.validUntil,
  revokedAt: t.revokedAt,
  reason: t.reason,
});

/** The record with its MAC under the current key (any MAC it had is replaced). */
export function signToken(ring: KeyRing, uid: string, t: TokenStatus): TokenStatus {
  const { mac: _, ...record } = t;
  return { ...record, mac: macOf(ring, 'token-record', uid, recordFields(t)) };
}

export function tokenHonoured(trust: LedgerTrust, uid: string | undefined, t: TokenStatus): boolean {
  if (t.mac === undefined && trust.adoptUnsigned) return true;
  return macValid(trust.ring, 'token-record', uid, recordFields(t), t.mac);
}

/** The Secret's self-description of its token, as MAC'd. */
export interface SecretTokenDescription {
  id: string;
  sha256: string;
  createdAt: string | undefined;
  replaces: string | undefined;
  rotationRequest: string | undefined;
}

export const describeSecretToken = (ring: KeyRing, uid: string, d: SecretTokenDescription) => macOf(ring, 'secret-token', uid, d);

export function secretTokenHonoured(trust: LedgerTrust, uid: string | undefined, d: SecretTokenDescription, mac: string | undefined): boolean {
  if (mac === undefined && trust.adoptUnsigned) return true;
  return macValid(trust.ring, 'secret-token', uid, d, mac);
}

type Sealed = Pick<ServiceUserStatus, 'permissions' | 'certificate'> & { accounts?: unknown };
const sealFields = (s: Sealed) => ({ permissions: s.permissions ?? [], accounts: s.accounts, certificate: s.certificate });

export const sealOf = (ring: KeyRing, uid: string, s: Sealed) => macOf(ring, 'status-seal', uid, sealFields(s));

export function sealHonoured(trust: LedgerTrust, uid: string | undefined, s: Sealed & { seal?: string | undefined }): boolean {
  if (s.seal === undefined && trust.adoptUnsigned) return true;
  return macValid(trust.ring, 'status-seal', uid, sealFields(s), s.seal);
}
