// A supervised list-and-watch cache of one resource. client-node's informer stops for good
// on an error; this one never does: a failed list or watch restarts with exponential
// backoff and jitter, a watch the server ends is resumed from the last resourceVersion, an
// expired resourceVersion (410) relists, and a watch that goes silent longer than the
// server's own timeout (a half-open connection) is aborted and relisted by a watchdog.
// Readers get the last good cache throughout: a relist replaces it only once complete.
import type { KubeClient, KubeObject, Resource, WatchEvent } from './kube.ts';
import { resourcePath } from './kube.ts';

export type ChangeType = 'ADDED' | 'MODIFIED' | 'DELETED';

/** What a cache needs of what it holds: the key and version its transform kept. */
export interface Cacheable {
  metadata: { name: string; namespace?: string | undefined; resourceVersion?: string | undefined };
}

/**
 * A change and what the cache held before it (client-go's UpdateFunc(old, new)): a map
 * function compares the two ("did the labels change?") without a shadow copy of its own.
 * `old` is undefined for an object the cache did not hold.
 */
export type ChangeHandler<T> = (type: ChangeType, obj: T, old: T | undefined) => void;

export interface InformerOptions<T extends Cacheable = KubeObject> {
  resource: Resource;
  /** Watch one namespace; all namespaces when absent. */
  namespace?: string;
  labelSelector?: string;
  /** E.g. `metadata.name=x`: one named object (RBAC can then grant it by resourceNames). */
  fieldSelector?: string;
  /** Server-side watch timeout; each watch asks for this ±20%. */
  watchTimeoutSeconds?: number;
  /** Abort a watch with no event (bookmarks included) for this long after its timeout should have ended it. */
  silenceGraceMs?: number;
  baseBackoffMs?: number;
  maxBackoffMs?: number;
  onError?: (err: unknown, retryInMs: number) => void;
  random?: () => number;
  /**
   * Turns each object into what is cached and handed to handlers (controller-runtime's
   * cache transform): parsed once, into a typed projection holding only what the operator
   * reads (api/stores.ts), so what it never reads costs no memory and readers neither parse
   * again nor cast. Default (a KubeObject cache): drops `metadata.managedFields`.
   */
  transform?: (obj: KubeObject) => T;
  /**
   * Named secondary indexes (client-go's Indexers): each maps an object to the values it is
   * found under, so that "which objects name X" is a lookup, not a scan of the cache.
   */
  indexers?: Record<string, (obj: T) => string[]>;
}

/** The default transform: managedFields are server-side apply's bookkeeping, read by no one here. */
export function withoutManagedFields(obj: KubeObject): KubeObject {
  if (!obj.metadata?.managedFields) return obj;
  const { managedFields: _, ...metadata } = obj.metadata;
  return { ...obj, metadata };
}

export const objectKey = (o: { metadata: { name: string; namespace?: string | undefined } }) =>
  o.metadata.namespace ? `${o.metadata.namespace}/${o.metadata.name}` : o.metadata.name;

export class Informer<T extends Cacheable = KubeObject> {
  private store = new Map<string, T>();
  private readonly handlers: ChangeHandler<T>[] = [];
  private readonly client: KubeClient;
  private readonly options: Required<Omit<InformerOptions<T>, 'namespace' | 'labelSelector' | 'fieldSelector' | 'onError' | 'indexers'>> &
    Pick<InformerOptions<T>, 'namespace' | 'labelSelector' | 'fieldSelector' | 'onError' | 'indexers'>;
  private indexes = new Map<string, Map<string, Map<string, T>>>();
  private abort = new AbortController();
  private stopped = false;
  private loop: Promise<void> | undefined;
  private markSynced!: () => void;
  /** Resolves once the first list has filled the cache. */
  readonly synced: Promise<void>;
  /** Counts relists, for tests and metrics. */
  lists = 0;

  constructor(client: KubeClient, options: InformerOptions<T>) {
    this.client = client;
    this.options = {
      watchTimeoutSeconds: 300,
      silenceGraceMs: 30_000,
      baseBackoffMs: 500,
      maxBackoffMs: 30_000,
      random: Math.random,
      // Without a transform T is KubeObject (the type parameter's default): the raw object, trimmed.
      transform: withoutManagedFields as unknown as (obj: KubeObject) => T,
      ...options,
    };
    this.synced = new Promise((resolve) => (this.markSynced = resolve));
  }

  onChange(handler: ChangeHandler<T>): void {
    this.handlers.push(handler);
  }

  get(key: string): T | undefined {
    return this.store.get(key);
  }

  list(namespace?: string): T[] {
    const all = [...this.store.values()];
    return namespace === undefined ? all : all.filter((o) => o.metadata.namespace === namespace);
  }

  /** The objects found under `value` in the index `name`. */
  byIndex(name: string, value: string): T[] {
    return [...(this.indexes.get(name)?.get(value)?.values() ?? [])];
  }

  private put(key: string, obj: T): void {
    const old = this.store.get(key);
    if (old) this.unindex(key, old);
    this.store.set(key, obj);
    for (const [name, indexer] of Object.entries(this.options.indexers ?? {})) {
      let index = this.indexes.get(name);
      if (!index) this.indexes.set(name, (index = new Map()));
      for (const value of indexer(obj)) {
        let bucket = index.get(value);
        if (!bucket) index.set(value, (bucket = new Map()));
        bucket.set(key, obj);
      }
    }
  }

  private remove(key: string, obj: T): void {
    this.store.delete(key);
    this.unindex(key, obj);
  }

  private unindex(key: string, obj: T): void {
    for (const [name, indexer] of Object.entries(this.options.indexers ?? {})) {
      const index = this.indexes.get(name);
      if (!index) continue;
      for (const value of indexer(obj)) {
        const bucket = index.get(value);
        bucket?.delete(key);
        if (bucket?.size === 0) index.delete(value);
      }
    }
  }

  start(): void {
    this.loop ??= this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.abort.abort();
    await this.loop;
  }

  private path(query: Record<string, string>): string {
    const { resource, namespace, labelSelector, fieldSelector } = this.options;
    const params = new URLSearchParams(query);
    if (labelSelector) params.set('labelSelector', labelSelector);
    if (fieldSelector) params.set('fieldSelector', fieldSelector);
    return `${resourcePath(resource, namespace)}?${params}`;
  }

  private emit(type: ChangeType, obj: T, old: T | undefined): void {
    for (const h of this.handlers) h(type, obj, old);
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (!this.stopped) {
      try {
        let resourceVersion = await this.relist();
        failures = 0;
        while (!this.stopped) {
          const next = await this.watchOnce(resourceVersion);
          if (next === undefined) break; // expired: relist
          resourceVersion = next;
        }
      } catch (err) {
        if (this.stopped) break;
        failures++;
        const exp = Math.min(this.options.maxBackoffMs, this.options.baseBackoffMs * 2 ** (failures - 1));
        const delay = Math.round(exp / 2 + (this.options.random() * exp) / 2);
        this.options.onError?.(err, delay);
        await this.sleep(delay);
      }
    }
  }

  /** Lists every page, swaps the cache in whole, and reports the differences. */
  private async relist(): Promise<string> {
    const fresh = new Map<string, T>();
    let resourceVersion: string;
    let cont: string | undefined;
    do {
      const page = await this.client.get<{ items: KubeObject[]; metadata: { resourceVersion: string; continue?: string } }>(
        this.path({ limit: '500', ...(cont ? { continue: cont } : {}) }),
      );
      for (const item of page.items) fresh.set(objectKey(item), this.options.transform(item));
      resourceVersion = page.metadata.resourceVersion;
      cont = page.metadata.continue || undefined;
    } while (cont);
    const previous = this.store;
    this.store = new Map();
    this.indexes = new Map();
    for (const [key, obj] of fresh) this.put(key, obj);
    this.lists++;
    for (const [key, obj] of previous) if (!fresh.has(key)) this.emit('DELETED', obj, obj);
    for (const [key, obj] of fresh) {
      const old = previous.get(key);
      if (!old) this.emit('ADDED', obj, undefined);
      else if (old.metadata.resourceVersion !== obj.metadata.resourceVersion) this.emit('MODIFIED', obj, old);
    }
    this.markSynced();
    return resourceVersion;
  }

  /**
   * One watch from `resourceVersion`. Resolves to the version to resume from, or undefined
   * when the version expired and the cache must be relisted.
   */
  private async watchOnce(resourceVersion: string): Promise<string | undefined> {
    const timeout = Math.round(this.options.watchTimeoutSeconds * (0.8 + 0.4 * this.options.random()));
    const abort = new AbortController();
    const onStop = () => abort.abort();
    this.abort.signal.addEventListener('abort', onStop, { once: true });
    let silent = false;
    const silenceMs = timeout * 1000 + this.options.silenceGraceMs;
    let watchdog = setTimeout(() => ((silent = true), abort.abort()), silenceMs);
    let current: string | undefined = resourceVersion;
    try {
      await this.client.watch(
        this.path({ watch: '1', resourceVersion, allowWatchBookmarks: 'true', timeoutSeconds: String(timeout) }),
        (event: WatchEvent) => {
          clearTimeout(watchdog);
          watchdog = setTimeout(() => ((silent = true), abort.abort()), silenceMs);
          if (event.type === 'ERROR') {
            if (event.object.code === 410) current = undefined;
            else throw new Error(`watch error: ${event.object.message ?? JSON.stringify(event.object)}`);
            abort.abort();
            return;
          }
          if (event.object.metadata?.resourceVersion) current = event.object.metadata.resourceVersion;
          if (event.type === 'BOOKMARK') return;
          const obj = this.options.transform(event.object);
          const key = objectKey(obj);
          const old = this.store.get(key);
          if (event.type === 'DELETED') this.remove(key, old ?? obj);
          else this.put(key, obj);
          this.emit(event.type, obj, old);
        },
        abort.signal,
      );
    } finally {
      clearTimeout(watchdog);
      this.abort.signal.removeEventListener('abort', onStop);
    }
    if (silent) throw new Error(`watch silent for ${silenceMs}ms (half-open connection?); relisting`);
    return current;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.abort.signal.addEventListener('abort', () => (clearTimeout(timer), resolve()), { once: true });
    });
  }
}

/** What a reconcile reads of a cache: a narrow dependency, so a test can hand it a few objects. */
export type CacheReader<T extends Cacheable> = Pick<InformerSet<T>, 'get' | 'list' | 'byIndex'>;

/** Several informers of one resource (one per watched namespace) read as one cache. */
export class InformerSet<T extends Cacheable = KubeObject> {
  readonly informers: Informer<T>[];
  constructor(informers: Informer<T>[]) {
    this.informers = informers;
  }
  get(key: string): T | undefined {
    for (const i of this.informers) {
      const hit = i.get(key);
      if (hit) return hit;
    }
    return undefined;
  }
  list(namespace?: string): T[] {
    return this.informers.flatMap((i) => i.list(namespace));
  }
  byIndex(name: string, value: string): T[] {
    return this.informers.flatMap((i) => i.byIndex(name, value));
  }
  onChange(handler: ChangeHandler<T>): void {
    for (const i of this.informers) i.onChange(handler);
  }
  start(): void {
    for (const i of this.informers) i.start();
  }
  get synced(): Promise<void> {
    return Promise.all(this.informers.map((i) => i.synced)).then(() => undefined);
  }
  async stop(): Promise<void> {
    await Promise.all(this.informers.map((i) => i.stop()));
  }
}
