// Kubernetes Events on the objects they concern: what `kubectl describe` and
// `kubectl get events` show. Recorded as client-go's recorder records them:
//   - off the caller's path: record() queues and returns; a few senders write them, and
//     stop() (flush) waits for what is queued, so a clean shutdown loses none;
//   - aggregated: the same type, reason and message on the same object again within the
//     window is one Event whose count and lastTimestamp move (a PATCH), not a new Event;
//   - best effort: a failed write is logged, never retried into a loop.
import { randomBytes } from 'node:crypto';
import { isNotFound, type KubeClient, type KubeObject } from './kube.ts';
import type { Logger } from '../observability/logger.ts';

export interface EventInput {
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
}

export interface EventRecorderOptions {
  component?: string;
  instance?: string;
  /** Events written at once. */
  concurrency?: number;
  /** A repeat within this long of the last occurrence counts on the same Event (client-go: 10 minutes). */
  windowMs?: number;
  /** Distinct events remembered for aggregation (client-go: 4096). */
  remembered?: number;
  /** Writes waiting beyond this are dropped, with a warning: memory stays bounded when the API server is away. */
  maxQueued?: number;
  /** whenRoom() waits while more than this many writes wait: backpressure instead of loss. */
  highWater?: number;
  now?: () => number;
}

/** The Event as first written: what it is about and why (its name, count and times are added per write). */
interface EventBody {
  involvedObject: { kind: string | undefined; name: string; [field: string]: unknown };
  reason: string;
  [field: string]: unknown;
}

interface Series {
  key: string;
  namespace: string;
  /** The Event's name once created. */
  name: string | undefined;
  body: EventBody;
  count: number;
  written: number;
  lastTimestamp: string;
  lastSeen: number;
  /** A write for this series is queued or running; it writes the count current when it runs. */
  busy: boolean;
  failed: boolean;
  waiters: { upTo: number; resolve: () => void }[];
}

export class EventRecorder {
  private readonly client: KubeClient;
  private readonly log: Logger;
  private readonly component: string;
  private readonly instance: string;
  private readonly concurrency: number;
  private readonly windowMs: number;
  private readonly remembered: number;
  private readonly maxQueued: number;
  private readonly highWater: number;
  private room: (() => void)[] = [];
  private readonly now: () => number;
  private readonly series = new Map<string, Series>();
  private readonly queue: Series[] = [];
  private running = 0;
  private idle: (() => void)[] = [];
  private dropped = 0;

  constructor(client: KubeClient, log: Logger, options: EventRecorderOptions = {}) {
    this.client = client;
    this.log = log;
    this.component = options.component ?? 'service-user-operator';
    this.instance = options.instance ?? process.env.HOSTNAME ?? 'local';
    this.concurrency = options.concurrency ?? 4;
    this.windowMs = options.windowMs ?? 10 * 60_000;
    this.remembered = options.remembered ?? 4096;
    this.maxQueued = options.maxQueued ?? 10_000;
    this.highWater = options.highWater ?? 1000;
    this.now = options.now ?? Date.now;
  }

  /** Queues the event; the promise settles once it is written (or its failure logged). */
  record(object: KubeObject, event: EventInput): Promise<void> {
    const namespace = object.metadata.namespace ?? 'default';
    const message = event.message.slice(0, 1024);
    const key = [namespace, object.kind, object.metadata.name, object.metadata.uid, event.type, event.reason, message].join('\u0000');
    const at = this.now();
    const timestamp = new Date(at).toISOString();
    let s = this.series.get(key);
    if (s && (s.failed || at - s.lastSeen > this.windowMs)) s = undefined;
    if (s) {
      s.count++;
      s.lastSeen = at;
      s.lastTimestamp = timestamp;
      this.series.delete(key); // most recently used last
      this.series.set(key, s);
    } else {
      s = {
        key, namespace, name: undefined, count: 1, written: 0, lastTimestamp: timestamp, lastSeen: at, busy: false, failed: false, waiters: [],
        body: {
          apiVersion: 'v1',
          kind: 'Event',
          involvedObject: {
            apiVersion: object.apiVersion,
            kind: object.kind,
            name: object.metadata.name,
            namespace: object.metadata.namespace,
            uid: object.metadata.uid,
            resourceVersion: object.metadata.resourceVersion,
          },
          type: event.type,
          reason: event.reason,
          message,
          source: { component: this.component },
          reportingComponent: this.component,
          reportingInstance: this.instance,
          firstTimestamp: timestamp,
        },
      };
      this.series.set(key, s);
      for (const old of this.series.keys()) {
        if (this.series.size <= this.remembered) break;
        this.series.delete(old);
      }
    }
    const written = new Promise<void>((resolve) => s.waiters.push({ upTo: s.count, resolve }));
    this.schedule(s);
    return written;
  }

  /**
   * Resolves at once unless the queue is past its high-water mark, then once it has drained
   * below it: a caller that records many events slows down rather than have them dropped.
   */
  whenRoom(): Promise<void> {
    if (this.queue.length < this.highWater) return Promise.resolve();
    return new Promise((resolve) => this.room.push(resolve));
  }

  /** Resolves once every queued event is written: for shutdown and tests. */
  flush(): Promise<void> {
    if (!this.running && !this.queue.length) return Promise.resolve();
    return new Promise((resolve) => this.idle.push(resolve));
  }

  private schedule(s: Series): void {
    if (s.busy) return;
    if (this.queue.length >= this.maxQueued) {
      if (this.dropped++ % 1000 === 0) this.log.warn({ dropped: this.dropped, queued: this.queue.length }, 'event queue full; dropping events');
      this.settle(s, true);
      return;
    }
    s.busy = true;
    this.queue.push(s);
    this.pump();
  }

  private pump(): void {
    while (this.running < this.concurrency) {
      const s = this.queue.shift();
      if (!s) break;
      this.running++;
      void this.write(s).finally(() => {
        this.running--;
        s.busy = false;
        // Occurrences recorded while it was being written: one more write carries them.
        if (!s.failed && s.count > s.written) this.schedule(s);
        else this.settle(s, s.failed);
        this.pump();
        if (this.queue.length < this.highWater) for (const go of this.room.splice(0)) go();
        if (!this.running && !this.queue.length) for (const done of this.idle.splice(0)) done();
      });
    }
  }

  private settle(s: Series, all: boolean): void {
    s.waiters = s.waiters.filter((w) => {
      if (!all && w.upTo > s.written) return true;
      w.resolve();
      return false;
    });
  }

  private async write(s: Series): Promise<void> {
    const count = s.count;
    const base = `/api/v1/namespaces/${encodeURIComponent(s.namespace)}/events`;
    try {
      if (s.name) {
        try {
          await this.client.mergePatch(`${base}/${encodeURIComponent(s.name)}`, { count, lastTimestamp: s.lastTimestamp });
        } catch (err) {
          // Expired (the API server keeps Events an hour): the series starts again.
          if (!isNotFound(err)) throw err;
          s.name = undefined;
        }
      }
      if (!s.name) {
        const name = `${s.body.involvedObject.name}.${randomBytes(8).toString('hex')}`;
        await this.client.request('POST', base, { ...s.body, metadata: { name, namespace: s.namespace }, count, lastTimestamp: s.lastTimestamp });
        s.name = name;
      }
      s.written = count;
      this.settle(s, false);
    } catch (err) {
      s.failed = true;
      const involved = s.body.involvedObject;
      this.log.warn({ err: String(err), reason: s.body.reason, object: `${involved.kind}/${involved.name}` }, 'could not record event');
    }
  }
}
