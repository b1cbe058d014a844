// Carrying out a ServiceUser's plan: the one place its revocations, holds, issuance and writes
// happen, through a narrow set of actions (the reconcile binds them to the API server, the
// ledger and the CA; the unit tests to a recorder). It decides nothing the plan did not say;
// it keeps the order that makes every crash recoverable:
//   1. the certificate plan's `before` steps: revocations reach the ledger (the CRL) before
//      the Secret loses the certificate, and our cert-manager Certificate goes before its
//      Secret is wiped (nothing renews into it);
//   2. the certificate: kept, issued by the CA, or placed from cert-manager;
//   3. its `after` steps: the holds, which name the certificate placed;
//   4. (desired.ts plans the Secret and status from what was placed)
//   5. the Secret, before the status that records its credentials (tokens.ts: the Secret
//      describes itself, so a crash between the two is finished by the next pass; the
//      crashAfterSecretWrite test fault exits exactly there);
//   6. the status, with the digest of the credentials it records (status.credentialsDigest:
//      the restarts controller annotates the restart targets to it, so only after this write)
//      and the notices the change owes (the outbox's pending entries: the notices controller
//      sends and marks them);
//   7. events last: they tell what was done.
// Status is applied under the reconcile's field manager and carries only the fields it owns:
// the restarts controller's condition and the notices controller's sent entries are theirs.
import type { NoticeStatus, ServiceUser, ServiceUserStatus, TokenStatus } from '../api/serviceuser.ts';
import type { KubeObject } from '../controller/kube.ts';
import { stableJson } from '../controller/stable-json.ts';
import type { CertificateMaterial, CertificateRevocation } from './certificate.ts';
import type { CertificatePlan, CertificateStep } from './certificate-plan.ts';
import type { CertManagerInput, CertificateProblem } from './cert-manager.ts';
import type { Desired, DesiredSecret, EventRecord, PlacedCertificate } from './desired.ts';
import { renewalTimeOf } from './certificate.ts';
import { expiresAt } from '../api/expiry.ts';
import { noticesDue, pendingNotices, pendingOutbox } from './notices.ts';
import { credentialsDigest, restartsCondition } from './restarts.ts';
import { upToDate, type SeenSecret } from './secret-write.ts';

export type Placement = { placed?: PlacedCertificate; problem?: CertificateProblem | { reason: string; message: string } };

/** What the certificate part of a plan may do. */
export interface CertificateActions {
  revoke(owner: string, entries: CertificateRevocation[]): Promise<void>;
  setHolds(owner: string, serials: { serialNumber: string; notAfter: string }[]): Promise<void>;
  removeCertManager(su: ServiceUser): Promise<void>;
  placeFromCertManager(input: CertManagerInput): Promise<Placement>;
  issue(su: ServiceUser, window: { notBefore: number; notAfter: number }): Promise<Omit<PlacedCertificate, 'renewalTime' | 'issuedBy'>>;
  withPkcs12(material: CertificateMaterial, su: ServiceUser): Promise<CertificateMaterial>;
}

const ownerOf = (su: ServiceUser) => `${su.metadata.namespace}/${su.metadata.name}`;

async function step(actions: CertificateActions, su: ServiceUser, s: CertificateStep, placed: PlacedCertificate | undefined): Promise<void> {
  if (s.kind === 'revoke') return actions.revoke(ownerOf(su), s.entries);
  if (s.kind === 'removeCertManager') return actions.removeCertManager(su);
  const held = s.hold === 'placed' && placed ? [{ serialNumber: placed.serialNumber, notAfter: new Date(placed.notAfter).toISOString() }] : [];
  return actions.setHolds(ownerOf(su), held);
}

/** Carries out a certificate plan (not 'wait': the pass stopped before); what was placed, or why nothing was. */
export async function placeCertificate(actions: CertificateActions, su: ServiceUser, plan: CertificatePlan, ctx: { now: number; ourSecretRaw: Record<string, string> | undefined }): Promise<Placement> {
  for (const s of plan.before) await step(actions, su, s, undefined);
  const placement = await place(actions, su, plan.certificate, ctx);
  for (const s of plan.after) await step(actions, su, s, placement.placed);
  return placement;
}

async function place(actions: CertificateActions, su: ServiceUser, intent: CertificatePlan['certificate'], ctx: { now: number; ourSecretRaw: Record<string, string> | undefined }): Promise<Placement> {
  switch (intent.kind) {
    case 'wait':
    case 'none':
      return {};
    case 'refuse':
      return { problem: intent.problem };
    case 'placeFromCertManager':
      return actions.placeFromCertManager({ su, ourSecretRaw: ctx.ourSecretRaw, recorded: intent.recorded, now: ctx.now, endDate: expiresAt(su.spec.endDate) });
    case 'keep': {
      // trusted: signed by the CA for this identity, with its key — issued here to this user.
      const c = intent.certificate;
      const placed: PlacedCertificate = { material: await actions.withPkcs12(c.material, su), serialNumber: c.serialNumber, notBefore: c.notBefore, notAfter: c.notAfter, issuer: c.issuer, sha256: c.sha256, renewalTime: intent.renewalTime, issuedBy: 'BuiltInCA' };
      if (intent.renewalWaits) placed.renewalWaits = intent.renewalWaits;
      return { placed };
    }
    case 'issue': {
      const issued = await actions.issue(su, intent);
      const renewalTime = renewalTimeOf(issued.notAfter, su.spec.credentials.clientCertificate.renewBefore, expiresAt(su.spec.endDate));
      return { placed: { ...issued, material: await actions.withPkcs12(issued.material, su), renewalTime, issuedBy: 'BuiltInCA', issued: intent.reason } };
    }
  }
}

/** What the write part of a plan may do. */
export interface WriteActions {
  /** Makes the Secret what `want` says (secret-write.ts), `seen` as observed; `certificate`: the serial status will record. */
  writeSecret(su: ServiceUser, want: DesiredSecret, seen: SeenSecret | undefined, certificate: string | undefined): Promise<void>;
  /** The test fault crashAfterSecretWrite: exits the process; absent, nothing. */
  crashAfterSecretWrite?: () => void;
  applyStatus(status: ServiceUserStatus): Promise<KubeObject>;
  /** Replaces status.tokens whole (a merge patch): apply keeps entries another manager added. */
  replaceTokens(tokens: TokenStatus[]): Promise<void>;
  /** A pass that wrote nothing: the Secret view may let go of our last write (secret-view.ts). */
  settled(): void;
  /** Email notices are on: status keeps the outbox (notices.ts) the notices controller sends from. */
  notices: boolean;
}

export interface Written {
  /** The status as planned (with the credentials' digest and the pending notices). */
  status: ServiceUserStatus;
  events: EventRecord[];
}

/** Carries out the Secret and status part of a plan, in the order in the header. */
export async function carryOut(actions: WriteActions, su: ServiceUser, current: { status: unknown; secret: SeenSecret | undefined }, plan: Desired, now: number): Promise<Written> {
  let wrote = false;
  if (plan.secret && !upToDate(current.secret, plan.secret, su.metadata.uid!)) {
    await actions.writeSecret(su, plan.secret, current.secret, plan.status.certificate?.serialNumber);
    wrote = true;
    actions.crashAfterSecretWrite?.();
  }
  const status: ServiceUserStatus = { ...plan.status, ...(plan.secret ? { credentialsDigest: credentialsDigest(plan.secret.data) } : {}) };
  const notify = actions.notices && !!su.spec.notifications.email;
  const previousNotices = (current.status as { notices?: NoticeStatus[] } | undefined)?.notices;
  const notices = notify ? pendingOutbox(previousNotices, noticesDue(su.status, status, su.metadata.generation, now)) : [];
  if (notices.length) status.notices = notices;
  if (stableJson(ownFields(status)) !== stableJson(ownFields(current.status as ServiceUserStatus | undefined))) {
    const applied = await actions.applyStatus(status);
    // Apply keeps list entries another field manager added (kubectl patch --subresource=status):
    // a record the operator did not write is replaced, not left beside ours.
    const tokens = (applied.status as { tokens?: unknown } | undefined)?.tokens;
    if (stableJson(tokens ?? []) !== stableJson(status.tokens ?? [])) await actions.replaceTokens(status.tokens ?? []);
    wrote = true;
  }
  if (!wrote) actions.settled();
  return { status, events: plan.events };
}

/**
 * What of a status the reconcile's apply owns, to compare what it plans with what is there:
 * not the restarts controller's condition, not the notices controller's sent entries (map
 * lists: compared by key, whatever order the server merged them in).
 */
function ownFields(status: ServiceUserStatus | undefined): ServiceUserStatus {
  const { conditions, notices, ...rest } = status ?? {};
  const own = conditions?.filter((c) => c.type !== restartsCondition);
  const pending = pendingNotices(notices).sort((a, b) => a.key.localeCompare(b.key));
  return { ...rest, ...(own?.length ? { conditions: own } : {}), ...(pending.length ? { notices: pending } : {}) };
}
