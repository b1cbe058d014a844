// The ServiceUser reconcile: the edge between desired.ts and the API server. It reads the
// caches (and the Secret itself, uncached, because a stale Secret would look like a
// deleted or edited one — unless it is a version whose data it already holds: our own last
// write, the restart's first list, see currentSecret), writes the Secret (secret-write.ts),
// then the status by server-side apply under one field manager, records events and
// returns when to look again.
import type { z } from 'zod';
import { apiVersion } from '../api/primitives.ts';
import { resources } from '../api/resources.ts';
import { certificateStatus, tokenStatus, type NoticeStatus, type ServiceUser, type TokenStatus } from '../api/serviceuser.ts';
import type { TemplateKeyPolicy } from '../api/secret-template.ts';
import { setConditions, type Condition } from '../controller/conditions.ts';
import type { FirstList } from '../controller/first-list.ts';
import type { CacheReader, InformerSet } from '../controller/informer.ts';
import { isNotFound, resourcePath, type KubeClient, type KubeObject } from '../controller/kube.ts';
import type { Result } from '../controller/queue.ts';
import type { IssuedToken } from '../credentials/token.ts';
import type { EventRecorder } from '../observability/events.ts';
import type { Logger } from '../observability/logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import { resolve } from '../rolebinding/resolve.ts';
import { judgeAccounts } from '../account/admission.ts';
import { admitsFromCaches } from '../account/reconcile.ts';
import { objectOf, typedServiceUser, validValues, type AccountEntry, type NamespaceEntry, type RoleBindingEntry, type RoleEntry, type SecretEntry, type ServiceUserEntry } from '../api/stores.ts';
import { stableJson } from '../controller/stable-json.ts';
import { objectKey } from '../controller/informer.ts';
import { OwnWrites } from '../controller/expectations.ts';
import { byFriendlyName, bySubject, inNamespace } from '../api/indexes.ts';
import type { RevocationLedger } from '../authority/revocations.ts';
import type { Ca } from '../credentials/ca.ts';
import { builtInRecorded, decideCertificate, defaultCrlOwnerBudget, renewalPace, renewalTimeOf } from './certificate.ts';
import { blocker, desired, friendlyNameOf, labels, secretNameOf, type ObservedSecret, type PlacedCertificate } from './desired.ts';
import { builtInCertificateIn, issueFromCa, observeCertificate, withPkcs12 } from './issuance.ts';
import { hadCertManagerCertificate, placeFromCertManager, removeCertManagerCertificate, type CertificateProblem } from './cert-manager.ts';
import { credentialKeys } from './secret.ts';
import { digestOf, observeSecret, secretWriter, SecretTaken, upToDate, type SeenSecret } from './secret-write.ts';
import { expiresAt, isExpired, warnAt } from './expiry.ts';
import { planRestarts } from './restarts.ts';
import { sealHonoured, signToken, tokenHonoured, type LedgerTrust } from './ledger-macs.ts';
import { markSent, noticesDue, withNotices } from './notices.ts';
import type { EndDateRevocations } from './end-date-revocations.ts';

export const finalizer = 'serviceusers.dev/revoke';

export interface ServiceUserDeps {
  client: KubeClient;
  serviceUsers: CacheReader<ServiceUserEntry>;
  roleBindings: CacheReader<RoleBindingEntry>;
  roles: CacheReader<RoleEntry>;
  /** Accounts and the namespaces' labels: which accounts admit the ServiceUser. */
  accounts: CacheReader<AccountEntry>;
  namespaces: CacheReader<NamespaceEntry>;
  /** Our Secrets, metadata only: whether one changed since we wrote it. */
  secrets?: InformerSet<SecretEntry>;
  /** Their data as the Secret informer's first list carried it, until a restart's first passes are done (first-list.ts). */
  listedSecrets?: FirstList;
  events: EventRecorder;
  log: Logger;
  metrics: Metrics;
  fieldManager: string;
  now: () => number;
  issue: () => IssuedToken;
  /** The built-in CA and its revocation ledger. */
  authority: { ca: Ca; ledger: RevocationLedger };
  /** Whether they are loaded yet, and if not why (operator.ts); absent: always loaded. */
  authorityState?: () => { ready: true } | { ready: false; reason: string };
  /** The ledger key (loaded before the first reconcile; replaced when it rotates). */
  trust: LedgerTrust;
  /** Which secretTemplate keys reach the Secret; absent: the default (api/secret-template.ts). */
  templateKeys?: TemplateKeyPolicy;
  /** Sends pending notices to spec.email (notify.ts); absent: email notices are off. */
  deliverNotices?: (su: ServiceUser, pending: NoticeStatus[]) => Promise<{ sent: string[]; retryInMs?: number }>;
  /** Revokes the built-in CA's certificates at their user's end date, ahead of the reconcile (end-date-revocations.ts). */
  endDates?: EndDateRevocations;
  /** Serials one ServiceUser may have on the CRL before its renewal requests slow to one an hour (renewalPace); absent: 100. */
  crlOwnerBudget?: number;
  /** Test fault: exit the process right after the Secret write, before status records it. */
  crashAfterSecretWrite?: boolean;
}

/** What status recorded, field by field: a part that does not parse is read as absent, never as a reason to skip the rest. */
function recordedStatus(status: unknown): { tokens: TokenStatus[]; certificate: z.output<typeof certificateStatus> | undefined; secretName: string | undefined } {
  const s = (status ?? {}) as Record<string, unknown>;
  const tokens = Array.isArray(s.tokens) ? s.tokens.flatMap((t) => { const p = tokenStatus.safeParse(t); return p.success ? [p.data] : []; }) : [];
  const certificate = certificateStatus.safeParse(s.certificate);
  return { tokens, certificate: certificate.success ? certificate.data : undefined, secretName: typeof s.secretName === 'string' ? s.secretName : undefined };
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

  // What our writes to each ServiceUser returned, until the cache shows them: a reconcile
  // that follows at once (woken by our own Secret write) must not decide on the object from
  // before them, or it redoes the work and tells `kubectl describe` a crash happened.
  const own = new OwnWrites<ServiceUserEntry>();
  const secrets = secretWriter(client, fieldManager);
  // The Secret as our last apply left it: the reconciles our own writes wake use it instead
  // of reading it back. Any other version of it the Secret watch delivers (a change by
  // someone else, a deletion) drops it before that event's reconcile runs, which then reads
  // the Secret live; a reconcile that changes nothing once the watch has shown our version
  // drops it too, so it is held only while the user is being worked on.
  const ownSecrets = new Map<string, { secret: KubeObject; seen: boolean }>();
  // What our last write of each user's Secret left, by resourceVersion and digest of its data
  // (~150 bytes a user): at the end date, a Secret the metadata cache shows at that version is
  // known without the live read — thousands of end dates in a minute are a request less each.
  const written = new Map<string, { name: string; resourceVersion: string; digest: string }>();
  deps.secrets?.onChange((type, s) => {
    const owner = s.metadata.labels?.[labels.name];
    const key = `${s.metadata.namespace}/${owner}`;
    if (type === 'DELETED' && owner && written.get(key)?.name === s.metadata.name) written.delete(key);
    const mine = owner && ownSecrets.get(key);
    if (!mine || mine.secret.metadata.name !== s.metadata.name) return;
    if (type !== 'DELETED' && s.metadata.resourceVersion === mine.secret.metadata.resourceVersion) mine.seen = true;
    else ownSecrets.delete(key);
  });
  // Users whose Secret a POST found there when the cache had none: read live at their next pass.
  // Kept until our write succeeds (or the user goes): a name someone else holds stays read live.
  const readLive = new Set<string>();
  let secretsSynced = false;
  void deps.secrets?.synced.then(() => (secretsSynced = true));
  async function currentSecret(key: string, ns: string, name: string, expiring: boolean, heldByOthers: boolean): Promise<SeenSecret | undefined> {
    const mine = ownSecrets.get(key);
    if (mine?.secret.metadata.name === name) {
      if (deps.secrets?.get(`${ns}/${name}`)?.metadata.resourceVersion === mine.secret.metadata.resourceVersion) mine.seen = true;
      return observeSecret(mine.secret);
    }
    ownSecrets.delete(key);
    // A new user's Secret is not there: the cache (every Secret carrying our name label) has
    // none, and the POST that creates it fails if one appeared meanwhile — then it is read live.
    const cached = deps.secrets?.get(`${ns}/${name}`);
    if (secretsSynced && !heldByOthers && !readLive.has(key) && !cached) return undefined;
    // After a restart: the data the first list carried, at the version the cache still shows.
    const listed = cached && deps.listedSecrets?.get(`${ns}/${name}`, cached.metadata.resourceVersion);
    if (listed) return observeSecret({ ...cached, data: listed });
    return (expiring && knownSecret(key, ns, name)) || observeSecret(await readSecret(ns, name));
  }
  /**
   * An expired user's Secret without reading it: the metadata cache shows it at the version our
   * last write left. Its data is then known by digest only, which is all an expiry needs — it
   * wipes whatever is there, revokes what status recorded (which our write's status records:
   * ownSecrets holds a Secret until status does), and skips the write if the wipe is done.
   */
  function knownSecret(key: string, ns: string, name: string): SeenSecret | undefined {
    const last = written.get(key);
    const cached = deps.secrets?.get(`${ns}/${name}`);
    if (!last || last.name !== name || !cached || cached.metadata.resourceVersion !== last.resourceVersion) return undefined;
    return observeSecret({ ...cached, data: {} }, last.digest);
  }
  const remember = (su: KubeObject, written: KubeObject) => {
    own.wrote(objectKey(su), typedServiceUser(written), su.metadata.resourceVersion);
    return written;
  };

  async function applyStatus(su: KubeObject, status: unknown): Promise<KubeObject> {
    return remember(su, await client.apply(
      suPath(su.metadata.namespace!, su.metadata.name, 'status'),
      { apiVersion, kind: 'ServiceUser', metadata: { name: su.metadata.name, namespace: su.metadata.namespace }, status },
      fieldManager,
    ));
  }

  async function setFinalizer(su: KubeObject, present: boolean): Promise<KubeObject> {
    // Our own apply configuration holds only the finalizer: applying without it releases it.
    return remember(su, await client.apply(
      suPath(su.metadata.namespace!, su.metadata.name),
      { apiVersion, kind: 'ServiceUser', metadata: { name: su.metadata.name, namespace: su.metadata.namespace, ...(present ? { finalizers: [finalizer] } : {}) } },
      fieldManager,
    ));
  }

  /**
   * Revokes and wipes before the ServiceUser goes. What status recorded is enough, so a spec
   * this version cannot parse (CRD and operator versions apart) still revokes its tokens and
   * certificate and wipes the Secrets it owns.
   */
  async function finalize(raw: KubeObject, su: ServiceUser | undefined): Promise<void> {
    const ns = raw.metadata.namespace!;
    const log = deps.log.child({ serviceUser: `${ns}/${raw.metadata.name}` });
    const { ca, ledger } = deps.authority;
    const status = recordedStatus(raw.status);
    // status.certificate is honoured only under a valid seal: a serial claimed by a status
    // writer (another user's) must not be revoked on this user's behalf.
    if (!sealHonoured(deps.trust, raw.metadata.uid, (raw.status ?? {}) as Parameters<typeof sealHonoured>[2])) status.certificate = undefined;
    const now = deps.now();
    const uid = raw.metadata.uid ?? '';
    const ring = deps.trust.ring!;
    const honoured = status.tokens.filter((t) => tokenHonoured(deps.trust, uid, t));
    const tokens = honoured.map(({ validUntil: _, ...t }) => signToken(ring, uid, t.state === 'Revoked' ? t : { ...t, state: 'Revoked' as const, revokedAt: new Date(now).toISOString(), reason: 'Deleted' }));
    const live = honoured.filter((t) => t.state !== 'Revoked');
    await applyStatus(raw, { ...(raw.status as object | undefined), tokens });
    const owner = `${ns}/${raw.metadata.name}`;
    deps.endDates?.forget(owner);
    const secrets = [];
    for (const name of new Set([su ? secretNameOf(su) : undefined, status.secretName].filter((n): n is string => !!n))) {
      const secret = await readSecret(ns, name);
      if (secret && (secret.metadata.ownerReferences ?? []).some((o) => o.uid === raw.metadata.uid)) secrets.push(secret);
    }
    // Only what the built-in CA issued to this user: status's record of it (issuedBy, sealed),
    // and one a crash left unrecorded in the Secret (signed by the CA for this identity).
    const recorded = builtInRecorded(status.certificate, undefined);
    const revoke = recorded ? [{ ...recorded, reason: 'cessationOfOperation' as const }] : [];
    for (const secret of secrets) {
      const held = await builtInCertificateIn((secret.data as Record<string, string> | undefined) ?? {}, ca, `serviceuser:${ns}:${raw.metadata.name}`);
      if (held && !revoke.some((r) => r.serialNumber === held.serialNumber)) revoke.push({ ...held, reason: 'cessationOfOperation' });
    }
    await ledger.revoke(owner, revoke);
    await ledger.setHolds(owner, []);
    if (su?.spec.credentials.clientCertificate.issuerRef || hadCertManagerCertificate({ status: raw.status } as ServiceUser, ca.certificate.subject)) {
      await removeCertManagerCertificate(client, raw);
    }
    for (const secret of secrets) {
      const present = credentialKeys.filter((k) => k in ((secret.data as object | undefined) ?? {}));
      if (present.length) await client.mergePatch(secretPath(ns, secret.metadata.name), { metadata: { uid: secret.metadata.uid }, data: Object.fromEntries(present.map((k) => [k, null])) });
    }
    if (live.length) deps.metrics.tokensRevoked.inc({ reason: 'Deleted' }, live.length);
    if (live.length) await deps.events.record(raw, { type: 'Normal', reason: 'TokenRevoked', message: `ServiceUser deleted: tokens ${live.map((t) => t.id).join(', ')} revoked` });
    await setFinalizer(raw, false);
    deps.metrics.expiration.remove({ namespace: ns, name: raw.metadata.name });
    deps.metrics.expiryWarning.remove({ namespace: ns, name: raw.metadata.name });
    deps.metrics.expiringSoon.remove({ namespace: ns, name: raw.metadata.name });
    setInfo(`${ns}/${raw.metadata.name}`, undefined);
    log.info('credentials revoked; finalizer removed');
  }

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

  /** status.certificate when the operator sealed it; a serial anyone else wrote there is not this user's to revoke. */
  const sealedCertificate = (su: ServiceUser) => (su.status && sealHonoured(deps.trust, su.metadata.uid, su.status) ? su.status.certificate : undefined);

  /**
   * The certificate to hold: the Secret's own when the CA issued it, it is not revoked and
   * not due, else a new one. Revocations and holds reach the CRL before the Secret changes.
   */
  async function placeCertificate(su: ServiceUser, secret: ObservedSecret | undefined, now: number): Promise<{ placed?: PlacedCertificate; problem?: CertificateProblem }> {
    const { ca, ledger } = deps.authority;
    const owner = `${su.metadata.namespace}/${su.metadata.name}`;
    const end = expiresAt(su.spec.endDate);
    const spec = su.spec.credentials.clientCertificate;
    const expired = end !== undefined && now >= end;
    const builtIn = ca.certificate.subject;
    if (spec.enabled && spec.issuerRef && !expired) {
      // From the built-in CA to cert-manager: what the built-in CA issued to this user is
      // superseded (a revocation replaces any hold), whether status recorded it or only the
      // Secret holds it. Nothing cert-manager's issuers issued ever goes on this CRL.
      const sealed = sealedCertificate(su);
      const inSecret = secret?.raw?.['tls.crt'] ? await observeCertificate(secret.raw, ca, su) : undefined;
      const recorded = builtInRecorded(sealed, inSecret);
      const revoke = [
        ...(recorded ? [{ ...recorded, reason: 'superseded' as const }] : []),
        ...(inSecret?.trusted && inSecret.serialNumber !== recorded?.serialNumber ? [{ serialNumber: inSecret.serialNumber, reason: 'superseded' as const, notAfter: new Date(inSecret.notAfter).toISOString() }] : []),
      ];
      if (revoke.length) {
        await ledger.revoke(owner, revoke);
        await ledger.setHolds(owner, []);
      }
      return placeFromCertManager(deps, { su, ourSecretRaw: secret?.raw, recorded: sealed, now, endDate: end });
    }
    // Back from cert-manager to the built-in CA, certificates turned off, or expired: its
    // Certificate would go on issuing (even one still waiting for an issuer that appears
    // later), into a Secret nobody wipes.
    // An expired (or certificate-disabled) user that still names an issuer is checked at every
    // pass — they are rare, and cert-manager may have finished a write after the last wipe.
    if (hadCertManagerCertificate(su, builtIn) || spec.issuerRef) await removeCertManagerCertificate(client, su);
    let observed = secret?.raw ? await observeCertificate(secret.raw, ca, su) : undefined;
    // A certificate the CA issued that the ledger lists as revoked is never kept or recorded
    // again: a Secret restored from a backup, an old Secret put back, or the one status records
    // revoked at an end date that has since moved (end-date-revocations.ts acts on the cache).
    if (observed?.trusted && (await ledger.isRevoked(observed.serialNumber))) {
      observed = { ...observed, revoked: true };
    }
    // Only serials the built-in CA issued to this user go on its CRL: a cert-manager
    // certificate status still records is the issuer's, whatever issuer name it carries.
    const recorded = builtInRecorded(sealedCertificate(su), observed);
    const pace = renewalPace(ledger.listedFor(owner), deps.crlOwnerBudget ?? defaultCrlOwnerBudget);
    const { decision, revoke } = decideCertificate(su, observed, recorded, now, end, pace);
    await ledger.revoke(owner, revoke);
    let placed: PlacedCertificate | undefined;
    if (decision.kind === 'keep') {
      const c = decision.certificate;
      // trusted: signed by the CA for this identity, with its key — issued here to this user.
      placed = { material: await withPkcs12(c.material, su), serialNumber: c.serialNumber, notBefore: c.notBefore, notAfter: c.notAfter, issuer: c.issuer, sha256: c.sha256, renewalTime: decision.renewalTime, issuedBy: 'BuiltInCA' };
      if (decision.renewalWaits !== undefined) placed.renewalWaits = { until: decision.renewalWaits, ...(pace.why ? { why: pace.why } : {}) };
    } else if (decision.kind === 'issue') {
      const issued = await issueFromCa(ca, su, decision);
      placed = { ...issued, material: await withPkcs12(issued.material, su), renewalTime: renewalTimeOf(issued.notAfter, su.spec.credentials.clientCertificate.renewBefore, end), issuedBy: 'BuiltInCA', issued: decision.reason };
    }
    await ledger.setHolds(owner, su.spec.disabled && placed ? [{ serialNumber: placed.serialNumber, notAfter: new Date(placed.notAfter).toISOString() }] : []);
    return placed ? { placed } : {};
  }

  /**
   * The certificate while the built-in CA is not loaded: a cert-manager issuer does not need
   * it; a user with no certificate anywhere is issued its token and told its certificate waits;
   * one with a certificate recorded or in its Secret waits whole ('wait'), since only the CA
   * can judge that certificate, and wiping or keeping it blind could destroy a working one.
   */
  function withoutCa(su: ServiceUser, secret: ObservedSecret | undefined, now: number, reason: string, blocked: boolean): 'wait' | Promise<{ placed?: PlacedCertificate; problem?: { reason: string; message: string } }> {
    const end = expiresAt(su.spec.endDate);
    const spec = su.spec.credentials.clientCertificate;
    const expired = isExpired(end, now);
    if (spec.enabled && spec.issuerRef && !expired && !blocked) return placeFromCertManager(deps, { su, ourSecretRaw: secret?.raw, recorded: sealedCertificate(su), now, endDate: end });
    if (su.status?.certificate || secret?.raw?.['tls.crt']) return 'wait';
    if (!spec.enabled || spec.issuerRef || expired || blocked) return Promise.resolve({});
    return Promise.resolve({
      problem: { reason: 'CAUnavailable', message: `the client certificate waits for the built-in CA: ${reason}. The token is issued meanwhile` },
    });
  }

  return async function reconcile(key: string): Promise<Result | void> {
    const cached = own.view(key, deps.serviceUsers.get(key));
    if (!cached) {
      written.delete(key);
      readLive.delete(key);
      return;
    }
    let raw = objectOf(cached);
    const ns = raw.metadata.namespace!;
    const log = deps.log.child({ serviceUser: key });

    const authority = deps.authorityState?.() ?? { ready: true as const };
    // Every record is MACed with the ledger key: without it nothing can be written (operator.ts
    // loads it with the CA, and enqueues every user once it is there).
    if (!deps.trust.ring) return void log.debug('waits for the ledger key');
    if (raw.metadata.deletionTimestamp) {
      ownSecrets.delete(key);
      written.delete(key);
      // Revoking needs the CA (the CRL); the operator enqueues every user once it is loaded.
      if (!authority.ready) return void log.debug('deletion waits for the built-in CA');
      if (raw.metadata.finalizers?.includes(finalizer)) await finalize(raw, cached.valid ? cached.value : undefined);
      return;
    }
    if (!cached.valid) {
      // Admission should have refused it (an outdated CRD?); say what is wrong and wait.
      const message = cached.problem;
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
    const su = cached.value;
    if (!raw.metadata.finalizers?.includes(finalizer)) raw = await setFinalizer(raw, true);

    // Only what bears on this user: those sharing its friendly name, the bindings naming it
    // and their roles (index lookups: a reconcile costs the same at 10 or 10,000 users).
    const users = validValues(deps.serviceUsers.byIndex(byFriendlyName, inNamespace(ns, friendlyNameOf(su))));
    const bindings = validValues(deps.roleBindings.byIndex(bySubject, inNamespace(ns, su.metadata.name)));
    const roles = validValues(bindings.map((b) => deps.roles.get(b.spec.roleRef.name)));
    const admits = admitsFromCaches(deps.accounts, deps.namespaces);
    const accounts = judgeAccounts(su.spec.accounts, ns, admits);
    const permissions = resolve([su], bindings, roles, admits).permissionsOf(ns, su.metadata.name);
    // A name someone else's Secret holds (the user is stalled on it) is read live: their Secret is not in our cache.
    const heldByOthers = !!su.status?.conditions?.some((c) => c.type === 'Stalled' && c.status === 'True' && c.reason === 'SecretNotOwned');
    const secret = await currentSecret(key, ns, secretNameOf(su), isExpired(expiresAt(su.spec.endDate), deps.now()), heldByOthers);
    const now = deps.now();
    const blocked = blocker(su, { peers: users, secret });
    let placement: { placed?: PlacedCertificate; problem?: { reason: string; message: string } };
    if (!authority.ready) {
      const waiting = withoutCa(su, blocked?.reason === 'SecretNotOwned' ? undefined : secret, now, authority.reason, !!blocked);
      if (waiting === 'wait') return void log.debug('waits for the built-in CA: it has a certificate to keep, renew, revoke or hold');
      placement = await waiting;
    } else if (!blocked) {
      placement = await placeCertificate(su, secret, now);
    } else {
      // A stalled user issues nothing, but its end date still revokes: placing the certificate
      // of an expired user only revokes (what status recorded, and what our own Secret holds).
      placement = isExpired(expiresAt(su.spec.endDate), now) ? await placeCertificate(su, blocked.reason === 'SecretNotOwned' ? undefined : secret, now) : {};
    }
    const { placed: certificate, problem: certificateProblem } = placement;
    const detail = certificateProblem && 'detail' in certificateProblem ? certificateProblem.detail : undefined;
    if (typeof detail === 'string') log.info({ reason: certificateProblem!.reason }, detail);
    if (authority.ready) {
      const end = expiresAt(su.spec.endDate);
      const builtIn = certificate?.issuedBy === 'BuiltInCA';
      deps.endDates?.track(key, isExpired(end, now) ? undefined : end, builtIn ? { serialNumber: certificate.serialNumber, notAfter: new Date(certificate.notAfter).toISOString() } : undefined);
    }
    const trust = { ...deps.trust, ring: deps.trust.ring! };
    const plan = desired(su, { now, secret, peers: users, permissions, accounts, certificate, certificateProblem, trust, ...(deps.templateKeys ? { templateKeys: deps.templateKeys } : {}) }, () => {
      deps.metrics.tokensIssued.inc();
      return deps.issue();
    });

    let wrote = false;
    if (plan.secret && !upToDate(secret, plan.secret, su.metadata.uid!)) {
      const applied = await secrets.write(su, plan.secret, secret).catch((err: unknown) => {
        if (err instanceof SecretTaken) readLive.add(key);
        throw err;
      });
      readLive.delete(key);
      ownSecrets.set(key, { secret: applied, seen: false });
      written.set(key, { name: applied.metadata.name, resourceVersion: applied.metadata.resourceVersion!, digest: digestOf(applied.data as Record<string, string> | undefined) });
      wrote = true;
      log.info({ secret: plan.secret.name, tokenId: plan.secret.data['token-id'], certificate: plan.status.certificate?.serialNumber }, 'Secret applied');
      if (deps.crashAfterSecretWrite) {
        log.fatal('test fault: exiting between the Secret write and the status write');
        process.exit(137);
      }
    }
    // Workloads to roll out: judged before the status write (their condition), annotated after it.
    const restarts = plan.secret ? await planRestarts(client, fieldManager, su, plan.secret, now) : undefined;
    if (restarts) plan.status.conditions = [...(plan.status.conditions ?? []), restarts.condition];
    // Notices owed to spec.email go into status with it (the outbox), then out by SMTP.
    const previousNotices = (raw.status as { notices?: NoticeStatus[] } | undefined)?.notices;
    const notify = deps.deliverNotices && su.spec.notifications.email;
    const notices = notify ? withNotices(previousNotices, noticesDue(su.status, plan.status, su.metadata.generation, now)) : previousNotices?.filter((n) => n.sentAt);
    if (notices?.length) plan.status.notices = notices;
    if (stableJson(plan.status) !== stableJson(raw.status ?? {})) {
      const applied = await applyStatus(raw, plan.status);
      // Apply keeps list entries another field manager added (kubectl patch --subresource=status):
      // a record the operator did not write is replaced, not left beside ours.
      const tokens = (applied.status as { tokens?: unknown } | undefined)?.tokens;
      if (stableJson(tokens ?? []) !== stableJson(plan.status.tokens ?? [])) {
        remember(raw, await client.mergePatch(suPath(ns, su.metadata.name, 'status'), { status: { tokens: plan.status.tokens ?? [] } }));
      }
      wrote = true;
    }
    if (!wrote && ownSecrets.get(key)?.seen) ownSecrets.delete(key);
    if (restarts) plan.events.push(...restarts.events, ...(await restarts.apply()));
    let noticeRetryMs: number | undefined;
    const pending = notify ? (plan.status.notices ?? []).filter((n) => !n.sentAt) : [];
    if (pending.length) {
      const { sent, retryInMs } = await deps.deliverNotices!(su, pending);
      if (sent.length) remember(raw, await applyStatus(raw, { ...plan.status, notices: markSent(plan.status.notices!, sent, deps.now()) }));
      noticeRetryMs = retryInMs;
    }
    for (const r of plan.revocations) deps.metrics.tokensRevoked.inc({ reason: r.reason });
    for (const e of plan.events) {
      // A Warning event is something to act on: it logs at warn, where alerting on logs looks.
      log[e.type === 'Warning' ? 'warn' : 'info']({ reason: e.reason, type: e.type }, e.message);
      // Not on the reconcile's path (unless the recorder's backlog is full): it writes and
      // aggregates them, and logs its own failures.
      await deps.events.whenRoom();
      void deps.events.record(raw, e);
    }
    setInfo(key, { namespace: ns, name: su.metadata.name, phase: plan.status.phase ?? 'Pending', friendly_name: plan.status.friendlyName ?? su.metadata.name });
    const end = expiresAt(su.spec.endDate);
    if (end !== undefined) {
      deps.metrics.expiration.set({ namespace: ns, name: su.metadata.name }, end / 1000);
      const warn = warnAt(end, su.spec.expiryWarning)!;
      deps.metrics.expiryWarning.set({ namespace: ns, name: su.metadata.name }, warn / 1000);
      deps.metrics.expiringSoon.set({ namespace: ns, name: su.metadata.name }, now >= warn && now < end ? 1 : 0);
    } else {
      deps.metrics.expiration.remove({ namespace: ns, name: su.metadata.name });
      deps.metrics.expiryWarning.remove({ namespace: ns, name: su.metadata.name });
      deps.metrics.expiringSoon.remove({ namespace: ns, name: su.metadata.name });
    }
    const requeueAfterMs = Math.min(plan.requeueAfterMs ?? Infinity, noticeRetryMs ?? Infinity);
    return requeueAfterMs === Infinity ? {} : { requeueAfterMs };
  };
}
