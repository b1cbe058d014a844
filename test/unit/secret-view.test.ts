// The one view of a user's Secret (secret-view.ts), against a metadata cache the test moves
// and a client that records every read: which source answers, and when the Secret is read
// live. What a real API server shows end to end is in test/integration/own-writes.test.ts.
import { describe, expect, it } from 'vitest';
import type { InformerSet } from '../../src/controller/informer.ts';
import type { SecretEntry } from '../../src/api/stores.ts';
import type { KubeObject } from '../../src/controller/kube.ts';
import { FirstList } from '../../src/controller/first-list.ts';
import { SecretView } from '../../src/serviceuser/secret-view.ts';

const b64 = (s: string) => Buffer.from(s).toString('base64');
const secret = (resourceVersion: string, data: Record<string, string> = { token: b64('live') }): KubeObject => ({
  apiVersion: 'v1',
  kind: 'Secret',
  metadata: { name: 'ci-credentials', namespace: 'team', resourceVersion, uid: 's-1', labels: { 'serviceusers.dev/name': 'ci' }, ownerReferences: [{ apiVersion: 'serviceusers.dev/v1alpha1', kind: 'ServiceUser', name: 'ci', uid: 'uid-1' }] },
  data,
});
const metadataOnly = (s: KubeObject): KubeObject => ({ ...s, data: undefined });

/** A metadata cache the test moves, its watch events, and a client recording live reads. */
async function world() {
  const cached = new Map<string, KubeObject>();
  const handlers: ((type: 'ADDED' | 'MODIFIED' | 'DELETED', obj: KubeObject) => void)[] = [];
  const secrets = { get: (k: string) => cached.get(k), onChange: (h: (typeof handlers)[number]) => handlers.push(h), synced: Promise.resolve() } as unknown as InformerSet<SecretEntry>;
  const reads: string[] = [];
  let live: KubeObject | undefined = secret('10');
  const client = { get: (path: string) => (reads.push(path), live ? Promise.resolve(live) : Promise.reject(Object.assign(new Error('not found'), { status: 404 }))) };
  const listed = new FirstList();
  const view = new SecretView({ client: client as never, secrets, listedSecrets: listed });
  await Promise.resolve(); // the cache's synced promise
  const show = (type: 'ADDED' | 'MODIFIED' | 'DELETED', s: KubeObject) => {
    if (type === 'DELETED') cached.delete('team/ci-credentials');
    else cached.set('team/ci-credentials', metadataOnly(s));
    for (const h of handlers) h(type, metadataOnly(s));
  };
  const setLive = (s: KubeObject | undefined) => (live = s);
  return { view, reads, show, setLive, listed };
}

const query = { key: 'team/ci', namespace: 'team', name: 'ci-credentials', expiring: false, heldByOthers: false };

describe('the Secret view', () => {
  it('a new user\'s Secret, absent from the synced cache, is not read', async () => {
    const w = await world();
    expect(await w.view.current(query)).toBeUndefined();
    expect(w.reads).toEqual([]);
  });

  it('passes woken by our own write use what it returned, until someone else changes the Secret', async () => {
    const w = await world();
    const ours = secret('11', { token: b64('ours') });
    w.view.wrote('team/ci', ours);
    w.show('ADDED', ours);
    expect((await w.view.current(query))?.data.token).toBe('ours');
    expect(w.reads).toEqual([]);
    // Someone edits it: the watch's other version drops ours, and the next pass reads live.
    w.show('MODIFIED', secret('12'));
    w.setLive(secret('12', { token: b64('edited') }));
    expect((await w.view.current(query))?.data.token).toBe('edited');
    expect(w.reads).toEqual(['/api/v1/namespaces/team/secrets/ci-credentials']);
  });

  it('lets go of our write once a pass wrote nothing after the watch showed it', async () => {
    const w = await world();
    const ours = secret('11', { token: b64('ours') });
    w.view.wrote('team/ci', ours);
    w.view.settled('team/ci'); // not yet seen by the watch: kept
    w.show('MODIFIED', ours);
    expect((await w.view.current(query))?.data.token).toBe('ours');
    w.view.settled('team/ci');
    w.setLive(secret('11', { token: b64('ours, read') }));
    expect((await w.view.current(query))?.data.token).toBe('ours, read');
    expect(w.reads).toHaveLength(1);
  });

  it('after a restart, the first list\'s data answers at the version the cache shows, and no other', async () => {
    const w = await world();
    const listed = secret('20', { token: b64('listed') });
    w.listed.offer(listed);
    w.listed.synced();
    w.show('ADDED', listed);
    expect((await w.view.current(query))?.data.token).toBe('listed');
    w.show('MODIFIED', secret('21'));
    w.setLive(secret('21', { token: b64('newer') }));
    expect((await w.view.current(query))?.data.token).toBe('newer');
    expect(w.reads).toHaveLength(1);
  });

  it('an expiring user\'s Secret still at our last write is known by digest, not read', async () => {
    const w = await world();
    const ours = secret('30', { token: b64('ours') });
    w.view.wrote('team/ci', ours);
    w.show('MODIFIED', ours);
    w.view.settled('team/ci');
    const seen = await w.view.current({ ...query, expiring: true });
    expect(seen).toMatchObject({ rawDigest: expect.any(String), data: {} });
    expect(w.reads).toEqual([]);
    // Not expiring: the data is needed, so it is read.
    await w.view.current(query);
    expect(w.reads).toHaveLength(1);
  });

  it('a name a POST found taken is read live until our write succeeds', async () => {
    const w = await world();
    w.view.taken('team/ci');
    w.setLive(secret('40', { token: b64('theirs') }));
    expect((await w.view.current(query))?.data.token).toBe('theirs');
    expect(w.reads).toHaveLength(1);
    w.view.wrote('team/ci', secret('41'));
    w.view.deleting('team/ci');
    expect(await w.view.current(query)).toBeUndefined();
    expect(w.reads).toHaveLength(1);
  });
});
