// A reconcile's view of its own writes: the cache's object unless our later write has not
// reached it yet.
import { describe, expect, it } from 'vitest';
import { OwnWrites, compareResourceVersion } from '../../src/controller/expectations.ts';
import type { KubeObject } from '../../src/controller/kube.ts';

const obj = (rv: string, uid = 'u1', status: object = {}): KubeObject => ({ apiVersion: 'v1', kind: 'X', metadata: { name: 'a', namespace: 'n', uid, resourceVersion: rv }, status });

describe('compareResourceVersion', () => {
  it('compares integers as integers, not as text', () => {
    expect(compareResourceVersion('9', '10')).toBe(-1);
    expect(compareResourceVersion('100', '99')).toBe(1);
    expect(compareResourceVersion('12345678901234567890', '12345678901234567890')).toBe(0);
  });
  it('refuses what KEP-5504 does not call a resource version', () => {
    for (const [a, b] of [['0', '1'], ['01', '1'], ['abc', '1'], ['', '1'], [undefined, '1'], ['-1', '1'], ['1.5', '2']] as const) {
      expect(compareResourceVersion(a, b), `${a} vs ${b}`).toBeUndefined();
    }
  });
});

describe('OwnWrites', () => {
  it('without a write of ours the cache is the view', () => {
    const own = new OwnWrites();
    const cached = obj('5');
    expect(own.view('n/a', cached)).toBe(cached);
  });

  it('a cache behind our last write shows our write, also at an intermediate version of our own', () => {
    const own = new OwnWrites();
    const finalizer = obj('6');
    const status = obj('7', 'u1', { phase: 'Active' });
    own.wrote('n/a', finalizer, '5');
    own.wrote('n/a', status, '6');
    // The reconcile that missed TokenIssued's status: the cache has the finalizer's version only.
    expect(own.view('n/a', obj('6'))).toBe(status);
    expect(own.view('n/a', obj('5'))).toBe(status);
    expect(own.size).toBe(1);
  });

  it('once the cache shows our write, or anything newer, the cache wins and the write is forgotten', () => {
    const own = new OwnWrites();
    own.wrote('n/a', obj('7'), '5');
    const same = obj('7');
    expect(own.view('n/a', same)).toBe(same);
    expect(own.size).toBe(0);
    own.wrote('n/a', obj('8'), '7');
    const newer = obj('9', 'u1', { someoneElse: true });
    expect(own.view('n/a', newer)).toBe(newer);
    expect(own.size).toBe(0);
  });

  it('an object deleted, or created again under the same name, is not the one we wrote', () => {
    const own = new OwnWrites();
    own.wrote('n/a', obj('7'), '5');
    expect(own.view('n/a', undefined)).toBeUndefined();
    own.wrote('n/a', obj('7'), '5');
    const reborn = obj('3', 'u2');
    expect(own.view('n/a', reborn)).toBe(reborn);
  });

  it('versions that are not integers: stale only when the cache shows one we know precedes our write', () => {
    const own = new OwnWrites();
    const mine = obj('c');
    own.wrote('n/a', obj('b'), 'a');
    own.wrote('n/a', mine, 'b');
    expect(own.view('n/a', obj('a'))).toBe(mine);
    expect(own.view('n/a', obj('b'))).toBe(mine);
    const unknown = obj('zz');
    expect(own.view('n/a', unknown)).toBe(unknown);
  });
});
