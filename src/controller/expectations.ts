// A reconcile's view of its own writes. The informer's cache trails the API server: right
// after we write an object, the watch event for that write may not have arrived, and a
// reconcile woken by something else (our own Secret write, the finalizer's event) would see
// the object from before — without the status it just wrote — and redo (and re-announce)
// the work. The ReplicaSet controller keeps "expectations" for the same reason; here each
// key remembers the object our last write returned until the cache has caught up with it.
//
// "Caught up" needs ordering of resourceVersions: they are etcd revisions, and since
// Kubernetes 1.35 (KEP-5504) comparing them as integers is part of the API's contract
// (apimachinery's CompareResourceVersion). A version that is not such an integer is
// compared the old way: the cache has caught up when it shows our write's version or one
// we have not seen before.
import type { KubeObject } from './kube.ts';

/** -1, 0 or 1 as `a` is older, the same or newer than `b`; undefined when they are not comparable integers. */
export function compareResourceVersion(a: string | undefined, b: string | undefined): -1 | 0 | 1 | undefined {
  const integer = /^[1-9]\d*$/;
  if (!a || !b || !integer.test(a) || !integer.test(b)) return undefined;
  if (a.length !== b.length) return a.length < b.length ? -1 : 1;
  return a === b ? 0 : a < b ? -1 : 1;
}

/** What an expectation compares: the identity and version of what was written and of what is cached. */
interface Versioned {
  metadata: { uid?: string | undefined; resourceVersion?: string | undefined };
}

interface Expectation<T extends Versioned> {
  object: T;
  /** Versions we know precede `object` (the one we wrote over, our earlier writes). */
  older: Set<string>;
}

export class OwnWrites<T extends Versioned = KubeObject> {
  private readonly last = new Map<string, Expectation<T>>();

  /** Our write of `key` returned `object`; `over` is the version it was made over. */
  wrote(key: string, object: T, over: string | undefined): void {
    const before = this.last.get(key);
    const older = new Set(before?.older ?? []);
    if (over) older.add(over);
    if (before?.object.metadata.resourceVersion) older.add(before.object.metadata.resourceVersion);
    this.last.set(key, { object, older });
  }

  /**
   * The freshest object for `key`: the cache's, unless our own later write has not reached
   * it yet, then that write. An object gone from the cache is gone (its deletion was seen).
   */
  view(key: string, cached: T | undefined): T | undefined {
    const mine = this.last.get(key);
    if (!mine) return cached;
    // Gone, or deleted and created again under the same name: not the object we wrote.
    if (!cached || cached.metadata.uid !== mine.object.metadata.uid) {
      this.last.delete(key);
      return cached;
    }
    const order = compareResourceVersion(cached.metadata.resourceVersion, mine.object.metadata.resourceVersion);
    const stale = order === undefined ? mine.older.has(cached.metadata.resourceVersion ?? '') : order < 0;
    if (stale) return mine.object;
    this.last.delete(key);
    return cached;
  }

  forget(key: string): void {
    this.last.delete(key);
  }

  /** Keys still waiting for the cache, for tests and the memory they hold. */
  get size(): number {
    return this.last.size;
  }
}
