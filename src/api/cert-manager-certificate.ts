// The cert-manager Certificate (cert-manager.io/v1) as the operator writes it: only the fields
// it sets, checked before the object leaves the process. The operator builds the Certificate
// from a ServiceUser that has already parsed, so a failure here is a bug or an identity
// cert-manager would refuse; the error names the field and what it must be, instead of
// leaving the API server or cert-manager to refuse it later with less context.
// Types and this schema only: no generated model package is carried at runtime for one check.
import { z } from 'zod';

const seconds = z.string().regex(/^[0-9]+s$/, 'must be a whole number of seconds, such as "3600s"');
const name = z.string().min(1).max(253).regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, 'must be a DNS subdomain name');
const labelMap = z.record(z.string().max(317), z.string().max(63));

export const certManagerCertificate = z.strictObject({
  apiVersion: z.literal('cert-manager.io/v1'),
  kind: z.literal('Certificate'),
  metadata: z.strictObject({
    name,
    namespace: name,
    labels: labelMap,
    ownerReferences: z
      .array(z.strictObject({ apiVersion: z.string().min(1), kind: z.string().min(1), name, uid: z.string().min(1), controller: z.boolean().optional(), blockOwnerDeletion: z.boolean().optional() }))
      .min(1),
  }),
  spec: z.strictObject({
    secretName: name,
    secretTemplate: z.strictObject({ labels: labelMap }),
    commonName: z.string().min(1),
    subject: z.strictObject({ organizations: z.array(z.string().min(1)), organizationalUnits: z.array(z.string().min(1)) }),
    uris: z.array(z.string().regex(/^[a-z][a-z0-9+.-]*:/, 'must be a URI with a scheme')),
    usages: z.array(z.enum(['client auth', 'digital signature'])).min(1),
    duration: seconds,
    renewBefore: seconds,
    privateKey: z.strictObject({
      algorithm: z.enum(['ECDSA', 'RSA', 'Ed25519']),
      size: z.number().int().positive().optional(),
      rotationPolicy: z.enum(['Always', 'Never']),
      encoding: z.enum(['PKCS1', 'PKCS8']),
    }),
    issuerRef: z.strictObject({ name, kind: z.enum(['Issuer', 'ClusterIssuer']), group: z.literal('cert-manager.io') }),
  }),
});

export type CertManagerCertificate = z.infer<typeof certManagerCertificate>;

/** The Certificate, checked; throws an Error naming each field that is wrong and what it must be. */
export function checkedCertificate(certificate: CertManagerCertificate): CertManagerCertificate {
  const parsed = certManagerCertificate.safeParse(certificate);
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
  throw new Error(`cert-manager Certificate ${certificate.metadata?.namespace}/${certificate.metadata?.name} is not valid: ${problems.join('; ')}`);
}
