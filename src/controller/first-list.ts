// What an informer's first list carried beyond what its cache keeps. A cache that holds
// metadata alone (Secrets: credentials are not held twice in memory) still receives every
// object whole in its first list; after a restart, each reconcile would then read back, one
// GET at a time, what that list already delivered. This keeps each listed object's data for
// the restart's first passes (a user may be reconciled more than once while the CA and the
// ledger key load), answering only at the version the cache still shows, until released —
// when the first passes are done, or `closeAfterMs` past the first sync at the latest: a
// transient the size of the listed data.
import { stringMap } from '../api/object.ts';
import type { KubeObject } from './kube.ts';
import { objectKey } from './informer.ts';

export class FirstList {
  private readonly held = new Map<string, { resourceVersion: string; data: Record<string, string> }>();
  private open = true;
  private readonly closeAfterMs: number;

  constructor(closeAfterMs = 10 * 60_000) {
    this.closeAfterMs = closeAfterMs;
  }

  /** From the informer's transform: kept while the first list is arriving. */
  offer(obj: KubeObject): void {
    if (!this.open || !obj.metadata.resourceVersion) return;
    this.held.set(objectKey(obj), { resourceVersion: obj.metadata.resourceVersion, data: stringMap(obj) });
  }

  /** The first list is in (the informer synced): keep what it brought for a while, take nothing more. */
  synced(): void {
    this.open = false;
    setTimeout(() => this.release(), this.closeAfterMs).unref();
  }

  /** The listed data of `key` if the list saw it at `resourceVersion`; a version the cache has moved past is let go. */
  get(key: string, resourceVersion: string | undefined): Record<string, string> | undefined {
    const entry = this.held.get(key);
    if (!entry) return undefined;
    if (entry.resourceVersion === resourceVersion) return entry.data;
    this.held.delete(key);
    return undefined;
  }

  /** The first passes are done: let everything go. */
  release(): void {
    this.open = false;
    this.held.clear();
  }

  get size(): number {
    return this.held.size;
  }
}
