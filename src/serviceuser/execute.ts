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
//   6. the restart targets' condition is judged before the status write, their annotations
//      applied after it (new pods start with credentials verification already honours);
//   7. notices owed go into status with it (the outbox), then out by SMTP, then marked sent;
//   8. events last: they tell what was done.
import type { NoticeStatus, ServiceUser, ServiceUserStatus, TokenStatus } from '../api/serviceuser.ts';
import type { KubeObject } from '../controller/kube.ts';
import { stableJson } from '../controller/stable-json.ts';
import type { CertificateMaterial, CertificateRevocation } from './certificate.ts';
import type { CertificatePlan, CertificateStep } from './certificate-plan.ts';
import type { CertManagerInput, CertificateProblem } from './cert-manager.ts';
import type { Desired, DesiredSecret, EventRecord, PlacedCertificate } from './desired.ts';
import { renewalTimeOf } from './certificate.ts';
import { expiresAt } from '../api/expiry.ts';
import { markSent, noticesDue, withNotices } from './notices.ts';
import { upToDate, type SeenSecret } from './secret-write.ts';
import type { Condition } from '../controller/conditions.ts';

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

/** A restart plan (restarts.ts): its condition now, its annotations after the status write. */
export interface Restarts {
  condition: Condition;
  events: EventRecord[];
  apply: () => Promise<EventRecord[]>;
}

/** What the write part of a plan may do. */
export interface WriteActions {
  /** Makes the Secret what `want` says (secret-write.ts), `seen` as observed; `certificate`: the serial status will record. */
  writeSecret(su: ServiceUser, want: DesiredSecret, seen: SeenSecret | undefined, certificate: string | undefined): Promise<void>;
  /** The test fault crashAfterSecretWrite: exits the process; absent, nothing. */
  crashAfterSecretWrite?: () => void;
  planRestarts(su: ServiceUser, secret: DesiredSecret, now: number): Promise<Restarts | undefined>;
  applyStatus(status: ServiceUserStatus): Promise<KubeObject>;
  /** Replaces status.tokens whole (a merge patch): apply keeps entries another manager added. */
  replaceTokens(tokens: TokenStatus[]): Promise<void>;
  /** A pass that wrote nothing: the Secret view may let go of our last write (secret-view.ts). */
  settled(): void;
  deliverNotices?: ((su: ServiceUser, pending: NoticeStatus[]) => Promise<{ sent: string[]; retryInMs?: number }>) | undefined;
  now(): number;
}

export interface Written {
  /** The status as planned (with restarts' condition and notices). */
  status: ServiceUserStatus;
  events: EventRecord[];
  noticeRetryMs: number | undefined;
}

/** Carries out the Secret and status part of a plan, in the order in the header. */
export async function carryOut(actions: WriteActions, su: ServiceUser, current: { status: unknown; secret: SeenSecret | undefined }, plan: Desired, now: number): Promise<Written> {
  let wrote = false;
  if (plan.secret && !upToDate(current.secret, plan.secret, su.metadata.uid!)) {
    await actions.writeSecret(su, plan.secret, current.secret, plan.status.certificate?.serialNumber);
    wrote = true;
    actions.crashAfterSecretWrite?.();
  }
  const restarts = plan.secret ? await actions.planRestarts(su, plan.secret, now) : undefined;
  const status: ServiceUserStatus = { ...plan.status, ...(restarts ? { conditions: [...(plan.status.conditions ?? []), restarts.condition] } : {}) };
  const previousNotices = (current.status as { notices?: NoticeStatus[] } | undefined)?.notices;
  const notify = !!actions.deliverNotices && !!su.spec.notifications.email;
  const notices = notify ? withNotices(previousNotices, noticesDue(su.status, status, su.metadata.generation, now)) : previousNotices?.filter((n) => n.sentAt);
  if (notices?.length) status.notices = notices;
  if (stableJson(status) !== stableJson(current.status ?? {})) {
    const applied = await actions.applyStatus(status);
    // Apply keeps list entries another field manager added (kubectl patch --subresource=status):
    // a record the operator did not write is replaced, not left beside ours.
    const tokens = (applied.status as { tokens?: unknown } | undefined)?.tokens;
    if (stableJson(tokens ?? []) !== stableJson(status.tokens ?? [])) await actions.replaceTokens(status.tokens ?? []);
    wrote = true;
  }
  if (!wrote) actions.settled();
  const events = [...plan.events, ...(restarts ? [...restarts.events, ...(await restarts.apply())] : [])];
  const noticeRetryMs = notify ? await sendNotices(actions, su, status) : undefined;
  return { status, events, noticeRetryMs };
}

/** Sends what the outbox holds unsent, then records what went; when to try again. */
async function sendNotices(actions: WriteActions, su: ServiceUser, status: ServiceUserStatus): Promise<number | undefined> {
  const pending = (status.notices ?? []).filter((n) => !n.sentAt);
  if (!pending.length || !actions.deliverNotices) return undefined;
  const { sent, retryInMs } = await actions.deliverNotices(su, pending);
  if (sent.length) await actions.applyStatus({ ...status, notices: markSent(status.notices!, sent, actions.now()) });
  return retryInMs;
}
