// The revocation ledger's parts that need no API server: which shard a serial lands in, the
// compact form of a shard (and what a hand-edited one is refused with), and the CRL at
// 100,000 entries — DER built here, read by openssl and by @peculiar/x509 (PKI.js's kin).

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { beforeAll, describe, expect, it } from 'vitest';
import { decodeShard, defaultShardCount, encodeShard, identityOf, maxShardBytes, shardName, shardOf, type LedgerEntry } from '../../src/authority/ledger-shard.ts';
import { createCa, loadCa, type Ca } from '../../src/credentials/ca.ts';
import { issueClientCertificate } from '../../src/credentials/certificate.ts';
import { buildCrl, buildCrlDer, reasonCodes, type RevocationReason } from '../../src/credentials/crl.ts';
import { generateKeys, privateKeyPem, randomSerial, signingParams, x509, type KeyAlgorithm } from '../../src/credentials/x509.ts';
import { run } from '../kube.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'ledger-'));
const file = (name: string, content: string | Buffer) => {
  const p = path.join(dir, name);
  writeFileSync(p, content);
  return p;
};
const reasons: RevocationReason[] = ['superseded', 'cessationOfOperation', 'certificateHold', 'keyCompromise', 'unspecified'];
function entries(n: number, now = Date.now()): LedgerEntry[] {
  return Array.from({ length: n }, (_, i) => {
    const owner = `team-${i % 97}/service-user-${i}`;
    return {
      serialNumber: randomSerial(),
      reason: reasons[i % reasons.length]!,
      revokedAt: new Date(now - (i % 1000) * 1000).toISOString(),
      notAfter: new Date(now + 90 * 86_400_000).toISOString(),
      owner,
      identity: identityOf(owner),
    };
  });
}

describe('sharding', () => {
  it('puts a serial in one shard, whatever its case, and spreads 100,000 serials evenly over 64 shards', { timeout: 60_000 }, () => {
    const serial = randomSerial();
    expect(shardOf(serial, 64)).toBe(shardOf(serial.toUpperCase(), 64));
    expect(shardName('service-user-operator-crl', 7)).toBe('service-user-operator-crl-07');
    expect(shardName('service-user-operator-crl', 63)).toBe('service-user-operator-crl-3f');
    const counts = new Array<number>(defaultShardCount).fill(0);
    for (let i = 0; i < 100_000; i++) counts[shardOf(randomSerial(), defaultShardCount)]!++;
    const mean = 100_000 / defaultShardCount;
    expect(Math.min(...counts)).toBeGreaterThan(mean * 0.85);
    expect(Math.max(...counts)).toBeLessThan(mean * 1.15);
  });
});

describe('a shard’s encoding', () => {
  it('round-trips every field, and equal shards encode equally whatever their order', () => {
    const list = entries(500);
    const decoded = decodeShard(encodeShard(list), 'shard');
    const bySerial = (a: LedgerEntry, b: LedgerEntry) => (a.serialNumber < b.serialNumber ? -1 : 1);
    expect(decoded).toEqual([...list].sort(bySerial));
    expect(encodeShard([...list].reverse()).equals(encodeShard(list))).toBe(true);
    expect(decodeShard(encodeShard([]), 'shard')).toEqual([]);
  });

  it('holds 100,000 entries in 64 shards, each far under the 1 MiB object limit', { timeout: 60_000 }, () => {
    const all = entries(100_000);
    const shards = Array.from({ length: defaultShardCount }, () => [] as LedgerEntry[]);
    for (const e of all) shards[shardOf(e.serialNumber, defaultShardCount)]!.push(e);
    const sizes = shards.map((s) => Buffer.byteLength(encodeShard(s).toString('base64')));
    // base64 in binaryData, as the API server stores it: under a quarter of the limit each.
    expect(Math.max(...sizes)).toBeLessThan((1 << 20) / 4);
    expect(Math.max(...sizes)).toBeLessThan(maxShardBytes);
    // ~40 bytes an entry in base64: the 16 random serial octets, the rest compresses.
    expect(sizes.reduce((a, b) => a + b, 0) / all.length).toBeLessThan(60);
  });

  const bad = (lines: string[]) => gzipSync(`${['serviceusers.dev/revocations v1', ...lines].join('\n')}\n`);
  const good = ['4a', 'superseded', '1700000000000', '1800000000000', 'ns/name'];
  const refused: [string, Buffer, string][] = [
    ['not gzip', Buffer.from('serial\treason'), 'revocations.tsv.gz is not gzip data'],
    ['a foreign header', gzipSync('revocations v9\n'), 'revocations.tsv.gz must begin with the line "serviceusers.dev/revocations v1", not "revocations v9"'],
    ['a missing field', bad([good.slice(0, 4).join('\t')]), 'line 2: expected 5 tab-separated fields'],
    ['an extra field', bad([[...good, 'x'].join('\t')]), 'line 2: expected 5 tab-separated fields'],
    ['an uppercase serial', bad([['4A', ...good.slice(1)].join('\t')]), 'line 2: serialNumber must be lowercase hexadecimal'],
    ['a 21-octet serial', bad([['ab'.repeat(21), ...good.slice(1)].join('\t')]), 'line 2: serialNumber must be lowercase hexadecimal, at most 20 octets'],
    ['an unknown reason', bad([['4a', 'toString', ...good.slice(2)].join('\t')]), 'line 2: reason must be one of'],
    ['a date instead of milliseconds', bad([['4a', 'superseded', '2026-01-01', ...good.slice(3)].join('\t')]), 'line 2: revokedAt must be milliseconds'],
    ['a bad notAfter', bad([['4a', 'superseded', good[2], '-1', good[4]].join('\t')]), 'line 2: notAfter must be milliseconds'],
    ['an owner without a namespace', bad([[...good.slice(0, 4), 'name'].join('\t')]), 'line 2: owner must be namespace/name'],
    ['an owner with a newline smuggled in', bad([[...good.slice(0, 4), 'ns/a b'].join('\t')]), 'line 2: owner must be namespace/name'],
  ];
  for (const [what, data, message] of refused) {
    it(`refuses a hand-edited shard with ${what}, naming the line and field`, () => {
      expect(() => decodeShard(data, 'ConfigMap ops/crl-07')).toThrow(`ConfigMap ops/crl-07: ${message.startsWith('line') ? `revocations.tsv.gz ${message}` : message}`);
    });
  }
});

/** A self-signed CA of any algorithm the CA Secret may hold (a user can bring their own). */
async function caOf(algorithm: KeyAlgorithm, size?: number): Promise<Ca> {
  const keys = await generateKeys(algorithm, size);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(), name: `CN=${algorithm}${size ?? ''} test CA`, notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + 86_400_000),
    signingAlgorithm: signingParams(keys.privateKey), keys,
    extensions: [new x509.BasicConstraintsExtension(true, 0, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true), await x509.SubjectKeyIdentifierExtension.create(keys.publicKey)],
  });
  return loadCa({ certPem: cert.toString('pem'), keyPem: await privateKeyPem(keys.privateKey) });
}

describe('the CRL', () => {
  let ca: Ca;
  beforeAll(async () => {
    ca = await loadCa(await createCa());
  });

  it('lists 100,000 entries that openssl reads and verifies, as PEM and as DER', { timeout: 120_000 }, async () => {
    const all = entries(100_000);
    const crl = await buildCrl(ca, all, { number: 123_456, now: new Date(), validity: 7 * 86_400_000 });
    const caFile = file('big-ca.crt', ca.certPem);
    const text = await run('openssl', ['crl', '-in', file('big.crl', crl), '-noout', '-text', '-CAfile', caFile, '-verify']);
    expect(text.output).toContain('verify OK');
    expect(text.output.match(/Serial Number: /g)).toHaveLength(100_000);
    expect(text.output).toMatch(/X509v3 CRL Number:\s+123456/);
    const sample = all[31_337]!;
    expect(text.output).toContain(`Serial Number: ${sample.serialNumber.toUpperCase()}`);
    const der = await buildCrlDer(ca, all, { number: 2, now: new Date(), validity: 3_600_000 });
    expect(await run('openssl', ['crl', '-inform', 'DER', '-in', file('big.der', der), '-noout', '-CAfile', caFile, '-verify'])).toMatchObject({ ok: true });
  });

  it('lists 10,000 entries that @peculiar/x509 reads and verifies', { timeout: 120_000 }, async () => {
    // A second reader beside openssl: the X.509 library's own CRL parser (not the DER helpers that wrote it).
    const all = entries(10_000);
    const der = await buildCrlDer(ca, all, { number: 9, now: new Date(), validity: 3_600_000 });
    // asn1js stops at 10,000 nodes by default; a CRL has several per entry.
    const parsed = new x509.X509Crl(new Uint8Array(der), { berOptions: { maxNodes: 1_000_000 } });
    expect(parsed.entries).toHaveLength(10_000);
    const sample = all[1_337]!;
    const found = parsed.findRevoked(sample.serialNumber);
    expect(found?.revocationDate.toISOString()).toBe(new Date(Math.floor(Date.parse(sample.revokedAt) / 1000) * 1000).toISOString());
    expect(found?.reason).toBe(reasonCodes[sample.reason]); // certificateHold: 1,337 is 2 mod 5
    expect(await parsed.verify({ publicKey: ca.certificate })).toBe(true);
  });

  it('encodes serials with the top bit set, with leading zeros, and dates after 2049 as openssl expects', async () => {
    const leaf = await issueClientCertificate(ca, { identity: 'serviceuser:ci:x', friendlyName: 'x', namespace: 'ci', algorithm: 'ECDSA', notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + 86_400_000) });
    const at = (serialNumber: string, revokedAt: string): LedgerEntry => ({ serialNumber, revokedAt, reason: 'superseded', notAfter: '2100-01-01T00:00:00Z', owner: 'a/b', identity: 'serviceuser:a:b' });
    const crl = file('edges.crl', await buildCrl(ca, [at('ff', '2026-01-02T03:04:05Z'), at('0001', '2051-06-07T08:09:10Z'), at(leaf.serialNumber, '2049-12-31T23:59:59Z')], { number: 255, now: new Date(), validity: 3_600_000 }));
    const text = (await run('openssl', ['crl', '-in', crl, '-noout', '-text'])).output;
    expect(text).toMatch(/Serial Number: FF\s+Revocation Date: Jan {2}2 03:04:05 2026 GMT/);
    expect(text).toMatch(/Serial Number: 01\s+Revocation Date: Jun {2}7 08:09:10 2051 GMT/);
    expect(text).toMatch(/X509v3 CRL Number:\s+255/);
    // The issued certificate is refused by openssl verify -crl_check with this CRL.
    expect((await run('openssl', ['verify', '-crl_check', '-CAfile', file('edges-ca.crt', ca.certPem), '-CRLfile', crl, file('edges-leaf.crt', leaf.certPem)])).output).toContain('certificate revoked');
  });

  it('refuses an entry whose serial is not hexadecimal, naming whose it is', async () => {
    await expect(buildCrl(ca, [{ serialNumber: '12; rm -rf', revokedAt: new Date().toISOString(), reason: 'superseded', notAfter: new Date().toISOString(), identity: 'serviceuser:a:b' }], { number: 1, now: new Date(), validity: 1000 }))
      .rejects.toThrow('revocation of serviceuser:a:b: serialNumber must be hexadecimal');
  });

  for (const [algorithm, size] of [['ECDSA', 384], ['ECDSA', 521], ['RSA', 2048], ['Ed25519', undefined]] as const) {
    it(`is signed so that openssl verifies it with a ${algorithm}${size ? ` ${size}` : ''} CA`, async () => {
      const other = await caOf(algorithm, size);
      const crl = file(`${algorithm}${size ?? ''}.crl`, await buildCrl(other, entries(3), { number: 1, now: new Date(), validity: 3_600_000 }));
      const out = (await run('openssl', ['crl', '-in', crl, '-noout', '-text', '-CAfile', file(`${algorithm}${size ?? ''}.crt`, other.certPem), '-verify'])).output;
      expect(out).toContain('verify OK');
      expect(out.match(/Serial Number: /g)).toHaveLength(3);
    });
  }
});
