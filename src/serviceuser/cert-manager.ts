// cert-manager issuer mode: with `issuerRef` set, the ServiceUser's certificate comes from a
// cert-manager Certificate the operator owns (client auth, the identity as common name, its
// duration clipped to the end date). Once cert-manager has filled its Secret, the operator
// copies the certificate into the ServiceUser's Secret and adds the PKCS#12 bundle. When
// something is missing — cert-manager itself, the issuer, a ready issuer — the reason says
// what to do. Revocation of these certificates is the issuer's; verification refuses them
// by status regardless.
//
// What is placed: the Secret cert-manager writes is in the tenant's namespace, and anyone who
// may edit Secrets there can put any certificate into it — one naming the built-in CA as its
// issuer, with another user's serial. A certificate is placed only when it names this
// ServiceUser's identity, matches the key beside it, and is the certificate of a
// CertificateRequest our Certificate owns for the referenced issuer (its status is written by
// cert-manager only), or is the one status already records under the operator's seal. What
// is placed is recorded as issuedBy CertManager and never goes on the built-in CA's CRL.
//
// Ownership: both the Certificate and the Secret cert-manager writes (`<name>-client-tls`)
// are created by the operator with a POST and carry an ownerReference to the ServiceUser;
// a name someone else already holds is never written, applied over or deleted (a condition
// names its owner). The Secret is created empty before the Certificate so that cert-manager
// never writes into — and the operator never later wipes — a Secret that was not ours.
//
// The end date: a certificate cert-manager issued that ends after the end date, or lives
// longer than spec.duration (a duration lowered), is not placed and is reissued. cert-manager
// cannot issue for less than an hour, so in the last hour (plus the margin below) before
// the end date nothing new is requested: the Certificate is deleted (no renewal can then go
// past the end date) and the certificate already issued serves until the end date if it
// ends by then. Once expired, disabled by spec, deleted or switched to the built-in CA, the
// Certificate is deleted and its Secret wiped.
import { X509Certificate as NativeCertificate, createPrivateKey } from 'node:crypto';
import { checkedCertificate, type CertManagerCertificate } from '../api/cert-manager-certificate.ts';
import { parseDuration } from '../api/duration.ts';
import { apiVersion } from '../api/primitives.ts';
import type { CertificateStatus, ServiceUser } from '../api/serviceuser.ts';
import { isNotFound, type KubeClient, type KubeObject } from '../controller/kube.ts';
import { stableJson } from '../controller/stable-json.ts';
import { describeCertificate } from '../credentials/certificate.ts';
import type { CertificateMaterial } from './certificate.ts';
import { type PlacedCertificate } from './desired.ts';
import { friendlyNameOf, identityOf, labels } from '../api/names.ts';
import { withPkcs12 } from './issuance.ts';
import { conflictingManagers, createUnlessPresent, getIfPresent, isOwnedBy, ownerOf } from './ownership.ts';

export interface CertificateProblem {
  reason:
    | 'CertManagerMissing'
    | 'IssuerNotFound'
    | 'IssuerNotReady'
    | 'CertificateIssuing'
    | 'CertificateFailed'
    | 'CertificateNotOwned'
    | 'CertificateSecretNotOwned'
    | 'CertificateNotIssuedForUser'
    | 'EndDateTooNear';
  /** For status: only what the tenant may know. */
  message: string;
  /** For the operator's log only: what the tenant may not read (a ClusterIssuer's own message). */
  detail?: string;
}

export const certificateNameOf = (su: ServiceUser) => `${su.metadata.name}-client`;
export const issuedSecretNameOf = (su: ServiceUser) => `${su.metadata.name}-client-tls`;

const waitingOnCertManager = new Set<string>([
  'IssuerNotFound', 'IssuerNotReady', 'CertificateIssuing', 'CertificateFailed', 'CertificateNotOwned', 'CertificateSecretNotOwned', 'CertificateNotIssuedForUser', 'EndDateTooNear',
] satisfies CertificateProblem['reason'][]);

/** cert-manager refuses a Certificate shorter than an hour (MinimumCertificateDuration). */
const minimumDurationMs = 3_600_000;
/**
 * cert-manager counts the duration from when it signs, not from when we asked: the request
 * asks for this much less than the time left, so a certificate signed within it still ends
 * by the end date. One signed later is reissued (see fits).
 */
export const issuanceMarginMs = 5 * 60_000;
/** X.509 times have whole seconds. */
const slackMs = 1000;

/**
 * Whether the last status shows a cert-manager Certificate of ours: one that issued the
 * current certificate, or one still waiting for its issuer. Read from status, not asked of
 * the API, so a converged ServiceUser costs no request.
 */
export function hadCertManagerCertificate(su: ServiceUser, builtInIssuer: string): boolean {
  const recorded = su.status?.certificate;
  const ready = su.status?.conditions?.find((c) => c.type === 'Ready');
  // Records from before issuedBy: by issuer name, which only decides what to clean up here.
  const fromCertManager = recorded && (recorded.issuedBy === 'CertManager' || (recorded.issuedBy === undefined && recorded.issuer !== builtInIssuer));
  return !!fromCertManager || waitingOnCertManager.has(ready?.reason ?? '');
}

type Condition = { type: string; status: string; reason?: string; message?: string };
const conditionOf = (o: KubeObject | undefined, type: string) => ((o?.status as { conditions?: Condition[] } | undefined)?.conditions ?? []).find((c) => c.type === type);

const certificatesPath = (ns: string) => `/apis/cert-manager.io/v1/namespaces/${encodeURIComponent(ns)}/certificates`;
const requestsPath = (ns: string) => `/apis/cert-manager.io/v1/namespaces/${encodeURIComponent(ns)}/certificaterequests`;
const secretsPath = (ns: string) => `/api/v1/namespaces/${encodeURIComponent(ns)}/secrets`;
const ownerReference = (su: ServiceUser) => ({ apiVersion, kind: 'ServiceUser', name: su.metadata.name, uid: su.metadata.uid! });

/** The duration to ask cert-manager for now, or undefined when less than an hour (plus the margin) is left. */
export function requestedDuration(su: ServiceUser, now: number, endDate: number | undefined): number | undefined {
  const wanted = parseDuration(su.spec.credentials.clientCertificate.duration) ?? 0;
  const duration = Math.floor(Math.min(wanted, endDate === undefined ? Infinity : endDate - now - issuanceMarginMs) / 1000) * 1000;
  return duration < minimumDurationMs ? undefined : duration;
}

/** A certificate the spec allows: unexpired, not past the end date, no longer than spec.duration. */
function fits(su: ServiceUser, c: { notBefore: number; notAfter: number }, now: number, endDate: number | undefined): boolean {
  const wanted = parseDuration(su.spec.credentials.clientCertificate.duration) ?? 0;
  return c.notAfter > now && (endDate === undefined || c.notAfter - endDate < slackMs) && c.notAfter - c.notBefore <= wanted + 60_000 + slackMs;
}

/** cert-manager wants renewBefore shorter than the duration. */
const renewBeforeFor = (renewBefore: string, durationMs: number) => `${Math.floor(Math.min(parseDuration(renewBefore) ?? 0, durationMs / 2) / 1000)}s`;

/** The cert-manager Certificate for a ServiceUser, checked against the fields cert-manager.io/v1 defines. */
export function certificateFor(su: ServiceUser, durationMs: number): CertManagerCertificate {
  const spec = su.spec.credentials.clientCertificate;
  const ref = spec.issuerRef!;
  return checkedCertificate({
    apiVersion: 'cert-manager.io/v1',
    kind: 'Certificate',
    metadata: {
      name: certificateNameOf(su),
      namespace: su.metadata.namespace!,
      labels: { [labels.name]: su.metadata.name },
      ownerReferences: [{ ...ownerReference(su), controller: true, blockOwnerDeletion: true }],
    },
    spec: {
      secretName: issuedSecretNameOf(su),
      // The label lets the operator's Secret informer wake the ServiceUser when cert-manager writes.
      secretTemplate: { labels: { [labels.name]: su.metadata.name } },
      commonName: identityOf(su),
      subject: { organizations: ['serviceusers', `serviceusers:${su.metadata.namespace}`], organizationalUnits: [friendlyNameOf(su)] },
      uris: [`urn:${identityOf(su)}`],
      usages: ['client auth', 'digital signature'],
      duration: `${Math.floor(durationMs / 1000)}s`,
      renewBefore: renewBeforeFor(spec.renewBefore, durationMs),
      privateKey: {
        algorithm: spec.privateKey.algorithm,
        ...(spec.privateKey.size ? { size: spec.privateKey.size } : {}),
        rotationPolicy: 'Always',
        encoding: 'PKCS8',
      },
      issuerRef: { name: ref.name, kind: ref.kind, group: ref.group },
    },
  });
}

const missing: CertificateProblem = {
  reason: 'CertManagerMissing',
  message: 'cert-manager is not installed (the certificates.cert-manager.io API is missing): install cert-manager, or set spec.credentials.clientCertificate.issuerRef to null to use the built-in CA',
};

/**
 * The Secret cert-manager is to write, ours: created empty (type kubernetes.io/tls, which
 * cert-manager keeps) when absent. A Secret of that name we did not create is a problem —
 * except one cert-manager wrote for our own Certificate before the operator created these
 * Secrets itself, which gets our ownerReference.
 */
async function ensureIssuedSecret(client: KubeClient, fieldManager: string, su: ServiceUser, ourCertificate: KubeObject | undefined): Promise<{ secret?: KubeObject; problem?: CertificateProblem }> {
  const ns = su.metadata.namespace!;
  const name = issuedSecretNameOf(su);
  let secret = await getIfPresent(client, `${secretsPath(ns)}/${encodeURIComponent(name)}`);
  secret ??= await createUnlessPresent(client, secretsPath(ns), {
    apiVersion: 'v1', kind: 'Secret', type: 'kubernetes.io/tls',
    metadata: { name, namespace: ns, labels: { [labels.name]: su.metadata.name }, ownerReferences: [ownerReference(su)] },
    data: { 'tls.crt': '', 'tls.key': '' },
  }, fieldManager);
  if (isOwnedBy(secret, su.metadata.uid)) return { secret };
  const writtenForUs =
    !!ourCertificate &&
    secret.metadata.annotations?.['cert-manager.io/certificate-name'] === certificateNameOf(su) &&
    (secret.metadata.ownerReferences ?? []).every((r) => r.uid === ourCertificate.metadata.uid);
  if (writtenForUs) {
    const adopted = await client.request('PATCH', `${secretsPath(ns)}/${encodeURIComponent(name)}`, { metadata: { uid: secret.metadata.uid, ownerReferences: [ownerReference(su)] } }, 'application/strategic-merge-patch+json');
    return { secret: adopted };
  }
  return {
    problem: {
      reason: 'CertificateSecretNotOwned',
      message: `Secret ${name} exists and belongs to ${ownerOf(secret)}, not to this ServiceUser: cert-manager would overwrite it, so no Certificate is requested; delete that Secret or rename the ServiceUser`,
    },
  };
}

/** The certificate cert-manager issued into its Secret (base64 data as stored), if any. */
function issuedIn(secret: KubeObject | undefined) {
  const data = (secret?.data ?? {}) as Record<string, string>;
  const text = (k: string) => (data[k] ? Buffer.from(data[k], 'base64').toString('utf8') : '');
  if (!text('tls.crt') || !text('tls.key')) return undefined;
  try {
    return { raw: data['tls.crt']!, material: { certPem: text('tls.crt'), keyPem: text('tls.key'), caPem: text('ca.crt') } as CertificateMaterial, facts: describeCertificate(text('tls.crt')) };
  } catch {
    return undefined;
  }
}

type Issued = NonNullable<ReturnType<typeof issuedIn>>;
type IssuerRef = { name: string; kind?: string; group?: string };
const sameIssuer = (a: IssuerRef | undefined, b: IssuerRef) =>
  !!a && a.name === b.name && (a.kind || 'Issuer') === (b.kind || 'Issuer') && (a.group || 'cert-manager.io') === (b.group || 'cert-manager.io');

function namesUser(issued: Issued, su: ServiceUser): boolean {
  if (issued.facts.commonName !== identityOf(su)) return false;
  try {
    return new NativeCertificate(issued.material.certPem).checkPrivateKey(createPrivateKey(issued.material.keyPem));
  } catch {
    return false;
  }
}

/**
 * Whether cert-manager issued `issued` for our Certificate from the referenced issuer: some
 * CertificateRequest our Certificate owns, for that issuerRef, has it as its certificate.
 * A request's status is cert-manager's to write (the status subresource; the `edit` role
 * does not reach it), so a tenant can neither forge one nor point ours at another issuer.
 */
async function requestedByUs(client: KubeClient, su: ServiceUser, certificate: KubeObject, issued: Issued): Promise<boolean> {
  const ref = su.spec.credentials.clientCertificate.issuerRef!;
  const list = await client.get(requestsPath(su.metadata.namespace!));
  const der = Buffer.from(issued.raw, 'base64');
  return ((list.items ?? []) as KubeObject[]).some((r) => {
    const spec = r.spec as { issuerRef?: IssuerRef } | undefined;
    const status = r.status as { certificate?: string } | undefined;
    return isOwnedBy(r, certificate.metadata.uid) && sameIssuer(spec?.issuerRef, ref) && !!status?.certificate && Buffer.from(status.certificate, 'base64').equals(der);
  });
}

const notIssuedForUser = (su: ServiceUser, issued: Issued, why: string): CertificateProblem => {
  const ref = su.spec.credentials.clientCertificate.issuerRef!;
  return {
    reason: 'CertificateNotIssuedForUser',
    message: `the certificate in Secret ${issuedSecretNameOf(su)} (serial ${issued.facts.serialNumber}) ${why}, so it is not placed: remove it from that Secret (cert-manager then reissues from ${ref.kind} ${ref.name})`,
  };
};

export interface CertManagerInput {
  su: ServiceUser;
  /** The ServiceUser's own Secret's data (base64, as stored), if any. */
  ourSecretRaw: Record<string, string> | undefined;
  /** status.certificate when the operator sealed it; anything else is no evidence. */
  recorded: CertificateStatus | undefined;
  now: number;
  endDate: number | undefined;
}

type Placement = { placed?: PlacedCertificate; problem?: CertificateProblem };

/** What one placement decides from: the input, and the client to look things up with. */
interface Context extends CertManagerInput {
  client: KubeClient;
}

/** A certificate the spec allows now (see fits). */
const fitting = (ctx: Context, issued: ReturnType<typeof issuedIn>) =>
  issued && fits(ctx.su, { notBefore: issued.facts.notBefore.getTime(), notAfter: issued.facts.notAfter.getTime() }, ctx.now, ctx.endDate) ? issued : undefined;

/** Recorded under our seal as cert-manager's: vetted when it was placed. */
const alreadyPlaced = (ctx: Context, issued: Issued) => ctx.recorded?.sha256 === issued.facts.sha256 && ctx.recorded.issuedBy !== 'BuiltInCA';

/** Why `issued` may not be placed, or undefined: it must name this user and be cert-manager's answer to our Certificate. */
async function vet(ctx: Context, issued: Issued, certificate: KubeObject | undefined): Promise<CertificateProblem | undefined> {
  const { su } = ctx;
  if (alreadyPlaced(ctx, issued)) return undefined;
  if (!namesUser(issued, su)) return notIssuedForUser(su, issued, `does not name ${identityOf(su)} or does not match the key beside it`);
  if (!certificate || !(await requestedByUs(ctx.client, su, certificate, issued))) {
    const ref = su.spec.credentials.clientCertificate.issuerRef!;
    return notIssuedForUser(su, issued, `is not one cert-manager issued for Certificate ${certificateNameOf(su)} from ${ref.kind} ${ref.name}`);
  }
  return undefined;
}

/** What the ServiceUser's Secret holds, if status recorded it under our seal: kept while cert-manager replaces one that does not fit. */
function recordedInOurs(ctx: Context): Issued | undefined {
  const ours = issuedIn(ctx.ourSecretRaw ? ({ metadata: { name: '' }, data: ctx.ourSecretRaw } as KubeObject) : undefined);
  return ours && alreadyPlaced(ctx, ours) ? fitting(ctx, ours) : undefined;
}

async function place(ctx: Context, issued: Issued, renewalTime: number | undefined): Promise<Placement> {
  const { su, ourSecretRaw } = ctx;
  let material = issued.material;
  // The same certificate as before keeps its bundle and password.
  if (ourSecretRaw && ourSecretRaw['tls.crt'] === issued.raw && ourSecretRaw['client.p12']) {
    const password = ourSecretRaw['client.p12.password'] ?? ourSecretRaw.SM_CLIENT_CERT_PASSWORD;
    if (password) material = { ...material, p12: Buffer.from(ourSecretRaw['client.p12'], 'base64'), p12Password: Buffer.from(password, 'base64').toString('utf8') };
  }
  const { facts } = issued;
  return {
    placed: {
      material: await withPkcs12(material, su),
      serialNumber: facts.serialNumber,
      notBefore: facts.notBefore.getTime(),
      notAfter: facts.notAfter.getTime(),
      issuer: facts.issuer,
      sha256: facts.sha256,
      renewalTime,
      issuedBy: 'CertManager',
      ...(ourSecretRaw?.['tls.crt'] !== issued.raw ? { issued: 'cert-manager' } : {}),
    },
  };
}

/**
 * The last hour before the end date: ask for nothing more (the Certificate goes, so nothing
 * renews past it); what was issued serves if it ends by then. Vetted before the Certificate
 * goes, since its requests go with it.
 */
async function lastHour(ctx: Context, current: KubeObject | undefined): Promise<Placement> {
  const { client, su } = ctx;
  const secret = await getIfPresent(client, `${secretsPath(su.metadata.namespace!)}/${encodeURIComponent(issuedSecretNameOf(su))}`);
  const candidate = isOwnedBy(secret, su.metadata.uid) ? fitting(ctx, issuedIn(secret)) : undefined;
  const vetted = candidate && !(await vet(ctx, candidate, current)) ? candidate : undefined;
  if (current) await deleteCertificate(client, su);
  const issued = vetted ?? recordedInOurs(ctx);
  if (issued) return place(ctx, issued, undefined);
  return {
    problem: {
      reason: 'EndDateTooNear',
      message: `the end date ${new Date(ctx.endDate!).toISOString()} is less than ${(minimumDurationMs + issuanceMarginMs) / 60_000} minutes away and cert-manager issues nothing shorter than an hour: no certificate is requested; extend spec.endDate, or use the built-in CA (issuerRef: null)`,
    },
  };
}

/** Our Certificate as the spec wants it: created, or rewritten when it must be (mustRewrite); else a problem. */
async function upkeep(deps: { client: KubeClient; fieldManager: string }, ctx: Context, current: KubeObject | undefined, duration: number, issuedNow: Issued | undefined): Promise<{ certificate: KubeObject } | { problem: CertificateProblem }> {
  const { client, fieldManager } = deps;
  const { su } = ctx;
  const ns = su.metadata.namespace!;
  try {
    const want = certificateFor(su, duration) as KubeObject;
    if (!current) {
      const created = await createUnlessPresent(client, certificatesPath(ns), want, fieldManager);
      if (!isOwnedBy(created, su.metadata.uid)) {
        return { problem: { reason: 'CertificateNotOwned', message: `cert-manager Certificate ${certificateNameOf(su)} was created by ${ownerOf(created)} just now, not by this ServiceUser; it is left untouched: delete it or rename the ServiceUser` } };
      }
      return { certificate: created };
    }
    if (mustRewrite(current, want, su, !!issuedNow && !fitting(ctx, issuedNow))) {
      return { certificate: await applyOurs(client, `${certificatesPath(ns)}/${encodeURIComponent(certificateNameOf(su))}`, want, fieldManager) };
    }
    return { certificate: current };
  } catch (err) {
    if (isNotFound(err)) return { problem: missing };
    if (err instanceof NotOurs) return { problem: { reason: 'CertificateNotOwned', message: err.message } };
    throw err;
  }
}

/** Why nothing is placed yet: the issuer (missing, not ready: only what the tenant may know) or cert-manager's own word. */
async function waiting(ctx: Context, current: KubeObject): Promise<CertificateProblem> {
  const { su } = ctx;
  const ns = su.metadata.namespace!;
  const ref = su.spec.credentials.clientCertificate.issuerRef!;
  const issuerPath =
    ref.kind === 'ClusterIssuer'
      ? `/apis/cert-manager.io/v1/clusterissuers/${encodeURIComponent(ref.name)}`
      : `/apis/cert-manager.io/v1/namespaces/${encodeURIComponent(ns)}/issuers/${encodeURIComponent(ref.name)}`;
  const issuer = await getIfPresent(ctx.client, issuerPath);
  if (!issuer) {
    return { reason: 'IssuerNotFound', message: `${ref.kind} ${ref.name} does not exist${ref.kind === 'Issuer' ? ` in namespace ${ns}` : ''}: create it or fix spec.credentials.clientCertificate.issuerRef` };
  }
  const issuerReady = conditionOf(issuer, 'Ready');
  if (issuerReady?.status !== 'True') {
    // The issuer's own message can name what the tenant may not read (a ClusterIssuer's Secret
    // and namespace): it goes to the operator's log, not to status.
    return {
      reason: 'IssuerNotReady',
      message: `${ref.kind} ${ref.name} is not ready; ask whoever runs it (its own status says why)`,
      ...(issuerReady?.message ? { detail: `${ref.kind} ${ref.name}: ${issuerReady.message}` } : {}),
    };
  }
  const ready = conditionOf(current, 'Ready');
  const issuing = conditionOf(current, 'Issuing');
  if (ready?.reason === 'Failed' || issuing?.reason === 'Failed' || (issuing?.status === 'False' && issuing.message)) {
    return { reason: 'CertificateFailed', message: `cert-manager could not issue Certificate ${certificateNameOf(su)}: ${issuing?.message ?? ready?.message ?? 'no reason given'}` };
  }
  return { reason: 'CertificateIssuing', message: `waiting for cert-manager to issue Certificate ${certificateNameOf(su)}` };
}

export async function placeFromCertManager(deps: { client: KubeClient; fieldManager: string }, input: CertManagerInput): Promise<Placement> {
  const ctx: Context = { ...input, client: deps.client };
  const { su, now } = input;
  const path = `${certificatesPath(su.metadata.namespace!)}/${encodeURIComponent(certificateNameOf(su))}`;
  const current = await getIfPresent(deps.client, path);
  if (current && !isOwnedBy(current, su.metadata.uid)) {
    return {
      problem: {
        reason: 'CertificateNotOwned',
        message: `cert-manager Certificate ${certificateNameOf(su)} exists and belongs to ${ownerOf(current)}, not to this ServiceUser; it is left untouched: delete it or rename the ServiceUser`,
      },
    };
  }
  const duration = requestedDuration(su, now, input.endDate);
  if (duration === undefined) return lastHour(ctx, current);

  const ensured = await ensureIssuedSecret(deps.client, deps.fieldManager, su, current);
  if (ensured.problem) return { problem: ensured.problem };
  const issuedNow = issuedIn(ensured.secret);
  const kept = await upkeep(deps, ctx, current, duration, issuedNow);
  if ('problem' in kept) return { problem: kept.problem };
  const { certificate } = kept;

  // cert-manager keeps the current certificate in its Secret while it renews or re-issues:
  // as long as one is there and fits, it stays in the ServiceUser's Secret too — a working
  // credential is never dropped because the issuer is busy.
  const renewal = (certificate.status as { renewalTime?: string } | undefined)?.renewalTime;
  const usable = fitting(ctx, issuedNow);
  const refused = usable && (await vet(ctx, usable, certificate));
  if (usable && !refused) return place(ctx, usable, renewal ? Date.parse(renewal) : undefined);
  const recorded = recordedInOurs(ctx);
  if (recorded) return place(ctx, recorded, undefined);
  if (refused) return { problem: refused };
  if (issuedNow && issuedNow.facts.notAfter.getTime() > now) {
    return { problem: { reason: 'CertificateIssuing', message: `the certificate cert-manager issued (${issuedNow.facts.serialNumber}) ends after the end date or lives longer than spec.credentials.clientCertificate.duration; waiting for cert-manager to reissue Certificate ${certificateNameOf(su)}` } };
  }
  return { problem: await waiting(ctx, certificate) };
}

/**
 * Whether the Certificate's spec must be rewritten. A duration clipped to the end date shrinks
 * at every reconcile, and every change makes cert-manager reissue; so the duration is
 * rewritten only when it matters: the Certificate asks for more than spec.duration (lowered),
 * it could ask for a minute or more longer (the end date moved later or went away, the
 * duration raised), or the certificate issued does not fit and must be replaced.
 */
function mustRewrite(current: KubeObject, want: KubeObject, su: ServiceUser, issuedDoesNotFit: boolean): boolean {
  const spec = su.spec.credentials.clientCertificate;
  const specDuration = parseDuration(spec.duration) ?? 0;
  const have = current.spec as { duration?: string; renewBefore?: string } | undefined;
  const wantSpec = want.spec as { duration: string; renewBefore: string };
  const x = have?.duration ? parseDuration(have.duration) : undefined;
  const y = parseDuration(wantSpec.duration)!;
  if (!have || x === undefined) return true;
  if (stableJson({ ...have, duration: undefined, renewBefore: undefined }) !== stableJson({ ...wantSpec, duration: undefined, renewBefore: undefined })) return true;
  if (have.renewBefore !== renewBeforeFor(spec.renewBefore, x)) return true;
  if (x > specDuration + 60_000 || y - x >= 60_000) return true;
  return issuedDoesNotFit && Math.abs(x - y) >= slackMs;
}

class NotOurs extends Error {}

/** Server-side apply over our own Certificate; a field another manager took is a NotOurs naming it. */
async function applyOurs(client: KubeClient, path: string, want: KubeObject, fieldManager: string): Promise<KubeObject> {
  try {
    return await client.apply(path, want, fieldManager, { force: false });
  } catch (err) {
    const managers = conflictingManagers(err);
    if (!managers.length) throw err;
    // Our own create left its fields under our name (an Update entry): taking them is ours to do.
    if (managers.every((m) => m === fieldManager)) return client.apply(path, want, fieldManager);
    throw new NotOurs(`cert-manager Certificate ${want.metadata.name} has fields set by ${managers.map((m) => `field manager "${m}"`).join(', ')}; it is not overwritten: remove that manager's changes (kubectl apply --server-side with its field manager, or recreate the ServiceUser)`);
  }
}

/**
 * Stops cert-manager for a ServiceUser: deletes its Certificate (first, so nothing renews
 * into the Secret) and wipes the Secret cert-manager wrote — each only if it is ours.
 */
export async function removeCertManagerCertificate(client: KubeClient, su: Owner): Promise<void> {
  await deleteCertificate(client, su);
  await wipeIssuedSecret(client, su);
}

type Owner = { metadata: { name: string; namespace?: string; uid?: string } };

async function deleteCertificate(client: KubeClient, su: Owner): Promise<void> {
  const ns = su.metadata.namespace!;
  const certificatePath = `${certificatesPath(ns)}/${encodeURIComponent(`${su.metadata.name}-client`)}`;
  const certificate = await getIfPresent(client, certificatePath);
  if (isOwnedBy(certificate, su.metadata.uid)) {
    await client
      .request('DELETE', certificatePath, { apiVersion: 'v1', kind: 'DeleteOptions', preconditions: { uid: certificate!.metadata.uid } })
      .catch((err: unknown) => (isNotFound(err) ? undefined : Promise.reject(err)));
  }
}

async function wipeIssuedSecret(client: KubeClient, su: Owner): Promise<void> {
  const path = `${secretsPath(su.metadata.namespace!)}/${encodeURIComponent(`${su.metadata.name}-client-tls`)}`;
  const secret = await getIfPresent(client, path);
  if (!isOwnedBy(secret, su.metadata.uid)) return;
  const data = (secret!.data ?? {}) as Record<string, string>;
  if (!Object.values(data).some((v) => v)) return;
  // kubernetes.io/tls keeps its two keys, empty; the uid makes the patch fail on another Secret of that name.
  const wiped = Object.fromEntries(Object.keys(data).map((k) => [k, k === 'tls.crt' || k === 'tls.key' ? '' : null]));
  await client.mergePatch(path, { metadata: { uid: secret!.metadata.uid }, data: wiped }).catch((err: unknown) => (isNotFound(err) ? undefined : Promise.reject(err)));
}
