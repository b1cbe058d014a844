// Revokes and wipes before a ServiceUser goes (its finalizer). What status recorded is enough,
// so a spec this version cannot parse (CRD and operator versions apart) still revokes its
// tokens and certificate and wipes the Secrets it owns.
//
// Order, for a crash anywhere: status records every token Revoked first (verification stops
// honouring them at once); the certificates go on the CRL before any Secret loses them; the
// cert-manager Certificate goes before its Secret is wiped; the finalizer is released last.
import type { ServiceUser } from '../api/serviceuser.ts';
import { resources } from '../api/resources.ts';
import { resourcePath, type KubeClient, type KubeObject } from '../controller/kube.ts';
import type { RevocationLedger } from '../authority/revocations.ts';
import type { Ca } from '../credentials/ca.ts';
import type { EventRecorder } from '../controller/events.ts';
import type { Logger } from '../observability/logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import { builtInRecorded, type CertificateRevocation } from './certificate.ts';
import { hadCertManagerCertificate, removeCertManagerCertificate } from './cert-manager.ts';
import { secretNameOf } from '../api/names.ts';
import type { EndDateRevocations } from './end-date-revocations.ts';
import { builtInCertificateIn } from './issuance.ts';
import { sealHonoured, signToken, tokenHonoured, type LedgerTrust } from '../authority/ledger-macs.ts';
import { recordedStatus } from './recorded-status.ts';
import { credentialKeys } from './secret.ts';

export interface FinalizeDeps {
  client: KubeClient;
  authority: { ca: Ca; ledger: Pick<RevocationLedger, 'revoke' | 'setHolds'> };
  trust: LedgerTrust;
  events: Pick<EventRecorder, 'record'>;
  log: Logger;
  metrics: Pick<Metrics, 'tokensRevoked'>;
  now: () => number;
  endDates?: Pick<EndDateRevocations, 'forget'> | undefined;
  /** The Secret read live. */
  readSecret(ns: string, name: string): Promise<KubeObject | undefined>;
  applyStatus(raw: KubeObject, status: unknown): Promise<KubeObject>;
  setFinalizer(raw: KubeObject, present: boolean): Promise<KubeObject>;
  /** The user's metric series go. */
  forgetMetrics(ns: string, name: string): void;
}

export async function finalize(deps: FinalizeDeps, raw: KubeObject, su: ServiceUser | undefined): Promise<void> {
  const ns = raw.metadata.namespace!;
  const owner = `${ns}/${raw.metadata.name}`;
  const live = await revokeTokens(deps, raw);
  deps.endDates?.forget(owner);
  const secrets = await ownedSecrets(deps, raw, su);
  await deps.authority.ledger.revoke(owner, await certificatesOf(deps, raw, secrets));
  await deps.authority.ledger.setHolds(owner, []);
  if (su?.spec.credentials.clientCertificate.issuerRef || hadCertManagerCertificate({ status: raw.status } as ServiceUser, deps.authority.ca.certificate.subject)) {
    await removeCertManagerCertificate(deps.client, raw);
  }
  for (const secret of secrets) {
    const present = credentialKeys.filter((k) => k in ((secret.data as object | undefined) ?? {}));
    if (present.length) await deps.client.mergePatch(resourcePath(resources.secrets, ns, secret.metadata.name), { metadata: { uid: secret.metadata.uid }, data: Object.fromEntries(present.map((k) => [k, null])) });
  }
  if (live.length) deps.metrics.tokensRevoked.inc({ reason: 'Deleted' }, live.length);
  if (live.length) await deps.events.record(raw, { type: 'Normal', reason: 'TokenRevoked', message: `ServiceUser deleted: tokens ${live.map((t) => t.id).join(', ')} revoked` });
  await deps.setFinalizer(raw, false);
  deps.forgetMetrics(ns, raw.metadata.name);
  deps.log.child({ serviceUser: owner }).info('credentials revoked; finalizer removed');
}

/** Records every honoured token Revoked (Deleted); the ones that were live. */
async function revokeTokens(deps: FinalizeDeps, raw: KubeObject) {
  const status = recordedStatus(raw.status);
  const now = deps.now();
  const uid = raw.metadata.uid ?? '';
  const ring = deps.trust.ring!;
  const honoured = status.tokens.filter((t) => tokenHonoured(deps.trust, uid, t));
  const tokens = honoured.map(({ validUntil: _, ...t }) => signToken(ring, uid, t.state === 'Revoked' ? t : { ...t, state: 'Revoked' as const, revokedAt: new Date(now).toISOString(), reason: 'Deleted' }));
  await deps.applyStatus(raw, { ...(raw.status as object | undefined), tokens });
  return honoured.filter((t) => t.state !== 'Revoked');
}

/** The Secrets (the spec's name, status's) this user owns, read live. */
async function ownedSecrets(deps: FinalizeDeps, raw: KubeObject, su: ServiceUser | undefined): Promise<KubeObject[]> {
  const secrets = [];
  for (const name of new Set([su ? secretNameOf(su) : undefined, recordedStatus(raw.status).secretName].filter((n): n is string => !!n))) {
    const secret = await deps.readSecret(raw.metadata.namespace!, name);
    if (secret && (secret.metadata.ownerReferences ?? []).some((o) => o.uid === raw.metadata.uid)) secrets.push(secret);
  }
  return secrets;
}

/**
 * Only what the built-in CA issued to this user: status's record of it (issuedBy, sealed
 * — a serial claimed by a status writer, another user's, is not revoked on this user's
 * behalf), and one a crash left unrecorded in the Secret (signed by the CA for this identity).
 */
async function certificatesOf(deps: FinalizeDeps, raw: KubeObject, secrets: KubeObject[]): Promise<CertificateRevocation[]> {
  const sealed = sealHonoured(deps.trust, raw.metadata.uid, (raw.status ?? {}) as Parameters<typeof sealHonoured>[2]);
  const recorded = builtInRecorded(sealed ? recordedStatus(raw.status).certificate : undefined, undefined);
  const revoke: CertificateRevocation[] = recorded ? [{ ...recorded, reason: 'cessationOfOperation' }] : [];
  for (const secret of secrets) {
    const held = await builtInCertificateIn((secret.data as Record<string, string> | undefined) ?? {}, deps.authority.ca, `serviceuser:${raw.metadata.namespace}:${raw.metadata.name}`);
    if (held && !revoke.some((r) => r.serialNumber === held.serialNumber)) revoke.push({ ...held, reason: 'cessationOfOperation' });
  }
  return revoke;
}
