import { afterEach, describe, expect, it, vi } from 'vitest';
import { FirstList } from '../../src/controller/first-list.ts';

const secret = (name: string, resourceVersion: string, token: string) => ({ apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace: 'ns', resourceVersion }, data: { token } });

describe('the first list kept for the first reconciles', () => {
  afterEach(() => vi.useRealTimers());

  it('answers at the version the cache shows, and lets a version the cache moved past go', () => {
    const list = new FirstList();
    list.offer(secret('a', '10', 'dG9rZW4='));
    list.offer(secret('b', '11', 'b3RoZXI='));
    expect(list.get('ns/a', '10')).toEqual({ token: 'dG9rZW4=' });
    expect(list.get('ns/a', '10'), 'a second pass of the same user').toEqual({ token: 'dG9rZW4=' });
    // The cache has a newer version: the listed data is stale, and is let go.
    expect(list.get('ns/b', '12')).toBeUndefined();
    expect(list.get('ns/b', '11')).toBeUndefined();
    expect(list.size).toBe(1);
    list.release();
    expect(list.get('ns/a', '10')).toBeUndefined();
  });

  it('takes nothing after the first sync (a watch event, a relist) and lets the rest go after a while', () => {
    vi.useFakeTimers();
    const list = new FirstList(1000);
    list.offer(secret('a', '10', 'dG9rZW4='));
    list.synced();
    list.offer(secret('c', '20', 'bmV3'));
    expect(list.get('ns/c', '20')).toBeUndefined();
    expect(list.size).toBe(1);
    vi.advanceTimersByTime(1001);
    expect(list.get('ns/a', '10')).toBeUndefined();
  });
});
