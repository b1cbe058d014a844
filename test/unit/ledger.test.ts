// The ledger's MACs and the verification directory's indexes, without a cluster.
import { describe, expect, it } from 'vitest';
import { canonical, keyRingData, macOf, macValid, newLedgerKey, parseKeyRing, type KeyRing } from '../../src/credentials/mac.ts';
import { issueToken } from '../../src/credentials/token.ts';
import { Directory } from '../../src/verify/directory.ts';
import { certificateCaller, verifyPresented } from '../../src/verify/answers.ts';
import { sealOf, signToken } from '../../src/authority/ledger-macs.ts';
import { tokenWithId } from '../forge.ts';

const k1 = newLedgerKey('k1');
const ring: KeyRing = { current: k1, keys: [k1] };
const now = Date.parse('2027-01-01T00:00:00Z');

describe('MACs', () => {
  it('bind the purpose, the uid and every field; the encoding ignores key order', () => {
    const mac = macOf(ring, 'token-record', 'uid-1', { a: 1, b: 'x' });
    expect(macValid(ring, 'token-record', 'uid-1', { b: 'x', a: 1 }, mac)).toBe(true);
    expect(macValid(ring, 'token-record', 'uid-2', { a: 1, b: 'x' }, mac)).toBe(false);
    expect(macValid(ring, 'secret-token', 'uid-1', { a: 1, b: 'x' }, mac)).toBe(false);
    expect(macValid(ring, 'token-record', 'uid-1', { a: 1, b: 'y' }, mac)).toBe(false);
    expect(macValid(ring, 'token-record', 'uid-1', { a: 1, b: 'x', c: 2 }, mac)).toBe(false);
    expect(macValid(ring, 'token-record', 'uid-1', { a: 1, b: 'x' }, undefined)).toBe(false);
    expect(macValid(undefined, 'token-record', 'uid-1', { a: 1, b: 'x' }, mac)).toBe(false);
    expect(canonical({ b: 1, a: undefined, c: { z: 1, y: 2 } })).toBe('{"b":1,"c":{"y":2,"z":1}}');
  });

  it('any listed key verifies; an unknown key id or a key removed does not', () => {
    const k2 = newLedgerKey('k2');
    const old = macOf(ring, 'status-seal', 'u', {});
    expect(macValid({ current: k2, keys: [k2, k1] }, 'status-seal', 'u', {}, old)).toBe(true);
    expect(macValid({ current: k2, keys: [k2] }, 'status-seal', 'u', {}, old)).toBe(false);
    // Same id, another secret (a key re-created under the old name): refused.
    expect(macValid({ current: newLedgerKey('k1'), keys: [newLedgerKey('k1')] }, 'status-seal', 'u', {}, old)).toBe(false);
  });

  it('key Secrets: parsed back, and each problem names the entry', () => {
    const data = keyRingData(ring);
    expect(parseKeyRing(data).current.id).toBe('k1');
    expect(() => parseKeyRing({})).toThrow(/no key: add an entry key\.<id>/);
    expect(() => parseKeyRing({ ...data, current: Buffer.from('k9') })).toThrow(/current: names key k9, but there is no entry key\.k9/);
    expect(() => parseKeyRing({ ...data, 'key.k2': Buffer.from('short') })).toThrow(/key\.k2: a key must be at least 32 bytes/);
    expect(() => parseKeyRing({ ...data, 'key.K_2': Buffer.alloc(32) })).toThrow(/key\.K_2: a key id must be/);
    const { current: _, ...noCurrent } = data;
    expect(() => parseKeyRing(noCurrent)).toThrow(/current: must name the key/);
  });
});

function serviceUserObject(ns: string, name: string, uid: string, tokens: object[], extra: Record<string, unknown> = {}) {
  return {
    apiVersion: 'serviceusers.dev/v1alpha1',
    kind: 'ServiceUser',
    metadata: { name, namespace: ns, uid },
    spec: { email: 'ops@example.com', accounts: ['acme'] },
    status: { tokens, ...extra },
  };
}

describe('the verification directory', () => {
  it('honours only MACed records, and permissions only under a valid seal', () => {
    const directory = new Directory({ ring });
    const token = issueToken();
    const record = { id: token.id, sha256: token.sha256, createdAt: '2027-01-01T00:00:00Z', state: 'Active' as const };
    const permissions = [{ account: 'acme', manager: 'm', permission: 'verification:introspect' }];
    directory.observe('ADDED', serviceUserObject('a', 'forged', 'uid-a', [record], { permissions }));
    expect(verifyPresented(directory, token.token, now).verdict).toEqual({ active: false, reason: 'unknown token' });
    directory.observe('MODIFIED', serviceUserObject('a', 'forged', 'uid-a', [signToken(ring, 'uid-a', record)], { permissions }));
    const found = verifyPresented(directory, token.token, now);
    expect(found.verdict.active).toBe(true);
    expect(found.su!.status!.permissions).toEqual([]);
    directory.observe('MODIFIED', serviceUserObject('a', 'forged', 'uid-a', [signToken(ring, 'uid-a', record)], { permissions, seal: sealOf(ring, 'uid-a', { permissions }) }));
    expect(verifyPresented(directory, token.token, now).su!.status!.permissions).toEqual(permissions);
  });

  it('a second record of the same token id in another namespace does not shadow the first (attack 6)', () => {
    const directory = new Directory({ ring });
    const victim = issueToken();
    const record = (t: { id: string; sha256: string }) => ({ id: t.id, sha256: t.sha256, createdAt: '2027-01-01T00:00:00Z', state: 'Active' as const });
    directory.observe('ADDED', serviceUserObject('victims', 'v', 'uid-v', [signToken(ring, 'uid-v', record(victim))]));
    const planted = tokenWithId(victim.id);
    // Even a record the operator MACed (say, one it was tricked into making) cannot shadow.
    directory.observe('ADDED', serviceUserObject('tenant', 't', 'uid-t', [signToken(ring, 'uid-t', record(planted))]));
    expect(verifyPresented(directory, victim.token, now)).toMatchObject({ verdict: { active: true }, su: { metadata: { namespace: 'victims' } } });
    expect(verifyPresented(directory, planted.token, now)).toMatchObject({ verdict: { active: true }, su: { metadata: { namespace: 'tenant' } } });
    directory.observe('DELETED', serviceUserObject('tenant', 't', 'uid-t', []));
    expect(verifyPresented(directory, victim.token, now).verdict.active).toBe(true);
  });

  it('a copied serial: looked up by issuer, and matched by the identity the certificate names', () => {
    const directory = new Directory({ ring });
    // Sealed, as if the operator had recorded each: even then a serial does not shadow.
    const cert = (uid: string, issuer: string) => {
      const status = { certificate: { serialNumber: 'ab01', notBefore: 'x', notAfter: 'y', issuer } };
      return { ...status, seal: sealOf(ring, uid, status) };
    };
    directory.observe('ADDED', serviceUserObject('victims', 'v', 'uid-v', [], cert('uid-v', 'CN=built-in')));
    directory.observe('ADDED', serviceUserObject('tenant', 't', 'uid-t', [], cert('uid-t', 'CN=built-in')));
    directory.observe('ADDED', serviceUserObject('tenant', 'u', 'uid-u', [], cert('uid-u', 'CN=tenant-ca')));
    // Unsealed (written through the status subresource): not indexed at all.
    directory.observe('ADDED', serviceUserObject('tenant', 'w', 'uid-w', [], { certificate: { serialNumber: 'ab01', notBefore: 'x', notAfter: 'y', issuer: 'CN=built-in' } }));
    expect(directory.bySerialNumber('CN=built-in', 'ab01').map((su) => su.metadata.name).sort()).toEqual(['t', 'v']);
    expect(certificateCaller(directory, { serialNumber: 'AB01', issuer: 'CN=built-in', identity: 'serviceuser:victims:v' }, now)).toMatchObject({ reason: 'ok', su: { metadata: { name: 'v' } } });
    expect(certificateCaller(directory, { serialNumber: 'ab01', issuer: 'CN=built-in', identity: 'serviceuser:tenant:u' }, now)).toEqual({ reason: 'unknown service user' });
  });

  it('judges again when the key changes', () => {
    const trust: { ring: KeyRing | undefined } = { ring: undefined };
    const directory = new Directory(trust);
    const token = issueToken();
    const raw = serviceUserObject('a', 'x', 'uid-x', [signToken(ring, 'uid-x', { id: token.id, sha256: token.sha256, createdAt: '2027-01-01T00:00:00Z', state: 'Active' })]);
    directory.observe('ADDED', raw);
    expect(verifyPresented(directory, token.token, now).verdict.active).toBe(false);
    trust.ring = ring;
    directory.rejudge([raw]);
    expect(verifyPresented(directory, token.token, now).verdict.active).toBe(true);
  });
});
