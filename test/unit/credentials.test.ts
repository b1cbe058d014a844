// The built-in CA's certificates, PKCS#12 bundles and CRLs, read by real consumers:
// openssl (3, no legacy provider) and Java's keytool.

import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { createCa, loadCa, type Ca } from '../../src/credentials/ca.ts';
import { describeCertificate, issueClientCertificate, issueServingCertificate } from '../../src/credentials/certificate.ts';
import { buildCrl, liveRevocations } from '../../src/credentials/crl.ts';
import { newPkcs12Password, openPkcs12, toPkcs12 } from '../../src/credentials/pkcs12.ts';
import { issueToken, parseToken, tokenPattern } from '../../src/credentials/token.ts';
import { run } from '../kube.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'credentials-'));
const file = (name: string, content: string | Buffer) => {
  const p = path.join(dir, name);
  writeFileSync(p, content);
  return p;
};
describe('tokens', () => {
  it('have the fixed prefix, 256 random bits and a checksum that catches typos', () => {
    const { token, id } = issueToken();
    expect(token).toMatch(tokenPattern);
    expect(parseToken(token)).toEqual({ ok: true, id });
    const typo = token.slice(0, 30) + (token[30] === 'a' ? 'b' : 'a') + token.slice(31);
    expect(parseToken(typo)).toEqual({ ok: false, reason: 'token checksum mismatch (typo or truncation)' });
    expect(parseToken(token.slice(0, -1)).ok).toBe(false);
    expect(parseToken('ghp_abc')).toEqual({ ok: false, reason: 'not a service-user token' });
    const ids = new Set(Array.from({ length: 1000 }, () => issueToken().id));
    expect(ids.size).toBe(1000);
  });
});

describe('the built-in CA', () => {
  let ca: Ca;
  let caFile: string;
  beforeAll(async () => {
    ca = await loadCa(await createCa());
    caFile = file('ca.crt', ca.certPem);
  });

  it('refuses material that is not a matching CA pair, saying which part is wrong', async () => {
    const other = await createCa();
    await expect(loadCa({ certPem: ca.certPem, keyPem: other.keyPem })).rejects.toThrow('does not belong to the CA certificate');
    await expect(loadCa({ certPem: 'garbage', keyPem: ca.keyPem })).rejects.toThrow('tls.crt) is not a PEM X.509 certificate');
    const leaf = await issueClientCertificate(ca, {
      identity: 'serviceuser:ns:x', friendlyName: 'x', namespace: 'ns', algorithm: 'ECDSA',
      notBefore: new Date(), notAfter: new Date(Date.now() + 3_600_000),
    });
    await expect(loadCa({ certPem: leaf.certPem, keyPem: leaf.keyPem })).rejects.toThrow('is not a CA');
  });

  for (const [algorithm, size] of [['ECDSA', undefined], ['ECDSA', 384], ['RSA', 2048], ['Ed25519', undefined]] as const) {
    // keytool starts a JVM and RSA keys take their time: seconds each on a busy machine.
    it(`issues ${algorithm}${size ? ` ${size}` : ''} client certificates that openssl verifies for client auth, and keytool and openssl read as PKCS#12`, { timeout: 60_000 }, async () => {
      const notAfter = new Date(Date.now() + 86_400_000);
      const leaf = await issueClientCertificate(ca, {
        identity: 'serviceuser:ci:release-signer', friendlyName: 'Release, signer', namespace: 'ci', algorithm, ...(size ? { size } : {}),
        notBefore: new Date(Date.now() - 60_000), notAfter,
      });
      const certFile = file(`${algorithm}${size ?? ''}.crt`, leaf.certPem);
      expect(await run('openssl', ['verify', '-CAfile', caFile, '-purpose', 'sslclient', certFile])).toMatchObject({ ok: true });
      const text = (await run('openssl', ['x509', '-in', certFile, '-noout', '-text'])).output;
      expect(text).toContain('TLS Web Client Authentication');
      expect(text).toMatch(/Subject: CN ?= ?serviceuser:ci:release-signer, O ?= ?serviceusers, O ?= ?serviceusers:ci, OU ?= ?"?Release\\?, signer/);
      expect(text).toContain('URI:urn:serviceuser:ci:release-signer');
      expect(describeCertificate(leaf.certPem).notAfter.getTime()).toBe(Math.floor(notAfter.getTime() / 1000) * 1000);

      const password = newPkcs12Password();
      const p12 = file(`${algorithm}${size ?? ''}.p12`, await toPkcs12({ certPem: leaf.certPem, keyPem: leaf.keyPem, caPem: ca.certPem, password, friendlyName: 'release-signer' }));
      const info = await run('openssl', ['pkcs12', '-in', p12, '-info', '-noout', '-passin', `pass:${password}`]);
      expect(info.ok, info.output).toBe(true);
      // OpenSSL 3's own defaults (docs/certificates.md: the password is 192 random bits).
      expect(info.output).toContain('MAC: sha256, Iteration 2048');
      expect(info.output).toContain('Shrouded Keybag: PBES2, PBKDF2, AES-256-CBC, Iteration 2048, PRF hmacWithSHA256');
      expect(info.output).toContain('PKCS7 Encrypted data: PBES2, PBKDF2, AES-256-CBC, Iteration 2048, PRF hmacWithSHA256');
      const extracted = await run('openssl', ['pkcs12', '-in', p12, '-nodes', '-passin', `pass:${password}`]);
      expect(extracted.output).toContain('BEGIN PRIVATE KEY');
      expect((await run('openssl', ['pkcs12', '-in', p12, '-info', '-noout', '-passin', 'pass:wrong'])).ok).toBe(false);
      const keytool = await run('keytool', ['-list', '-v', '-keystore', p12, '-storetype', 'PKCS12', '-storepass', password]);
      expect(keytool.ok, keytool.output).toBe(true);
      expect(keytool.output).toContain('Entry type: PrivateKeyEntry');
      expect(keytool.output).toContain('Certificate chain length: 2');
    });
  }

  it('opens a PKCS#12 bundle openssl made, and refuses it with a wrong password or a flipped byte', { timeout: 60_000 }, async () => {
    const leaf = await issueClientCertificate(ca, { identity: 'serviceuser:ci:x', friendlyName: 'x', namespace: 'ci', algorithm: 'RSA', notBefore: new Date(), notAfter: new Date(Date.now() + 3_600_000) });
    const out = path.join(dir, 'by-openssl.p12');
    const made = await run('openssl', ['pkcs12', '-export', '-in', file('o.crt', leaf.certPem), '-inkey', file('o.key', leaf.keyPem), '-certfile', caFile, '-passout', 'pass:s3cret', '-out', out]);
    expect(made.ok, made.output).toBe(true);
    const der = readFileSync(out);
    expect(openPkcs12(der, 's3cret')).toEqual({ keys: 1, serials: expect.arrayContaining([leaf.serialNumber.replace(/^0+/, '')]) });
    expect(() => openPkcs12(der, 'wrong')).toThrow('integrity MAC does not verify');
    const flipped = Buffer.from(der);
    flipped[flipped.length - 60]! ^= 1; // inside the MAC value or salt: the MAC no longer verifies
    expect(() => openPkcs12(flipped, 's3cret')).toThrow();
    expect(() => openPkcs12(Buffer.from('junk'), 's3cret')).toThrow();
  });

  it('publishes a CRL that makes openssl refuse revoked and held certificates and accept live ones', { timeout: 60_000 }, async () => {
    const issue = () =>
      issueClientCertificate(ca, { identity: 'serviceuser:ci:x', friendlyName: 'x', namespace: 'ci', algorithm: 'ECDSA', notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + 86_400_000) });
    const [live, revoked, held] = await Promise.all([issue(), issue(), issue()]);
    const entry = (c: typeof live, reason: 'cessationOfOperation' | 'certificateHold') => ({
      serialNumber: c.serialNumber, revokedAt: new Date().toISOString(), reason, notAfter: c.notAfter.toISOString(), identity: 'serviceuser:ci:x',
    });
    const crl = await buildCrl(ca, [entry(revoked, 'cessationOfOperation'), entry(held, 'certificateHold')], { number: 7, now: new Date(), validity: 3_600_000 });
    const crlFile = file('ca.crl', crl);
    const verify = (c: typeof live) => run('openssl', ['verify', '-crl_check', '-CAfile', caFile, '-CRLfile', crlFile, file(`${c.serialNumber}.crt`, c.certPem)]);
    expect(await verify(live)).toMatchObject({ ok: true });
    expect((await verify(revoked)).output).toContain('certificate revoked');
    expect((await verify(held)).output).toContain('certificate revoked');
    const text = (await run('openssl', ['crl', '-in', crlFile, '-noout', '-text'])).output;
    expect(text).toContain('Certificate Hold');
    expect(text).toContain('Cessation Of Operation');
    expect(text).toMatch(/X509v3 CRL Number:\s+7/);
    // Released from hold: the next CRL no longer lists it.
    const released = file('released.crl', await buildCrl(ca, [entry(revoked, 'cessationOfOperation')], { number: 8, now: new Date(), validity: 3_600_000 }));
    expect(await run('openssl', ['verify', '-crl_check', '-CAfile', caFile, '-CRLfile', released, file('held.crt', held.certPem)])).toMatchObject({ ok: true });
    // Signed by this CA, and by no other.
    expect((await run('openssl', ['crl', '-in', crlFile, '-noout', '-CAfile', caFile, '-verify'])).output).toContain('verify OK');
    // (Another CA with the same name: openssl finds it as the issuer and rejects the signature.)
    expect((await run('openssl', ['crl', '-in', crlFile, '-noout', '-CAfile', file('other-ca.crt', (await createCa()).certPem), '-verify'])).output).toContain('verify failure');
    expect(liveRevocations([entry(revoked, 'cessationOfOperation'), { ...entry(held, 'certificateHold'), notAfter: new Date(Date.now() - 8 * 86_400_000).toISOString() }, { ...entry(live, 'certificateHold'), notAfter: new Date(Date.now() - 86_400_000).toISOString() }], Date.now())).toHaveLength(2);
  });
});

// Go (a kube-apiserver, most gateways) matches an issuer to its CA byte for byte: an issued
// certificate must carry the CA's subject exactly as the CA certificate encodes it — string
// types, attribute order, multi-valued RDNs — or Go says "signed by unknown authority" where
// openssl, which compares names loosely, says OK.
describe('a CA brought by the user, made by OpenSSL', () => {
  const cas = [
    ['OpenSSL 3 defaults (UTF8String)', ['-subj', '/C=DE/O=Example Platform/CN=Platform Root CA']],
    ['PrintableString', ['-subj', '/C=DE/O=Example Platform/CN=Platform Root CA', '-config', 'printable']],
    ['a multi-valued RDN', ['-multivalue-rdn', '-subj', '/O=Example Platform+OU=Trust/CN=Platform Root CA']],
  ] as const;
  const names = async (pem: string, which: 'issuer' | 'subject') => (await run('openssl', ['x509', '-in', file(`name-${Math.random()}.pem`, pem), '-noout', `-${which}`, '-nameopt', 'multiline,show_type'])).output.replace(/^(issuer|subject)=/, '');
  for (const [what, args] of cas) {
    it(`issues client and serving certificates naming it exactly as it names itself: ${what}`, { timeout: 60_000 }, async () => {
      const slug = what.replace(/\W+/g, '-');
      const config = file(`${slug}.cnf`, '[req]\ndistinguished_name=dn\nstring_mask=default\nprompt=no\n[dn]\n[v3_ca]\nbasicConstraints=critical,CA:true\nkeyUsage=critical,keyCertSign,cRLSign\n');
      const key = path.join(dir, `${slug}.key`);
      const crt = path.join(dir, `${slug}.crt`);
      const made = await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', crt, '-days', '30',
        ...args.flatMap((a) => (a === 'printable' ? [config] : [a])), ...((args as readonly string[]).includes('-config') ? ['-extensions', 'v3_ca'] : [])]);
      expect(made.ok, made.output).toBe(true);
      const byo = await loadCa({ certPem: readFileSync(crt, 'utf8'), keyPem: readFileSync(key, 'utf8') });
      const subject = await names(byo.certPem, 'subject');
      if (what === 'PrintableString') expect(subject).toContain('PRINTABLESTRING');
      else expect(subject).toContain('UTF8STRING');
      const leaf = await issueClientCertificate(byo, { identity: 'serviceuser:ci:x', friendlyName: 'x', namespace: 'ci', algorithm: 'ECDSA', notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + 86_400_000) });
      const serving = await issueServingCertificate(byo, ['localhost'], new Date());
      expect(await names(leaf.certPem, 'issuer')).toBe(subject);
      expect(await names(serving.certPem, 'issuer')).toBe(subject);
      expect((await run('openssl', ['verify', '-CAfile', crt, file(`${slug}-leaf.crt`, leaf.certPem)])).ok).toBe(true);
    });
  }
});
