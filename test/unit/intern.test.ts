// The caches' strings held once (src/api/intern.ts): the values a transform keeps are
// unchanged, and the same string in many parsed objects costs its bytes once — measured on
// the heap, since a string's identity is not observable from JavaScript.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { intern, interned } from '../../src/api/intern.ts';
import { secretEntry, typedServiceUser } from '../../src/api/stores.ts';

setFlagsFromString('--expose-gc');
const gc: () => void = runInNewContext('gc');
const heapUsed = () => {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
};

const message = 'every record in status and the Secret carries this one sentence, in every object of the cache';
const parsed = (i: number) => JSON.parse(JSON.stringify({ metadata: { name: `su-${i}` }, status: { conditions: [{ type: 'Ready', message }] } })) as unknown;

describe('interned strings', () => {
  it('leave every value as it was: objects, arrays, nulls, numbers, long strings', () => {
    const long = 'x'.repeat(300);
    const value = { a: 'one', b: [1, 'two', null, { c: 'three', d: long }], e: null, f: true, g: { h: [] } };
    expect(interned(structuredClone(value))).toEqual(value);
    expect(intern(long)).toBe(long);
  });

  it('cost a string repeated in 20,000 parsed objects its bytes once (the table bounded: 40,000 distinct names pass through)', () => {
    const plainObjects: unknown[] = [];
    const before = heapUsed();
    for (let i = 0; i < 20_000; i++) plainObjects.push(parsed(i));
    const plain = heapUsed() - before;
    const internedObjects: unknown[] = [];
    const start = heapUsed();
    for (let i = 0; i < 20_000; i++) internedObjects.push(interned(parsed(i)));
    const shared = heapUsed() - start;
    // Both sets alive until here, so that each measurement counted its own.
    expect(plainObjects.length + internedObjects.length).toBe(40_000);
    // The message alone is ~110 bytes a copy: 2.2 MB for 20,000 copies, ~0 interned.
    expect(plain - shared, `${plain} vs ${shared}`).toBeGreaterThan(20_000 * 80);
    for (let i = 0; i < 40_000; i++) intern(`name-${i}`);
    expect(intern(message)).toBe(message);
  });

  it('are what the ServiceUser and Secret caches keep: the same annotation in 10,000 of them costs its bytes once', () => {
    // The same structure either way; only whether the 100-character value repeats differs.
    const note = (i: number, same: boolean) => (same ? message : `${message.slice(0, -6)}${String(i).padStart(6, '0')}`);
    const cached = (same: boolean) => {
      const before = heapUsed();
      const entries: unknown[] = [];
      for (let i = 0; i < 10_000; i++) {
        const meta = { name: `su-${i}`, namespace: 'team', annotations: { note: note(i, same) } };
        entries.push(typedServiceUser(JSON.parse(JSON.stringify({ apiVersion: 'serviceusers.dev/v1alpha1', kind: 'ServiceUser', metadata: meta, spec: { email: 'a@example.com', accounts: ['x'] } }))));
        entries.push(secretEntry(JSON.parse(JSON.stringify({ apiVersion: 'v1', kind: 'Secret', metadata: meta }))));
      }
      const grown = heapUsed() - before;
      expect(entries).toHaveLength(20_000);
      return grown;
    };
    const distinct = cached(false);
    const repeated = cached(true);
    expect(distinct - repeated, `${distinct} vs ${repeated}`).toBeGreaterThan(20_000 * 80);
  });
});
