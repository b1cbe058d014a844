// The cert-manager Certificate the operator writes, checked by its own schema (no generated
// model package at runtime): a good ServiceUser gives a Certificate cert-manager.io/v1 accepts,
// and a bad one is refused before it is sent, naming the field and what it must be.
import { describe, expect, it } from 'vitest';
import { serviceUser } from '../../src/api/serviceuser.ts';
import { certManagerCertificate, checkedCertificate } from '../../src/api/cert-manager-certificate.ts';
import { certificateFor } from '../../src/serviceuser/cert-manager.ts';

const su = serviceUser.parse({
  apiVersion: 'serviceusers.dev/v1alpha1',
  kind: 'ServiceUser',
  metadata: { name: 'ci', namespace: 'team', uid: 'uid-1', generation: 1, creationTimestamp: '2026-12-01T00:00:00Z' },
  spec: { email: 'ops@example.com', accounts: ['acme'], credentials: { clientCertificate: { issuerRef: { name: 'ca', kind: 'ClusterIssuer' }, privateKey: { algorithm: 'RSA', size: 3072 } } } },
});

describe('the cert-manager Certificate', () => {
  it('is built from the ServiceUser with the fields cert-manager reads', () => {
    const c = certificateFor(su, 7_200_000);
    expect(certManagerCertificate.safeParse(c).success).toBe(true);
    expect(c).toMatchObject({
      apiVersion: 'cert-manager.io/v1',
      kind: 'Certificate',
      metadata: { name: 'ci-client', namespace: 'team', ownerReferences: [{ kind: 'ServiceUser', name: 'ci', uid: 'uid-1', controller: true }] },
      spec: { commonName: 'serviceuser:team:ci', duration: '7200s', usages: ['client auth', 'digital signature'], privateKey: { algorithm: 'RSA', size: 3072, encoding: 'PKCS8' }, issuerRef: { name: 'ca', kind: 'ClusterIssuer', group: 'cert-manager.io' } },
    });
  });

  it('refuses a bad duration, naming the field and the form expected', () => {
    expect(() => certificateFor(su, Number.NaN)).toThrow(/team\/ci-client is not valid: spec\.duration: must be a whole number of seconds/);
  });

  it('refuses a field cert-manager.io/v1 does not define here, and a wrong enum, naming each', () => {
    const c = certificateFor(su, 7_200_000);
    const bad = { ...c, spec: { ...c.spec, usages: ['server auth'], isCA: true } } as unknown as Parameters<typeof checkedCertificate>[0];
    expect(() => checkedCertificate(bad)).toThrow(/spec\.usages\.0: .*"client auth".*; spec: Unrecognized key: "isCA"|spec: Unrecognized key: "isCA".*spec\.usages\.0/);
  });
});
