// The revocation ledger on the real API server: 100,000 entries in ConfigMaps each far under
// the object limit, read back by another replica, signed into a CRL openssl reads; batches,
// concurrent replicas, the move from the single-ConfigMap format, the re-signing timer, and
// ConfigMaps edited by hand.

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RevocationLedger, ledgerLabel } from '../../src/authority/revocations.ts';
import { encodeShard, shardName, shardOf } from '../../src/authority/ledger-shard.ts';
import { Informer } from '../../src/controller/informer.ts';
import { KubeClient, type KubeObject } from '../../src/controller/kube.ts';
import { createCa, loadCa, type Ca } from '../../src/credentials/ca.ts';
import { randomSerial } from '../../src/credentials/x509.ts';
import { testLogger } from '../logs.ts';
import { eventually, kubeConfig, useNamespace, run } from '../kube.ts';

const ns = useNamespace('ledger');
const dir = mkdtempSync(path.join(tmpdir(), 'ledger-'));
let ca: Ca;
const requests: { method: string; path: string; status: number }[] = [];
const client = new KubeClient(kubeConfig(), (method, p, status) => requests.push({ method, path: p, status }));
const admin = new KubeClient(kubeConfig());
const started: RevocationLedger[] = [];
const informers: Informer[] = [];

beforeAll(async () => {
  ca = await loadCa(await createCa());
});
afterAll(async () => {
  for (const l of started) l.stop();
  for (const i of informers) await i.stop();
  client.close();
  admin.close();
});

const caFile = () => {
  const f = path.join(dir, 'ca.crt');
  writeFileSync(f, ca.certPem);
  return f;
};

/** openssl's reading of a CRL, checked against the CA: its number and its serials. */
async function readCrl(pem: string): Promise<{ number: number; serials: Set<string>; text: string }> {
  const file = path.join(dir, `crl-${Date.now()}-${Math.random()}.pem`);
  writeFileSync(file, pem);
  const r = await run('openssl', ['crl', '-in', file, '-noout', '-text', '-CAfile', caFile(), '-verify']);
  expect(r.output).toContain('verify OK');
  return {
    number: Number(/X509v3 CRL Number:\s+(\d+)/.exec(r.output)?.[1]),
    serials: new Set([...r.output.matchAll(/Serial Number: ([0-9A-F]+)/g)].map((m) => m[1]!.toLowerCase())),
    text: r.output,
  };
}

function ledger(name: string, options: { now?: () => number; ca?: Ca; log?: string[]; clockCheckMs?: number; journal?: { directAt?: number; foldAt?: number; foldIdleMs?: number }; client?: KubeClient } = {}): RevocationLedger {
  const l = new RevocationLedger({
    client: options.client ?? client, ca: options.ca ?? ca, namespace: ns.name, name, log: testLogger(options.log), ...(options.journal ? { journal: options.journal } : {}),
    ...(options.now ? { now: options.now } : {}), ...(options.clockCheckMs ? { clockCheckMs: options.clockCheckMs } : {}),
  });
  started.push(l);
  return l;
}

/** Feeds a ledger the watch the operator gives it (every replica follows the ConfigMaps). */
async function follow(l: RevocationLedger): Promise<void> {
  const informer = new Informer(client, {
    resource: { group: '', version: 'v1', plural: 'configmaps', namespaced: true },
    namespace: ns.name,
    labelSelector: 'app.kubernetes.io/component=crl,app.kubernetes.io/managed-by=service-user-operator',
  });
  informer.onChange((type, cm) => type !== 'DELETED' && l.observe(cm));
  informers.push(informer);
  informer.start();
  await informer.synced;
}

/** A replica started now reads exactly `serials` and lists every one on its CRL. */
async function readByAFreshReplica(name: string, serials: string[]): Promise<void> {
  const fresh = ledger(name);
  await fresh.start();
  expect(fresh.size).toBe(serials.length);
  const crl = (await readCrl(fresh.crlPem));
  for (const s of serials) expect(crl.serials.has(s)).toBe(true);
}

const inAWeek = () => new Date(Date.now() + 7 * 86_400_000).toISOString();
const listed = (name: string) =>
  admin.get<{ items: KubeObject[] }>(`/api/v1/namespaces/${ns.name}/configmaps?labelSelector=${encodeURIComponent(`${ledgerLabel}=${name}`)}`).then((l) => l.items);
const headOf = (name: string) => admin.get(`/api/v1/namespaces/${ns.name}/configmaps/${name}`);
const writes = (since: number, name: string) => requests.slice(since).filter((r) => r.method !== 'GET' && r.path.includes(`/configmaps`) && (r.path.endsWith('/configmaps') || r.path.includes(`/${name}`)));

describe('at 100,000 entries', () => {
  it('every ConfigMap stays far under the limit, another replica reads them all, the CRL lists them and a revocation still works', { timeout: 1_200_000 }, async () => {
    const a = ledger('big');
    await a.start();
    const serials = Array.from({ length: 100_000 }, () => randomSerial());
    // Many reconciles at once: 1,000 owners revoke 100 each, 100 owners in flight at a time.
    for (let i = 0; i < serials.length; i += 10_000) {
      await Promise.all(
        Array.from({ length: 100 }, (_, j) =>
          a.revoke(`team-${j % 7}/user-${i + j * 100}`, serials.slice(i + j * 100, i + j * 100 + 100).map((serialNumber) => ({ serialNumber, reason: 'cessationOfOperation' as const, notAfter: inAWeek() }))),
        ),
      );
    }
    expect(a.size).toBe(100_000);
    const maps = [await headOf('big'), ...(await listed('big'))];
    expect(maps).toHaveLength(65);
    const sizes = maps.map((m) => Buffer.byteLength(JSON.stringify(m)));
    // The API server refuses objects over 1 MiB; each shard stays under a quarter of that.
    expect(Math.max(...sizes)).toBeLessThan((1 << 20) / 4);
    expect(maps.every((m) => !(m.data as Record<string, string>)['ca.crl'])).toBe(true);

    // Another replica: reads all of it, writes nothing, signs the same list.
    const before = requests.length;
    const b = ledger('big');
    await b.start();
    expect(writes(before, 'big')).toEqual([]);
    expect(b.size).toBe(100_000);
    const crl = (await readCrl(b.crlPem));
    expect(crl.serials.size).toBe(100_000);
    for (const s of serials.slice(0, 1000)) expect(crl.serials.has(s)).toBe(true);

    // A revocation after that: durable, on the writer's CRL when it resolves, and on the
    // other replica's once its watch sees the head move.
    await follow(b);
    const late = randomSerial();
    await a.revoke('team-0/late', [{ serialNumber: late, reason: 'superseded', notAfter: inAWeek() }]);
    expect((await readCrl(a.crlPem)).serials.has(late)).toBe(true);
    await eventually('the new serial on the other replica’s CRL', async () => ((await readCrl(b.crlPem)).serials.has(late) ? true : undefined), 60_000);
    expect(await b.isListed(late)).toBe(true);
  });
});

describe('batching', () => {
  it('revocations made together are one write per shard they touch and one CRL; each caller resolves once durable and listed', async () => {
    const l = ledger('batch');
    await l.start();
    const before = (await readCrl(l.crlPem)).number;
    const since = requests.length;
    const serials = Array.from({ length: 300 }, () => randomSerial());
    const listedWhenResolved = await Promise.all(serials.map(async (serialNumber, i) => {
      await l.revoke(`batch/user-${i}`, [{ serialNumber, reason: 'cessationOfOperation', notAfter: inAWeek() }]);
      return l.crlPem;
    }));
    expect(writes(since, 'batch')).toHaveLength(new Set(serials.map((s) => shardOf(s, 64))).size);
    // Every caller saw the same CRL when its promise resolved: one signature, listing all 300.
    expect(new Set(listedWhenResolved).size).toBe(1);
    expect((await readCrl(l.crlPem)).number).toBeGreaterThan(before);
    const fresh = ledger('batch');
    await fresh.start();
    for (const s of serials) expect(await fresh.isListed(s)).toBe(true);
    expect((await readCrl(l.crlPem)).serials.size).toBe(300);
  });

  it('a change that changes nothing writes nothing and waits for nothing', async () => {
    const l = ledger('noop');
    await l.start();
    const serial = randomSerial();
    await l.revoke('noop/a', [{ serialNumber: serial, reason: 'superseded', notAfter: inAWeek() }]);
    const since = requests.length;
    await l.revoke('noop/a', [{ serialNumber: serial, reason: 'superseded', notAfter: inAWeek() }]);
    await l.setHolds('noop/a', []);
    await l.setHolds('noop/b', []);
    expect(requests.length).toBe(since);
  });

  it('holds: a hold is listed as certificateHold, a release drops it, a revocation replaces it', async () => {
    const l = ledger('holds');
    await l.start();
    const [held, other] = [randomSerial(), randomSerial()];
    await l.setHolds('holds/a', [{ serialNumber: held, notAfter: inAWeek() }, { serialNumber: other, notAfter: inAWeek() }]);
    expect((await readCrl(l.crlPem)).text).toContain('Certificate Hold');
    await l.setHolds('holds/a', [{ serialNumber: other, notAfter: inAWeek() }]);
    expect(await l.isListed(held)).toBe(false);
    expect((await readCrl(l.crlPem)).serials).toEqual(new Set([other]));
    await l.revoke('holds/a', [{ serialNumber: other, reason: 'cessationOfOperation', notAfter: inAWeek() }]);
    await l.setHolds('holds/a', []);
    const crl = (await readCrl(l.crlPem));
    expect(crl.serials).toEqual(new Set([other]));
    expect(crl.text).toContain('Cessation Of Operation');
    expect(crl.text).not.toContain('Certificate Hold');
  });

  it('refuses a serial that is not hexadecimal or a time that is not one, naming the field', async () => {
    const l = ledger('bad-input');
    await l.start();
    await expect(l.revoke('x/y', [{ serialNumber: 'zz', reason: 'superseded', notAfter: inAWeek() }])).rejects.toThrow('revoke(x/y): entries[0].serialNumber must be a hexadecimal certificate serial');
    await expect(l.revoke('x/y', [{ serialNumber: 'ab', reason: 'superseded', notAfter: 'soon' }])).rejects.toThrow('revoke(x/y): entries[0].notAfter must be an RFC 3339 time');
    await expect(l.revoke('x/y', [{ serialNumber: 'ab', reason: 'toString' as 'superseded', notAfter: inAWeek() }])).rejects.toThrow('revoke(x/y): entries[0].reason must be one of');
    await expect(l.setHolds('x/y', [{ serialNumber: 'ab'.repeat(21), notAfter: inAWeek() }])).rejects.toThrow('setHolds(x/y): serials[0].serialNumber must be a hexadecimal certificate serial of at most 20 octets');
  });
});

describe('the journal', () => {
  // Earlier tests' ledgers would fold their journals into this namespace meanwhile: stopped.
  beforeAll(() => {
    for (const l of started.splice(0)) l.stop();
  });
  const revokeOne = (l: RevocationLedger, owner: string, serialNumber: string) => l.revoke(owner, [{ serialNumber, reason: 'cessationOfOperation', notAfter: inAWeek() }]);
  const journalWrites = (since: number, name: string) => writes(since, name).filter((r) => r.path.endsWith(`/${name}-journal`) || (r.method === 'POST' && r.path.endsWith('/configmaps')));
  const shardsOf = async (name: string) => (await listed(name)).filter((m) => m.metadata.name !== `${name}-journal`);

  it('small batches are one journal write each, listed when they resolve, read by other replicas, and folded into their shards when it is quiet', async () => {
    const l = ledger('jrnl', { journal: { foldIdleMs: 2_000 } });
    await l.start();
    const follower = ledger('jrnl');
    await follower.start();
    await follow(follower);
    const serials = Array.from({ length: 20 }, () => randomSerial());
    const since = requests.length;
    // One after another, with nothing between them that could leave the journal quiet for 2 s.
    const crls: string[] = [];
    for (const [i, s] of serials.entries()) {
      await revokeOne(l, `j/u-${i}`, s);
      crls.push(l.crlPem);
    }
    // Twenty serials hashed into ~twenty shards would have been a shard write each: here one
    // journal write each (the first creates it), no shard.
    const whileRevoking = writes(since, 'jrnl');
    expect(l.journalSize).toBe(20);
    expect(whileRevoking, JSON.stringify(whileRevoking)).toHaveLength(20);
    expect(journalWrites(since, 'jrnl')).toHaveLength(20);
    // Each durable and on this replica's CRL when its promise resolved.
    for (const [i, s] of serials.entries()) expect((await readCrl(crls[i]!)).serials.has(s)).toBe(true);
    const fresh = ledger('jrnl');
    await fresh.start();
    expect(fresh.size).toBe(20);
    for (const s of serials) expect(await fresh.isRevoked(s)).toBe(true);
    await eventually('the other replica’s CRL lists them', async () => {
      const listed = (await readCrl(follower.crlPem)).serials;
      return serials.every((s) => listed.has(s)) ? true : undefined;
    });

    // Quiet for two seconds: folded, one write per shard touched and one for the journal.
    await eventually('the journal folded', async () => (l.journalSize === 0 ? true : undefined));
    const touched = new Set(serials.map((s) => shardOf(s, 64))).size;
    expect(writes(since, 'jrnl')).toHaveLength(20 + touched + 1);
    expect(await shardsOf('jrnl')).toHaveLength(touched);
    const afterFold = ledger('jrnl');
    await afterFold.start();
    expect(afterFold.size).toBe(20);
    expect(afterFold.journalSize).toBe(0);
    expect((await readCrl(afterFold.crlPem)).serials).toEqual(new Set(serials));
    await eventually('the other replica still lists them all', async () => (follower.journalSize === 0 && (await readCrl(follower.crlPem)).serials.size === 20 ? true : undefined));
  });

  it('is folded once it holds foldAt entries, whatever the pace', async () => {
    const l = ledger('jfold', { journal: { foldAt: 10, foldIdleMs: 3_600_000 } });
    await l.start();
    const serials = Array.from({ length: 25 }, () => randomSerial());
    for (const [i, s] of serials.entries()) await revokeOne(l, `f/u-${i}`, s);
    expect(l.journalSize).toBe(5);
    expect(l.size).toBe(25);
    const fresh = ledger('jfold');
    await fresh.start();
    expect(fresh.journalSize).toBe(5);
    for (const s of serials) expect(await fresh.isRevoked(s)).toBe(true);
  });

  it('a revocation in the journal replaces a hold in its shard, and survives the hold’s release and the fold', async () => {
    const l = ledger('jhold', { journal: { foldIdleMs: 500 } });
    await l.start();
    const serial = randomSerial();
    await l.setHolds('h/a', [{ serialNumber: serial, notAfter: inAWeek() }]);
    await revokeOne(l, 'h/a', serial);
    expect(l.journalSize).toBe(1);
    expect(await l.isRevoked(serial)).toBe(true);
    await l.setHolds('h/a', []);
    expect(await l.isRevoked(serial)).toBe(true);
    await eventually('the journal folded', async () => (l.journalSize === 0 ? true : undefined));
    const fresh = ledger('jhold');
    await fresh.start();
    const crl = (await readCrl(fresh.crlPem));
    expect(crl.serials).toEqual(new Set([serial]));
    expect(crl.text).toContain('Cessation Of Operation');
    expect(crl.text).not.toContain('Certificate Hold');
  });

  it('counts each owner’s serials once, in the journal, mid-fold and in the shards, on every replica (the per-owner CRL budget)', async () => {
    const l = ledger('jowner', { journal: { foldIdleMs: 1_000 } });
    await l.start();
    const follower = ledger('jowner');
    await follower.start();
    await follow(follower);
    const mine = Array.from({ length: 6 }, () => randomSerial());
    for (const s of mine) await revokeOne(l, 'o/churner', s);
    await revokeOne(l, 'o/quiet', randomSerial());
    // A hold is on the CRL too (written to its shard); a serial revoked twice is one entry.
    await l.setHolds('o/quiet', [{ serialNumber: randomSerial(), notAfter: inAWeek() }]);
    await revokeOne(l, 'o/churner', mine[0]!);
    expect(l.journalSize).toBe(7);
    expect(l.listedFor('o/churner')).toBe(6);
    expect(l.listedFor('o/quiet')).toBe(2);
    expect(l.listedFor('o/nobody')).toBe(0);
    expect(l.topOwners(1)).toEqual([{ owner: 'o/churner', entries: 6 }]);
    await eventually('the journal folded', async () => (l.journalSize === 0 ? true : undefined));
    expect(l.topOwners(5)).toEqual([{ owner: 'o/churner', entries: 6 }, { owner: 'o/quiet', entries: 2 }]);
    await eventually('the other replica counts the same', async () => (follower.journalSize === 0 && follower.listedFor('o/churner') === 6 && follower.listedFor('o/quiet') === 2 ? true : undefined));
    const fresh = ledger('jowner');
    await fresh.start();
    expect(fresh.topOwners(5)).toEqual([{ owner: 'o/churner', entries: 6 }, { owner: 'o/quiet', entries: 2 }]);
  });

  it('two replicas writing small batches into the journal at once lose none of each other’s entries', { timeout: 300_000 }, async () => {
    const a = ledger('jshared', { journal: { foldAt: 40, foldIdleMs: 3_600_000 } });
    const b = ledger('jshared', { journal: { foldAt: 40, foldIdleMs: 3_600_000 } });
    await a.start();
    await b.start();
    const mine = Array.from({ length: 100 }, () => randomSerial());
    const theirs = Array.from({ length: 100 }, () => randomSerial());
    // Four callers each side, one serial at a time: small batches racing for the journal (and folds).
    const revokeAll = (l: RevocationLedger, list: string[], who: string) =>
      Promise.all(Array.from({ length: 4 }, async (_, i) => {
        for (let k = i; k < list.length; k += 4) await revokeOne(l, `${who}/u-${k}`, list[k]!);
      }));
    await Promise.all([revokeAll(a, mine, 'a'), revokeAll(b, theirs, 'b')]);
    expect(requests.some((r) => r.status === 409 && r.path.endsWith('/configmaps/jshared-journal'))).toBe(true);
    await readByAFreshReplica('jshared', [...mine, ...theirs]);
  });

  it('a journal edited by hand to hold a hold is refused at start, naming it; a running replica keeps what it had', async () => {
    const log: string[] = [];
    const a = ledger('jedited', { log, journal: { foldIdleMs: 3_600_000 } });
    await a.start();
    await follow(a);
    const serial = randomSerial();
    await revokeOne(a, 'e/a', serial);
    const journal = await admin.get(`/api/v1/namespaces/${ns.name}/configmaps/jedited-journal`);
    const hold = encodeShard([{ serialNumber: serial, reason: 'certificateHold', notAfter: inAWeek(), revokedAt: new Date().toISOString(), owner: 'e/a', identity: 'serviceuser:e:a' }]);
    await admin.request('PUT', `/api/v1/namespaces/${ns.name}/configmaps/jedited-journal`, { ...journal, binaryData: { 'revocations.tsv.gz': hold.toString('base64') } });
    await eventually('the running replica’s complaint', async () => (log.some((l) => l.includes('revocation ledger journal cannot be read')) ? true : undefined));
    expect(await a.isRevoked(serial)).toBe(true);
    await expect(ledger('jedited').start()).rejects.toThrow(`revocation ledger journal ConfigMap ${ns.name}/jedited-journal: serial ${serial} is a certificateHold; the journal holds revocations only`);
  });
});

describe('replicas', () => {
  it('two replicas revoking into the same shards at once lose none of each other’s entries', { timeout: 300_000 }, async () => {
    const a = ledger('shared');
    const b = ledger('shared');
    await a.start();
    await b.start();
    const mine = Array.from({ length: 600 }, () => randomSerial());
    const theirs = Array.from({ length: 600 }, () => randomSerial());
    const revokeAll = (l: RevocationLedger, list: string[], who: string) =>
      Promise.all(Array.from({ length: 12 }, (_, i) => l.revoke(`${who}/u-${i}`, list.slice(i * 50, i * 50 + 50).map((serialNumber) => ({ serialNumber, reason: 'superseded' as const, notAfter: inAWeek() })))));
    // Several rounds, so that the two batch streams interleave.
    for (let round = 0; round < 3; round++) {
      await Promise.all([revokeAll(a, mine.slice(round * 200, round * 200 + 200), 'a'), revokeAll(b, theirs.slice(round * 200, round * 200 + 200), 'b')]);
    }
    expect(requests.some((r) => r.status === 409 && r.path.includes('/configmaps/shared'))).toBe(true);
    await readByAFreshReplica('shared', [...mine, ...theirs]);
  });
});

describe('the single-ConfigMap format', () => {
  it('is moved into shards on start, its CRL numbers rising past the old ones and expired entries dropped', async () => {
    const old = (serialNumber: string, reason: string, notAfter: string, owner = 'legacy/u') => ({ serialNumber, reason, notAfter, owner, revokedAt: '2026-01-01T00:00:00.000Z', identity: 'x' });
    const [revoked, held, gone] = [randomSerial(), randomSerial(), randomSerial()];
    await admin.request('POST', `/api/v1/namespaces/${ns.name}/configmaps`, {
      apiVersion: 'v1', kind: 'ConfigMap',
      metadata: { name: 'legacy', labels: { 'app.kubernetes.io/managed-by': 'service-user-operator', 'app.kubernetes.io/component': 'crl' } },
      data: {
        'revocations.json': JSON.stringify([old(revoked, 'cessationOfOperation', inAWeek()), old(held, 'certificateHold', inAWeek()), old(gone, 'superseded', '2020-01-01T00:00:00Z')]),
        'ca.crl': '-----BEGIN X509 CRL-----\nold\n-----END X509 CRL-----\n', 'crl-number': '41', 'next-update': inAWeek(),
      },
    });
    const l = ledger('legacy');
    await l.start();
    const head = await headOf('legacy');
    expect(Object.keys(head.data as object).sort()).toEqual(['crl', 'shards']);
    expect(await l.isListed(revoked)).toBe(true);
    expect(await l.isListed(held)).toBe(true);
    expect(await l.isListed(gone)).toBe(false);
    const crl = (await readCrl(l.crlPem));
    // CRL numbers keep rising past the old format's.
    expect(crl.number).toBeGreaterThan(41);
    expect(crl.serials).toEqual(new Set([revoked, held]));
    // The hold is still the owner's: releasing it works after the move.
    await l.setHolds('legacy/u', []);
    expect(await l.isListed(held)).toBe(false);
  });

  it('written again by an older replica during an upgrade, is moved again, losing nothing', async () => {
    const l = ledger('upgrade');
    await l.start();
    await follow(l);
    const first = randomSerial();
    await l.revoke('up/a', [{ serialNumber: first, reason: 'superseded', notAfter: inAWeek() }]);
    // What the older version does: its whole list (it sees none in the new head) in revocations.json.
    const straggler = randomSerial();
    const head = await headOf('upgrade');
    await admin.request('PUT', `/api/v1/namespaces/${ns.name}/configmaps/upgrade`, {
      ...head, data: { ...(head.data as object), 'revocations.json': JSON.stringify([{ serialNumber: straggler, reason: 'superseded', notAfter: inAWeek(), owner: 'up/b', revokedAt: new Date().toISOString(), identity: 'x' }]) },
    });
    await eventually('the straggler moved into a shard', async () => ((await l.isListed(straggler)) && !('revocations.json' in ((await headOf('upgrade')).data as object)) ? true : undefined));
    expect(await l.isListed(first)).toBe(true);
    expect((await readCrl(l.crlPem)).serials).toEqual(new Set([first, straggler]));
  });
});

describe('the CRL’s lifetime', () => {
  it('is re-signed a day before nextUpdate, with a higher number, even when the clock jumps (a suspended host)', async () => {
    const clock = { offset: 0 };
    // Its own client: the file's other ledgers (still running, folding their journals) write
    // through the shared one meanwhile, and a POST's path does not say which ledger it is for.
    const own: { method: string }[] = [];
    const ownClient = new KubeClient(kubeConfig(), (method) => own.push({ method }));
    const l = ledger('timer', { now: () => Date.now() + clock.offset, clockCheckMs: 500, client: ownClient });
    await l.start();
    const first = (await readCrl(l.crlPem));
    const since = own.length;
    // Six days and a minute later by the wall clock, nothing having changed.
    clock.offset = 6 * 86_400_000 + 60_000;
    const again = await eventually('the re-signed CRL', async () => {
      const crl = (await readCrl(l.crlPem));
      return crl.number > first.number ? crl : undefined;
    });
    expect(again.serials).toEqual(first.serials);
    // Signed at the jumped time: thisUpdate is now by the wall clock.
    expect(Math.abs(Date.parse(/Last Update: (.*)/.exec(again.text)![1]!) - (Date.now() + clock.offset))).toBeLessThan(60_000);
    // Re-signing writes nothing: the CRL is not stored.
    expect(own.slice(since).filter((r) => r.method !== 'GET')).toEqual([]);
    l.stop();
    ownClient.close();
  });

  it('a replica started with another CA signs with its own CA, never serving the old one', async () => {
    const a = ledger('rotated');
    await a.start();
    const serial = randomSerial();
    await a.revoke('r/a', [{ serialNumber: serial, reason: 'superseded', notAfter: inAWeek() }]);
    const other = await loadCa(await createCa({ commonName: 'replacement CA' }));
    const b = ledger('rotated', { ca: other });
    await b.start();
    const file = path.join(dir, 'rotated.pem');
    writeFileSync(file, b.crlPem);
    const otherCa = path.join(dir, 'other-ca.crt');
    writeFileSync(otherCa, other.certPem);
    expect((await run('openssl', ['crl', '-in', file, '-noout', '-CAfile', otherCa, '-verify'])).output).toContain('verify OK');
    expect((await run('openssl', ['crl', '-in', file, '-noout', '-text'])).output).toContain(serial.toUpperCase());
  });
});

describe('ConfigMaps edited by hand', () => {
  it('a shard that cannot be read stops a start, naming the ConfigMap and the line; a running replica keeps what it had', async () => {
    const log: string[] = [];
    // Every batch straight to its shards: these are about the shards.
    const a = ledger('edited', { log, journal: { directAt: 0 } });
    await a.start();
    await follow(a);
    const serial = randomSerial();
    await a.revoke('e/a', [{ serialNumber: serial, reason: 'superseded', notAfter: inAWeek() }]);
    const shard = (await listed('edited'))[0]!;
    await admin.request('PUT', `/api/v1/namespaces/${ns.name}/configmaps/${shard.metadata.name}`, { ...shard, binaryData: { 'revocations.tsv.gz': Buffer.from('not gzip').toString('base64') } });
    await eventually('the running replica’s complaint', async () => (log.some((l) => l.includes('revocation ledger shard cannot be read')) ? true : undefined));
    expect(await a.isListed(serial)).toBe(true);
    await expect(ledger('edited').start()).rejects.toThrow(`revocation ledger shard ConfigMap ${ns.name}/${shard.metadata.name}: revocations.tsv.gz is not gzip data`);
  });

  it('a shard holding a serial that belongs in another shard is refused', async () => {
    const a = ledger('misplaced', { journal: { directAt: 0 } });
    await a.start();
    const serial = randomSerial();
    await a.revoke('m/a', [{ serialNumber: serial, reason: 'superseded', notAfter: inAWeek() }]);
    const shard = (await listed('misplaced'))[0]!;
    const index = parseInt(shard.metadata.name.slice(-2), 16);
    const wrong = shardName('misplaced', (index + 1) % 64);
    await admin.request('POST', `/api/v1/namespaces/${ns.name}/configmaps`, { ...shard, metadata: { name: wrong, labels: shard.metadata.labels } });
    await expect(ledger('misplaced').start()).rejects.toThrow(`revocation ledger shard ConfigMap ${ns.name}/${wrong}: serial ${serial} belongs in shard ${shard.metadata.name}`);
  });

  it('a deleted shard is written again from what the replica knows', async () => {
    const a = ledger('deleted', { journal: { directAt: 0 } });
    await a.start();
    const [one, two] = [randomSerial(), randomSerial()];
    await a.revoke('d/a', [{ serialNumber: one, reason: 'superseded', notAfter: inAWeek() }]);
    const shard = (await listed('deleted'))[0]!;
    await admin.request('DELETE', `/api/v1/namespaces/${ns.name}/configmaps/${shard.metadata.name}`);
    // A serial for the same shard.
    let same = two;
    while (shardName('deleted', shardOf(same, 64)) !== shard.metadata.name) same = randomSerial();
    await a.revoke('d/a', [{ serialNumber: same, reason: 'superseded', notAfter: inAWeek() }]);
    const fresh = ledger('deleted');
    await fresh.start();
    expect(await fresh.isListed(one)).toBe(true);
    expect(await fresh.isListed(same)).toBe(true);
  });
});
