// The ServiceUser reconcile: the edge between desired.ts and the API server. It reads the
// caches (and the Secret itself, uncached, because a stale Secret would look like a
// deleted or edited one), applies the Secret, then the status, both by server-side apply
// under one field manager, records events and returns when to look again.
import { apiVersion } from '../api/primitives.ts';
import { resources } from '../api/resources.ts';
import { serviceUser, type NoticeStatus, type ServiceUser } from '../api/serviceuser.ts';
import { setConditions, type Condition } from '../controller/conditions.ts';
import type { InformerSet } from '../controller/informer.ts';
import { isNotFound, resourcePath, type KubeClient, type KubeObject } from '../controller/kube.ts';
import type { Result } from '../controller/queue.ts';
import type { IssuedToken } from '../credentials/token.ts';
import type { EventRecorder } from '../observability/events.ts';
import type { Logger } from '../observability/logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import { resolve } from '../rolebinding/resolve.ts';
import { parseAll } from '../api/parse.ts';
import { role } from '../api/role.ts';
import { roleBinding } from '../api/rolebinding.ts';
import { stableJson } from '../controller/stable-json.ts';
import { withoutManagedFields } from '../controller/informer.ts';
import { byFriendlyName, bySubject, inNamespace } from '../api/indexes.ts';
import type { RevocationLedger } from '../authority/revocations.ts';
import type { Ca } from '../credentials/ca.ts';
import { decideCertificate, renewalTimeOf } from './certificate.ts';
import { annotations as ann, blocker, desired, friendlyNameOf, secretNameOf, type DesiredSecret, type ObservedSecret, type PlacedCertificate } from './desired.ts';
import { issueFromCa, observeCertificate, withPkcs12 } from './issuance.ts';
import { hadCertManagerCertificate, placeFromCertManager, removeCertManagerCertificate, type CertificateProblem } from './cert-manager.ts';
import { credentialKeys } from './secret.ts';
import { expiresAt, warnAt } from './expiry.ts';
import { markSent, noticesDue, withNotices } from './notices.ts';

export const finalizer = 'serviceusers.dev/revoke';

export interface ServiceUserDeps {
  client: KubeClient;
  serviceUsers: InformerSet;
  roleBindings: InformerSet;
  roles: InformerSet;
  events: EventRecorder;
  log: Logger;
  metrics: Metrics;
  fieldManager: string;
  now: () => number;
  issue: () => IssuedToken;
  /** The built-in CA and its revocation ledger. */
  authority: { ca: Ca; ledger: RevocationLedger };
  /** Sends pending notices to spec.email (notify.ts); absent: email notices are off. */
  deliverNotices?: (su: ServiceUser, pending: NoticeStatus[]) => Promise<{ sent: string[]; retryInMs?: number }>;
  /** Test fault: exit the process right after the Secret write, before status records it. */
  crashAfterSecretWrite?: boolean;
}

const decode = (data: Record<string, string> | undefined) =>
  Object.fromEntries(Object.entries(data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]));
const encode = (data: Record<string, string | Buffer>) =>
  Object.fromEntries(Object.entries(data).map(([k, v]) => [k, (typeof v === 'string' ? Buffer.from(v, 'utf8') : v).toString('base64')]));

function observeSecret(secret: KubeObject | undefined): ObservedSecret | undefined {
  if (!secret) return undefined;
  return {
    data: decode(secret.data as Record<string, string> | undefined),
    raw: (secret.data as Record<string, string> | undefined) ?? {},
    labels: secret.metadata.labels ?? {},
    annotations: secret.metadata.annotations ?? {},
    ownerUids: (secret.metadata.ownerReferences ?? []).map((o) => o.uid),
  };
}

/** True when the observed Secret already is what we would apply. */
function upToDate(observed: ObservedSecret | undefined, want: DesiredSecret, uid: string): boolean {
  if (!observed || !observed.ownerUids.includes(uid)) return false;
  if (stableJson(observed.raw ?? {}) !== stableJson(encode(want.data))) return false;
  for (const [k, v] of Object.entries(want.labels)) if (observed.labels[k] !== v) return false;
  for (const [k, v] of Object.entries(want.annotations)) if (observed.annotations[k] !== v) return false;
  return !Object.values(ann).some((k) => k in observed.annotations && !(k in want.annotations));
}

export function serviceUserReconciler(deps: ServiceUserDeps) {
  const { client, fieldManager } = deps;
  const suPath = (ns: string, name: string, sub?: string) => resourcePath(resources.serviceUsers, ns, name, sub);
  const secretPath = (ns: string, name: string) => resourcePath(resources.secrets, ns, name);

  async function readSecret(ns: string, name: string): Promise<KubeObject | undefined> {
    try {
      return await client.get(secretPath(ns, name));
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  async function applyStatus(su: KubeObject, status: unknown): Promise<KubeObject> {
    return client.apply(
      suPath(su.metadata.namespace!, su.metadata.name, 'status'),
      { apiVersion, kind: 'ServiceUser', metadata: { name: su.metadata.name, namespace: su.metadata.namespace }, status },
      fieldManager,
    );
  }

  async function setFinalizer(su: KubeObject, present: boolean): Promise<KubeObject> {
    // Our own apply configuration holds only the finalizer: applying without it releases it.
    return client.apply(
      suPath(su.metadata.namespace!, su.metadata.name),
      { apiVersion, kind: 'ServiceUser', metadata: { name: su.metadata.name, namespace: su.metadata.namespace, ...(present ? { finalizers: [finalizer] } : {}) } },
      fieldManager,
    );
  }

  async function applySecret(su: ServiceUser, want: DesiredSecret): Promise<void> {
    const ns = su.metadata.namespace!;
    const applied = await client.apply(
      secretPath(ns, want.name),
      {
        apiVersion: 'v1',
        kind: 'Secret',
        type: 'Opaque',
        metadata: {
          name: want.name,
          namespace: ns,
          labels: want.labels,
          annotations: want.annotations,
          ownerReferences: [{ apiVersion, kind: 'ServiceUser', name: su.metadata.name, uid: su.metadata.uid!, controller: true, blockOwnerDeletion: true }],
        },
        data: encode(want.data),
      },
      fieldManager,
    );
    // A credential key someone else took ownership of (kubectl edit) survives our apply
    // without it; remove it explicitly.
    const left = credentialKeys.filter((k) => !(k in want.data) && k in ((applied.data as object | undefined) ?? {}));
    if (left.length) await client.mergePatch(secretPath(ns, want.name), { data: Object.fromEntries(left.map((k) => [k, null])) });
  }

  async function finalize(raw: KubeObject, su: ServiceUser | undefined): Promise<void> {
    const ns = raw.metadata.namespace!;
    const log = deps.log.child({ serviceUser: `${ns}/${raw.metadata.name}` });
    if (su) {
      const now = deps.now();
      const tokens = (su.status?.tokens ?? []).map(({ validUntil: _, ...t }) =>
        t.state === 'Revoked' ? t : { ...t, state: 'Revoked' as const, revokedAt: new Date(now).toISOString(), reason: 'Deleted' },
      );
      const live = (su.status?.tokens ?? []).filter((t) => t.state !== 'Revoked');
      await applyStatus(raw, { ...su.status, tokens });
      const owner = `${ns}/${raw.metadata.name}`;
      const cert = su.status?.certificate;
      if (cert) await deps.authority.ledger.revoke(owner, [{ serialNumber: cert.serialNumber, reason: 'cessationOfOperation', notAfter: cert.notAfter }]);
      await deps.authority.ledger.setHolds(owner, []);
      const secret = await readSecret(ns, secretNameOf(su));
      if (secret && (secret.metadata.ownerReferences ?? []).some((o) => o.uid === raw.metadata.uid)) {
        const present = credentialKeys.filter((k) => k in ((secret.data as object | undefined) ?? {}));
        if (present.length) await client.mergePatch(secretPath(ns, secret.metadata.name), { data: Object.fromEntries(present.map((k) => [k, null])) });
      }
      if (live.length) deps.metrics.tokensRevoked.inc({ reason: 'Deleted' }, live.length);
      if (live.length) await deps.events.record(raw, { type: 'Normal', reason: 'TokenRevoked', message: `ServiceUser deleted: tokens ${live.map((t) => t.id).join(', ')} revoked` });
    }
    await setFinalizer(raw, false);
    deps.metrics.expiration.remove({ namespace: ns, name: raw.metadata.name });
    deps.metrics.expiringSoon.remove({ namespace: ns, name: raw.metadata.name });
    setInfo(`${ns}/${raw.metadata.name}`, undefined);
    log.info('credentials revoked; finalizer removed');
  }

  // Our own last write per key, with the resourceVersion it was made over. Until the cache
  // moves past that version it still shows the object from before our write; reading the
  // write instead keeps a reconcile that follows at once from redoing (and re-announcing) it.
  const written = new Map<string, { baseRv: string | undefined; object: KubeObject }>();
  // The serviceuser_info series per key, to drop the old one when phase or name changes.
  const infoLabels = new Map<string, { namespace: string; name: string; phase: string; friendly_name: string }>();
  const setInfo = (key: string, labels: { namespace: string; name: string; phase: string; friendly_name: string } | undefined) => {
    const old = infoLabels.get(key);
    if (old) deps.metrics.info.remove(old);
    if (labels) {
      deps.metrics.info.set(labels, 1);
      infoLabels.set(key, labels);
    } else {
      infoLabels.delete(key);
    }
  };

  /**
   * The certificate to hold: the Secret's own when the CA issued it and it is not due, else a
   * new one. Revocations and holds reach the CRL before the Secret changes.
   */
  async function placeCertificate(su: ServiceUser, secret: ObservedSecret | undefined, now: number): Promise<{ placed?: PlacedCertificate; problem?: CertificateProblem }> {
    const { ca, ledger } = deps.authority;
    const owner = `${su.metadata.namespace}/${su.metadata.name}`;
    const end = expiresAt(su.spec.endDate);
    const spec = su.spec.credentials.clientCertificate;
    if (spec.enabled && spec.issuerRef && !(end !== undefined && now >= end)) return placeFromCertManager(deps, su, secret?.raw, now, end);
    // Back from cert-manager to the built-in CA (or certificates turned off): its Certificate
    // would go on issuing, even one still waiting for an issuer that appears later.
    if ((!spec.issuerRef || !spec.enabled) && hadCertManagerCertificate(su, ca.certificate.subject)) await removeCertManagerCertificate(client, su);
    const observed = secret?.raw ? await observeCertificate(secret.raw, ca, su) : undefined;
    const { decision, revoke } = decideCertificate(su, observed, su.status?.certificate, now, end);
    await ledger.revoke(owner, revoke);
    let placed: PlacedCertificate | undefined;
    if (decision.kind === 'keep') {
      const c = decision.certificate;
      placed = { material: await withPkcs12(c.material, su), serialNumber: c.serialNumber, notBefore: c.notBefore, notAfter: c.notAfter, issuer: c.issuer, renewalTime: decision.renewalTime };
    } else if (decision.kind === 'issue') {
      const issued = await issueFromCa(ca, su, decision);
      placed = { ...issued, material: await withPkcs12(issued.material, su), renewalTime: renewalTimeOf(issued.notAfter, su.spec.credentials.clientCertificate.renewBefore, end), issued: decision.reason };
    }
    await ledger.setHolds(owner, su.spec.disabled && placed ? [{ serialNumber: placed.serialNumber, notAfter: new Date(placed.notAfter).toISOString() }] : []);
    return placed ? { placed } : {};
  }

  return async function reconcile(key: string): Promise<Result | void> {
    let raw = deps.serviceUsers.get(key);
    const mine = written.get(key);
    if (raw && mine && raw.metadata.resourceVersion === mine.baseRv) raw = mine.object;
    else written.delete(key);
    if (!raw) return;
    const baseRv = raw.metadata.resourceVersion;
    const remember = (object: KubeObject) => written.set(key, { baseRv, object: withoutManagedFields(object) });
    const ns = raw.metadata.namespace!;
    const log = deps.log.child({ serviceUser: key });
    const parsed = serviceUser.safeParse(raw);

    if (raw.metadata.deletionTimestamp) {
      if (raw.metadata.finalizers?.includes(finalizer)) await finalize(raw, parsed.success ? parsed.data : undefined);
      return;
    }
    if (!parsed.success) {
      // Admission should have refused it (an outdated CRD?); say what is wrong and wait.
      const message = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
      const previous = (raw.status as { conditions?: Condition[] } | undefined)?.conditions;
      if (!previous?.some((c) => c.type === 'Stalled' && c.status === 'True' && c.message === message)) {
        await deps.events.record(raw, { type: 'Warning', reason: 'InvalidSpec', message });
      }
      await applyStatus(raw, {
        ...(raw.status as object | undefined),
        phase: 'Failed',
        observedGeneration: raw.metadata.generation,
        conditions: setConditions(previous, [
          { type: 'Ready', status: 'False', reason: 'InvalidSpec', message },
          { type: 'Reconciling', status: 'False', reason: 'InvalidSpec', message: 'waiting for the spec to change' },
          { type: 'Stalled', status: 'True', reason: 'InvalidSpec', message },
        ], raw.metadata.generation, deps.now()),
      });
      log.warn({ problems: message }, 'invalid ServiceUser');
      return;
    }
    const su = parsed.data;
    if (!raw.metadata.finalizers?.includes(finalizer)) remember(await setFinalizer(raw, true));

    // Only what bears on this user: those sharing its friendly name, the bindings naming it
    // and their roles (index lookups: a reconcile costs the same at 10 or 10,000 users).
    const users = parseAll(deps.serviceUsers.byIndex(byFriendlyName, inNamespace(ns, friendlyNameOf(su))), serviceUser);
    const bindings = parseAll(deps.roleBindings.byIndex(bySubject, inNamespace(ns, su.metadata.name)), roleBinding);
    const roles = parseAll(bindings.map((b) => deps.roles.get(b.spec.roleRef.name)), role);
    const permissions = resolve([su], bindings, roles).permissionsOf(ns, su.metadata.name);
    const secret = observeSecret(await readSecret(ns, secretNameOf(su)));
    const now = deps.now();
    const { placed: certificate, problem: certificateProblem } = blocker(su, { peers: users, secret }) ? {} : await placeCertificate(su, secret, now);
    const plan = desired(su, { now, secret, peers: users, permissions, certificate, certificateProblem }, () => {
      deps.metrics.tokensIssued.inc();
      return deps.issue();
    });

    if (plan.secret && !upToDate(secret, plan.secret, su.metadata.uid!)) {
      await applySecret(su, plan.secret);
      log.info({ secret: plan.secret.name, tokenId: plan.secret.data['token-id'], certificate: plan.status.certificate?.serialNumber }, 'Secret applied');
      if (deps.crashAfterSecretWrite) {
        log.fatal('test fault: exiting between the Secret write and the status write');
        process.exit(137);
      }
    }
    // Notices owed to spec.email go into status with it (the outbox), then out by SMTP.
    const previousNotices = (raw.status as { notices?: NoticeStatus[] } | undefined)?.notices;
    const notify = deps.deliverNotices && su.spec.notifications.email;
    const notices = notify ? withNotices(previousNotices, noticesDue(su.status, plan.status, su.metadata.generation, now)) : previousNotices?.filter((n) => n.sentAt);
    if (notices?.length) plan.status.notices = notices;
    if (stableJson(plan.status) !== stableJson(raw.status ?? {})) remember(await applyStatus(raw, plan.status));
    let noticeRetryMs: number | undefined;
    const pending = notify ? (plan.status.notices ?? []).filter((n) => !n.sentAt) : [];
    if (pending.length) {
      const { sent, retryInMs } = await deps.deliverNotices!(su, pending);
      if (sent.length) remember(await applyStatus(raw, { ...plan.status, notices: markSent(plan.status.notices!, sent, deps.now()) }));
      noticeRetryMs = retryInMs;
    }
    for (const e of plan.events) {
      if (e.reason === 'TokenRevoked') deps.metrics.tokensRevoked.inc({ reason: e.message.split(': ').at(-1) ?? 'unknown' });
      log.info({ reason: e.reason, type: e.type }, e.message);
      // Best effort and not on the reconcile's path: the recorder logs its own failures.
      void deps.events.record(raw, e);
    }
    setInfo(key, { namespace: ns, name: su.metadata.name, phase: plan.status.phase ?? 'Pending', friendly_name: plan.status.friendlyName ?? su.metadata.name });
    const end = expiresAt(su.spec.endDate);
    if (end !== undefined) {
      deps.metrics.expiration.set({ namespace: ns, name: su.metadata.name }, end / 1000);
      const warn = warnAt(end, su.spec.expiryWarning)!;
      deps.metrics.expiringSoon.set({ namespace: ns, name: su.metadata.name }, now >= warn && now < end ? 1 : 0);
    } else {
      deps.metrics.expiration.remove({ namespace: ns, name: su.metadata.name });
      deps.metrics.expiringSoon.remove({ namespace: ns, name: su.metadata.name });
    }
    const requeueAfterMs = Math.min(plan.requeueAfterMs ?? Infinity, noticeRetryMs ?? Infinity);
    return requeueAfterMs === Infinity ? {} : { requeueAfterMs };
  };
}
