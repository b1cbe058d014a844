// cert-manager issuer mode: with `issuerRef` set, the ServiceUser's certificate comes from a
// cert-manager Certificate the operator owns (client auth, the identity as common name, its
// duration clipped to the end date). Once cert-manager has filled its Secret, the operator
// copies the certificate into the ServiceUser's Secret and adds the PKCS#12 bundle. When
// something is missing — cert-manager itself, the issuer, a ready issuer — the reason says
// what to do. Revocation of these certificates is the issuer's; verification refuses them
// by status regardless.
import { Certificate } from '@kubernetes-models/cert-manager/cert-manager.io/v1/Certificate';
import { parseDuration } from '../api/duration.ts';
import { apiVersion } from '../api/primitives.ts';
import type { ServiceUser } from '../api/serviceuser.ts';
import { isNotFound, type KubeClient, type KubeObject } from '../controller/kube.ts';
import { stableJson } from '../controller/stable-json.ts';
import { describeCertificate } from '../credentials/certificate.ts';
import type { CertificateMaterial } from './certificate.ts';
import { friendlyNameOf, identityOf, labels, type PlacedCertificate } from './desired.ts';
import { withPkcs12 } from './issuance.ts';

export interface CertificateProblem {
  reason: 'CertManagerMissing' | 'IssuerNotFound' | 'IssuerNotReady' | 'CertificateIssuing' | 'CertificateFailed';
  message: string;
}

export const certificateNameOf = (su: ServiceUser) => `${su.metadata.name}-client`;

const waitingOnCertManager = new Set<string>(['IssuerNotFound', 'IssuerNotReady', 'CertificateIssuing', 'CertificateFailed'] satisfies CertificateProblem['reason'][]);

/**
 * Whether the last status shows a cert-manager Certificate of ours: one that issued the
 * current certificate, or one still waiting for its issuer. Read from status, not asked of
 * the API, so a converged ServiceUser costs no request.
 */
export function hadCertManagerCertificate(su: ServiceUser, builtInIssuer: string): boolean {
  const issuer = su.status?.certificate?.issuer;
  const ready = su.status?.conditions?.find((c) => c.type === 'Ready');
  return (issuer !== undefined && issuer !== builtInIssuer) || waitingOnCertManager.has(ready?.reason ?? '');
}
const issuedSecretNameOf = (su: ServiceUser) => `${su.metadata.name}-client-tls`;

type Condition = { type: string; status: string; reason?: string; message?: string };
const conditionOf = (o: KubeObject | undefined, type: string) => ((o?.status as { conditions?: Condition[] } | undefined)?.conditions ?? []).find((c) => c.type === type);

/** The cert-manager Certificate for a ServiceUser, typed and validated by @kubernetes-models. */
export function certificateFor(su: ServiceUser, now: number, endDate: number | undefined): Certificate {
  const spec = su.spec.credentials.clientCertificate;
  const ref = spec.issuerRef!;
  const wanted = parseDuration(spec.duration) ?? 0;
  // Never past the end date; cert-manager's own floor is an hour.
  const duration = Math.max(3_600_000, Math.min(wanted, endDate !== undefined ? endDate - now : wanted));
  const certificate = new Certificate({
    metadata: {
      name: certificateNameOf(su),
      namespace: su.metadata.namespace!,
      labels: { [labels.name]: su.metadata.name },
      ownerReferences: [{ apiVersion, kind: 'ServiceUser', name: su.metadata.name, uid: su.metadata.uid!, controller: true, blockOwnerDeletion: true }],
    },
    spec: {
      secretName: issuedSecretNameOf(su),
      // The label lets the operator's Secret informer wake the ServiceUser when cert-manager writes.
      secretTemplate: { labels: { [labels.name]: su.metadata.name } },
      commonName: identityOf(su),
      subject: { organizations: ['serviceusers', `serviceusers:${su.metadata.namespace}`], organizationalUnits: [friendlyNameOf(su)] },
      uris: [`urn:${identityOf(su)}`],
      usages: ['client auth', 'digital signature'],
      duration: `${Math.floor(duration / 1000)}s`,
      renewBefore: `${Math.floor(Math.min(parseDuration(spec.renewBefore) ?? 0, duration / 2) / 1000)}s`,
      privateKey: {
        algorithm: spec.privateKey.algorithm,
        ...(spec.privateKey.size ? { size: spec.privateKey.size } : {}),
        rotationPolicy: 'Always',
        encoding: 'PKCS8',
      },
      issuerRef: { name: ref.name, kind: ref.kind, group: ref.group },
    },
  });
  certificate.validate();
  return certificate;
}

export async function placeFromCertManager(
  deps: { client: KubeClient; fieldManager: string },
  su: ServiceUser,
  ourSecretRaw: Record<string, string> | undefined,
  now: number,
  endDate: number | undefined,
): Promise<{ placed?: PlacedCertificate; problem?: CertificateProblem }> {
  const { client } = deps;
  const ns = su.metadata.namespace!;
  const ref = su.spec.credentials.clientCertificate.issuerRef!;
  const base = `/apis/cert-manager.io/v1/namespaces/${encodeURIComponent(ns)}/certificates`;
  const path = `${base}/${encodeURIComponent(certificateNameOf(su))}`;
  const get = async (p: string) => client.get(p).catch((err: unknown) => (isNotFound(err) ? undefined : Promise.reject(err)));

  let current: KubeObject | undefined;
  try {
    current = await get(path);
    // Rewrite only a changed spec: an end date clipped afresh at every reconcile would churn.
    const want = certificateFor(su, now, endDate).toJSON() as KubeObject;
    const have = current?.spec as { duration?: string } | undefined;
    const wantSpec = want.spec as { duration: string };
    if (!have || stableJson({ ...have, duration: undefined }) !== stableJson({ ...wantSpec, duration: undefined }) || !sameDurationRoughly(have.duration, wantSpec.duration)) {
      current = await client.apply(path, want, deps.fieldManager);
    }
  } catch (err) {
    if (isNotFound(err) || (err as { status?: number }).status === 404) {
      return {
        problem: {
          reason: 'CertManagerMissing',
          message: 'cert-manager is not installed (the certificates.cert-manager.io API is missing): install cert-manager, or set spec.credentials.clientCertificate.issuerRef to null to use the built-in CA',
        },
      };
    }
    throw err;
  }

  async function whyNotIssued(): Promise<CertificateProblem> {
    const ready = conditionOf(current, 'Ready');
    const issuerPath =
      ref.kind === 'ClusterIssuer'
        ? `/apis/cert-manager.io/v1/clusterissuers/${encodeURIComponent(ref.name)}`
        : `/apis/cert-manager.io/v1/namespaces/${encodeURIComponent(ns)}/issuers/${encodeURIComponent(ref.name)}`;
    const issuer = await get(issuerPath);
    if (!issuer) {
      return { reason: 'IssuerNotFound', message: `${ref.kind} ${ref.name} does not exist${ref.kind === 'Issuer' ? ` in namespace ${ns}` : ''}: create it or fix spec.credentials.clientCertificate.issuerRef` };
    }
    const issuerReady = conditionOf(issuer, 'Ready');
    if (issuerReady?.status !== 'True') {
      return { reason: 'IssuerNotReady', message: `${ref.kind} ${ref.name} is not ready${issuerReady?.message ? `: ${issuerReady.message}` : ''}` };
    }
    const issuing = conditionOf(current, 'Issuing');
    if (ready?.reason === 'Failed' || issuing?.reason === 'Failed' || (issuing?.status === 'False' && issuing.message)) {
      return { reason: 'CertificateFailed', message: `cert-manager could not issue Certificate ${certificateNameOf(su)}: ${issuing?.message ?? ready?.message ?? 'no reason given'}` };
    }
    return { reason: 'CertificateIssuing', message: `waiting for cert-manager to issue Certificate ${certificateNameOf(su)}` };
  }


  const issued = await get(`/api/v1/namespaces/${encodeURIComponent(ns)}/secrets/${encodeURIComponent(issuedSecretNameOf(su))}`);
  const data = (issued?.data ?? {}) as Record<string, string>;
  const text = (k: string) => (data[k] ? Buffer.from(data[k], 'base64').toString('utf8') : '');
  // cert-manager keeps the current certificate in its Secret while it renews or re-issues:
  // as long as one is there and unexpired, it stays in the ServiceUser's Secret too — a
  // working credential is never dropped because the issuer is busy.
  const usable = text('tls.crt') && text('tls.key') && describeCertificate(text('tls.crt')).notAfter.getTime() > now;
  if (!usable) return { problem: await whyNotIssued() };
  let material: CertificateMaterial = { certPem: text('tls.crt'), keyPem: text('tls.key'), caPem: text('ca.crt') };
  // The same certificate as before keeps its bundle and password.
  if (ourSecretRaw && ourSecretRaw['tls.crt'] === data['tls.crt'] && ourSecretRaw['client.p12']) {
    const password = ourSecretRaw['client.p12.password'] ?? ourSecretRaw.SM_CLIENT_CERT_PASSWORD;
    if (password) material = { ...material, p12: Buffer.from(ourSecretRaw['client.p12'], 'base64'), p12Password: Buffer.from(password, 'base64').toString('utf8') };
  }
  const facts = describeCertificate(material.certPem);
  const renewal = (current?.status as { renewalTime?: string } | undefined)?.renewalTime;
  return {
    placed: {
      material: await withPkcs12(material, su),
      serialNumber: facts.serialNumber,
      notBefore: facts.notBefore.getTime(),
      notAfter: facts.notAfter.getTime(),
      issuer: facts.issuer,
      renewalTime: renewal ? Date.parse(renewal) : undefined,
      ...(ourSecretRaw?.['tls.crt'] !== data['tls.crt'] ? { issued: 'cert-manager' } : {}),
    },
  };
}

/** Clipped durations differ by the seconds between reconciles; a minute either way is the same. */
function sameDurationRoughly(a: string | undefined, b: string): boolean {
  const x = a ? parseDuration(a) : undefined;
  const y = parseDuration(b);
  return x !== undefined && y !== undefined && Math.abs(x - y) < 60_000;
}

/** Removes the Certificate when the spec no longer asks for cert-manager. */
export async function removeCertManagerCertificate(client: KubeClient, su: ServiceUser): Promise<void> {
  await client
    .request('DELETE', `/apis/cert-manager.io/v1/namespaces/${encodeURIComponent(su.metadata.namespace!)}/certificates/${encodeURIComponent(certificateNameOf(su))}`)
    .catch((err: unknown) => (isNotFound(err) ? undefined : Promise.reject(err)));
}
