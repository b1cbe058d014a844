// One view of each user's Secret: the only place the ServiceUser reconcile learns what its
// Secret holds. It owns every cache that answers that question without a request, and says
// in one order which answers wins (see current):
//   1. our own last write (ownSecrets): the reconciles our own writes wake use it instead of
//      reading it back;
//   2. the metadata cache (every Secret carrying our name label): with none there once it is
//      synced, a new user's Secret is absent — the POST that creates it fails if one appeared;
//   3. the restart's first list (FirstList): its data, at the version the cache still shows;
//   4. the digest of our last write (written): an expiring user's Secret at that version is
//      known by digest alone, which is all an end-date wipe needs;
//   5. the live read, for everything else.
//
// Invariants:
//   - ownSecrets holds a Secret only while the user is worked on: any other version of it the
//     watch delivers (someone else's change, a deletion) drops it before that event's
//     reconcile runs, and a pass that writes nothing once the watch has shown our version
//     drops it too (settled).
//   - written holds ~150 bytes a user (name, resourceVersion, digest); a deleted Secret or a
//     deleted user drops it.
//   - readLive holds the users whose Secret a POST found there while the cache had none (a
//     name someone else holds): read live until our write succeeds or the user goes.
import { resources } from '../api/resources.ts';
import type { FirstList } from '../controller/first-list.ts';
import type { InformerSet } from '../controller/informer.ts';
import type { SecretEntry } from '../api/stores.ts';
import { isNotFound, resourcePath, type KubeClient, type KubeObject } from '../controller/kube.ts';
import { labels } from '../api/names.ts';
import { digestOf, observeSecret, type SeenSecret } from './secret-write.ts';

export interface SecretViewDeps {
  client: Pick<KubeClient, 'get'>;
  /** Our Secrets, metadata only: whether one changed since we wrote it. */
  secrets?: InformerSet<SecretEntry> | undefined;
  /** Their data as the Secret informer's first list carried it (first-list.ts). */
  listedSecrets?: FirstList | undefined;
}

/** How a reconcile asks for a user's Secret. */
export interface SecretQuery {
  key: string;
  namespace: string;
  name: string;
  /** The user's end date passed: a Secret known by digest is enough. */
  expiring: boolean;
  /** The name is held by someone else's Secret (the user is stalled on it): not in our cache. */
  heldByOthers: boolean;
  /** Aborts a live read (the reconcile's signal). */
  signal?: AbortSignal | undefined;
}

export class SecretView {
  private readonly ownSecrets = new Map<string, { secret: KubeObject; seen: boolean }>();
  private readonly written = new Map<string, { name: string; resourceVersion: string; digest: string }>();
  private readonly readLive = new Set<string>();
  private synced = false;

  private readonly deps: SecretViewDeps;

  constructor(deps: SecretViewDeps) {
    this.deps = deps;
    deps.secrets?.onChange((type, s) => this.changed(type, s));
    void deps.secrets?.synced.then(() => (this.synced = true));
  }

  /** A Secret event from the watch: drops what it makes stale. */
  private changed(type: string, s: SecretEntry): void {
    const owner = s.metadata.labels?.[labels.name];
    const key = `${s.metadata.namespace}/${owner}`;
    if (type === 'DELETED' && owner && this.written.get(key)?.name === s.metadata.name) this.written.delete(key);
    const mine = owner && this.ownSecrets.get(key);
    if (!mine || mine.secret.metadata.name !== s.metadata.name) return;
    if (type !== 'DELETED' && s.metadata.resourceVersion === mine.secret.metadata.resourceVersion) mine.seen = true;
    else this.ownSecrets.delete(key);
  }

  /** The Secret as this pass sees it (the order in the header). */
  async current(q: SecretQuery): Promise<SeenSecret | undefined> {
    const { key, namespace: ns, name } = q;
    const mine = this.ownSecrets.get(key);
    if (mine?.secret.metadata.name === name) {
      if (this.deps.secrets?.get(`${ns}/${name}`)?.metadata.resourceVersion === mine.secret.metadata.resourceVersion) mine.seen = true;
      return observeSecret(mine.secret);
    }
    this.ownSecrets.delete(key);
    const cached = this.deps.secrets?.get(`${ns}/${name}`);
    if (this.synced && !q.heldByOthers && !this.readLive.has(key) && !cached) return undefined;
    const listed = cached && this.deps.listedSecrets?.get(`${ns}/${name}`, cached.metadata.resourceVersion);
    if (listed) return observeSecret({ ...cached, data: listed });
    return (q.expiring && this.known(key, ns, name)) || observeSecret(await this.read(ns, name, q.signal));
  }

  /**
   * An expired user's Secret without reading it: the metadata cache shows it at the version our
   * last write left. Its data is then known by digest only, which is all an expiry needs — it
   * wipes whatever is there, revokes what status recorded (which our write's status records:
   * ownSecrets holds a Secret until status does), and skips the write if the wipe is done.
   */
  private known(key: string, ns: string, name: string): SeenSecret | undefined {
    const last = this.written.get(key);
    const cached = this.deps.secrets?.get(`${ns}/${name}`);
    if (!last || last.name !== name || !cached || cached.metadata.resourceVersion !== last.resourceVersion) return undefined;
    return observeSecret({ ...cached, data: {} }, last.digest);
  }

  /** The Secret read live (finalizers, and what no cache answers). */
  async read(ns: string, name: string, signal?: AbortSignal): Promise<KubeObject | undefined> {
    try {
      return await this.deps.client.get(resourcePath(resources.secrets, ns, name), signal);
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /** Our write of the user's Secret returned `applied`. */
  wrote(key: string, applied: KubeObject): void {
    this.readLive.delete(key);
    this.ownSecrets.set(key, { secret: applied, seen: false });
    this.written.set(key, { name: applied.metadata.name, resourceVersion: applied.metadata.resourceVersion!, digest: digestOf(applied.data as Record<string, string> | undefined) });
  }

  /** Our POST found the name taken: read it live until a write succeeds. */
  taken(key: string): void {
    this.readLive.add(key);
  }

  /** A pass that wrote nothing: our last write is no longer needed once the watch showed it. */
  settled(key: string): void {
    if (this.ownSecrets.get(key)?.seen) this.ownSecrets.delete(key);
  }

  /** The user is being deleted: nothing of its Secret is remembered. */
  deleting(key: string): void {
    this.ownSecrets.delete(key);
    this.written.delete(key);
  }

  /** The user is gone. */
  gone(key: string): void {
    this.written.delete(key);
    this.readLive.delete(key);
  }
}
