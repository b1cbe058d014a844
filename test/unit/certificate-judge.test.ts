// The native (OpenSSL) judgement of a certificate agrees with the full ASN.1 parse on every
// certificate the CA issues, and leaves everything else to it.
import { beforeAll, describe, expect, it } from 'vitest';
import { createCa, loadCa, type Ca } from '../../src/credentials/ca.ts';
import { issueClientCertificate } from '../../src/credentials/certificate.ts';
import { judgeFully, judgeNatively } from '../../src/serviceuser/issuance.ts';

let ca: Ca;
let other: Ca;
beforeAll(async () => {
  ca = await loadCa(await createCa());
  other = await loadCa(await createCa({ commonName: 'someone else' }));
});

const issue = (from: Ca, algorithm: 'ECDSA' | 'RSA' | 'Ed25519', size?: number) =>
  issueClientCertificate(from, {
    identity: 'serviceuser:ci:release-signer', friendlyName: 'Release, signer=x', namespace: 'ci', algorithm, ...(size ? { size } : {}),
    notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + 86_400_000),
  });

describe('judging a certificate natively', () => {
  for (const [algorithm, size] of [['ECDSA', undefined], ['ECDSA', 384], ['ECDSA', 521], ['RSA', 2048], ['Ed25519', undefined]] as const) {
    it(`agrees with the full parse on the CA's ${algorithm}${size ? ` ${size}` : ''} certificates, its own key and another's`, async () => {
      for (let i = 0; i < 5; i++) {
        const leaf = await issue(ca, algorithm, size);
        const native = judgeNatively(leaf.certPem, leaf.keyPem, ca);
        expect(native).toBeDefined();
        expect(native).toEqual(await judgeFully(leaf.certPem, leaf.keyPem, ca));
        expect(native).toMatchObject({ signedByCa: true, keyMatches: true, commonName: 'serviceuser:ci:release-signer', serialNumber: leaf.serialNumber });
        const stranger = await issue(ca, algorithm, size);
        const mismatched = judgeNatively(leaf.certPem, stranger.keyPem, ca);
        expect(mismatched).toEqual(await judgeFully(leaf.certPem, stranger.keyPem, ca));
        expect(mismatched?.keyMatches).toBe(false);
      }
    });
  }

  it('leaves another issuer\'s certificate, and what is not a certificate, to the full parse', async () => {
    const foreign = await issue(other, 'ECDSA');
    expect(judgeNatively(foreign.certPem, foreign.keyPem, ca)).toBeUndefined();
    expect(await judgeFully(foreign.certPem, foreign.keyPem, ca)).toMatchObject({ signedByCa: false });
    expect(judgeNatively('not a certificate', foreign.keyPem, ca)).toBeUndefined();
    // A key that is not a private key at all does not match.
    const leaf = await issue(ca, 'ECDSA');
    expect(judgeNatively(leaf.certPem, 'garbage', ca)?.keyMatches).toBe(false);
  });
});
