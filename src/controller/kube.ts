// A small JSON client for the Kubernetes API: the operator's only network edge to it.
// Raw JSON in and out, because client-node's typed serializers silently drop fields they do
// not model (a CRD's `default`, `x-kubernetes-validations`) — a server-side apply must send
// exactly the object it means. Authentication and TLS come from the Connection (connection.ts);
// a 401 tells it so (an exec plugin's credential is then fetched again) and is retried once.
import { Agent, request, type RequestOptions } from 'node:https';
import type { IncomingMessage } from 'node:http';
import { createInterface } from 'node:readline';
import { z } from 'zod';
import { headersOf, type Connection } from './connection.ts';

// The object shapes live on the floor below (api/object.ts: the typed stores project them);
// the client speaks them.
export type { KubeObject, ObjectMeta } from '../api/object.ts';
import type { KubeObject } from '../api/object.ts';

/**
 * The same client certificate or key, by content: a connection may hand out a fresh Buffer
 * of the same bytes on every request (client-node's KubeConfig does), and a new agent per
 * request would be a TLS handshake per request — no keep-alive at all.
 */
function sameMaterial(a: unknown, b: unknown): boolean {
  return Buffer.isBuffer(a) && Buffer.isBuffer(b) ? a.equals(b) : a === b;
}

/** What an error answer's body may say (a metav1.Status); a body that is not one is quoted as it is. */
const apiStatus = z.object({ message: z.string().optional(), reason: z.string().optional() });

function jsonOrUndefined(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

export interface WatchEvent {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  object: KubeObject & { code?: number; message?: string };
}

/** An HTTP error from the API server, with its Status message. */
export class ApiError extends Error {
  readonly status: number;
  readonly reason: string | undefined;
  constructor(status: number, message: string, reason?: string) {
    super(message);
    this.status = status;
    this.reason = reason;
  }
}

export const isNotFound = (err: unknown) => err instanceof ApiError && err.status === 404;
export const isConflict = (err: unknown) => err instanceof ApiError && err.status === 409;

/** A resource's collection path, e.g. /apis/serviceusers.dev/v1alpha1/namespaces/ci/serviceusers. */
export interface Resource {
  group: string;
  version: string;
  plural: string;
  namespaced: boolean;
}

export function resourcePath(r: Resource, namespace?: string, name?: string, subresource?: string): string {
  const base = r.group ? `/apis/${r.group}/${r.version}` : `/api/${r.version}`;
  const ns = r.namespaced && namespace ? `/namespaces/${encodeURIComponent(namespace)}` : '';
  const tail = name ? `/${encodeURIComponent(name)}${subresource ? `/${subresource}` : ''}` : '';
  return `${base}${ns}/${r.plural}${tail}`;
}

/** Told of every answered request: its method, path and HTTP status (0 when none came). */
export type RequestObserver = (method: string, path: string, status: number) => void;

export class KubeClient {
  readonly server: URL;
  private readonly kc: Connection;
  private readonly observe: RequestObserver;
  private agent: Agent | undefined;
  /** The client certificate and key the agent was made with: an exec plugin may hand out new ones. */
  private agentTls: { cert: unknown; key: unknown } | undefined;

  constructor(kc: Connection, observe: RequestObserver = () => undefined) {
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new Error('the kubeconfig has no current cluster');
    this.kc = kc;
    this.observe = observe;
    this.server = new URL(cluster.server);
  }

  private async options(method: string, path: string, headers: Record<string, string>): Promise<RequestOptions> {
    // Credentials are re-read per request: in-cluster service-account tokens rotate.
    const auth: RequestOptions = { headers: {} };
    await this.kc.applyToHTTPSOptions(auth);
    if (!this.agent || !sameMaterial(this.agentTls?.cert, auth.cert) || !sameMaterial(this.agentTls?.key, auth.key)) {
      // Sockets of a replaced agent finish their requests and close when idle.
      this.agent = new Agent({ keepAlive: true, maxSockets: 64, ca: auth.ca, cert: auth.cert, key: auth.key, rejectUnauthorized: auth.rejectUnauthorized ?? true, ...(auth.servername ? { servername: auth.servername } : {}) });
      this.agentTls = { cert: auth.cert, key: auth.key };
    }
    return {
      method,
      hostname: this.server.hostname,
      port: this.server.port || 443,
      path: `${this.server.pathname.replace(/\/$/, '')}${path}`,
      agent: this.agent,
      headers: { ...headersOf(auth), accept: 'application/json', ...headers },
      ...(auth.auth ? { auth: auth.auth } : {}),
    };
  }

  /**
   * One request; resolves to the parsed JSON body, rejects with ApiError on HTTP errors.
   * `signal` aborts it (the socket is destroyed, so a stalled server cannot hold it).
   */
  async request<T = KubeObject>(method: string, path: string, body?: unknown, contentType = 'application/json', signal?: AbortSignal): Promise<T> {
    try {
      return await this.send<T>(method, path, body, contentType, signal);
    } catch (err) {
      // Credentials refused: once more with fresh ones, when the connection can fetch them.
      if (err instanceof ApiError && err.status === 401 && this.kc.refused?.()) return this.send<T>(method, path, body, contentType, signal);
      throw err;
    }
  }

  private async send<T>(method: string, path: string, body: unknown, contentType: string, signal: AbortSignal | undefined): Promise<T> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    signal?.throwIfAborted();
    const opts = await this.options(method, path, payload === undefined ? {} : { 'content-type': contentType });
    const res = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      if (signal?.aborted) return reject(new Error(`${method} ${path}: aborted: ${String(signal.reason)}`));
      const onAbort = () => req.destroy(new Error(`${method} ${path}: aborted: ${signal?.reason instanceof Error ? signal.reason.message : String(signal?.reason)}`));
      signal?.addEventListener('abort', onAbort, { once: true });
      const req = request(opts, (r) => {
        let text = '';
        r.setEncoding('utf8');
        r.on('data', (c: string) => (text += c));
        // Handed over and let go: these listeners outlive the request (a keep-alive socket
        // keeps its last one), and a list's body is megabytes.
        r.on('end', () => {
          const body = text;
          text = '';
          resolve({ status: r.statusCode ?? 0, text: body });
        });
        r.on('error', reject);
      });
      req.setTimeout(30_000, () => req.destroy(new Error(`${method} ${path}: no answer in 30s`)));
      req.on('error', reject);
      req.on('close', () => signal?.removeEventListener('abort', onAbort));
      req.end(payload);
    }).catch((err: unknown) => {
      this.observe(method, path, 0);
      throw err;
    });
    // The settled promise keeps its result for as long as the request's listeners live: the
    // body is taken out of it.
    const text = res.text;
    res.text = '';
    this.observe(method, path, res.status);
    if (res.status >= 300) {
      const status = apiStatus.safeParse(jsonOrUndefined(text));
      const message = (status.success ? status.data.message : undefined) ?? text;
      throw new ApiError(res.status, `${method} ${path}: ${res.status} ${message}`, status.success ? status.data.reason : undefined);
    }
    return (text ? JSON.parse(text) : undefined) as T;
  }

  get<T = KubeObject>(path: string, signal?: AbortSignal): Promise<T> {
    return this.request<T>('GET', path, undefined, undefined, signal);
  }

  /**
   * Server-side apply under `fieldManager`, forcing ownership of the fields we set — unless
   * `force` is false: then a field another manager set is a 409 naming that manager.
   */
  apply<T = KubeObject>(path: string, object: unknown, fieldManager: string, { force = true }: { force?: boolean } = {}): Promise<T> {
    const query = `?fieldManager=${encodeURIComponent(fieldManager)}${force ? '&force=true' : ''}`;
    return this.request<T>('PATCH', path + query, object, 'application/apply-patch+yaml');
  }

  /** A JSON merge patch, for the few writes that must not take field ownership (finalizers). */
  mergePatch<T = KubeObject>(path: string, patch: unknown): Promise<T> {
    return this.request<T>('PATCH', path, patch, 'application/merge-patch+json');
  }

  /**
   * Streams a watch until the server ends it, `signal` aborts it, or it fails. Events reach
   * `onEvent` in order. Resolves on a clean end; rejects on transport and HTTP errors.
   */
  async watch(path: string, onEvent: (event: WatchEvent) => void, signal: AbortSignal): Promise<void> {
    const opts = await this.options('GET', path, {});
    await new Promise<void>((resolve, reject) => {
      if (signal.aborted) return resolve();
      // Aborting destroys the request; the streams then report errors that, once aborted,
      // mean nothing. Every stream has a listener: an unhandled 'error' would end the process.
      const settle = (err?: unknown) => {
        signal.removeEventListener('abort', onAbort);
        if (err && !signal.aborted) reject(err);
        else resolve();
      };
      const req = request(opts, (res: IncomingMessage) => {
        this.observe('GET', path, res.statusCode ?? 0);
        res.on('error', settle);
        res.on('aborted', () => settle(new Error(`watch ${path} aborted by the server`)));
        if ((res.statusCode ?? 0) >= 300) {
          if (res.statusCode === 401) this.kc.refused?.(); // the next watch fetches fresh credentials
          let text = '';
          res.on('data', (c: Buffer) => (text += c.toString()));
          res.on('end', () => settle(new ApiError(res.statusCode ?? 0, `watch ${path}: ${res.statusCode} ${text}`)));
          return;
        }
        const lines = createInterface({ input: res });
        lines.on('error', settle);
        lines.on('line', (line) => {
          if (!line.trim() || signal.aborted) return;
          try {
            onEvent(JSON.parse(line) as WatchEvent);
          } catch (err) {
            settle(err);
            req.destroy();
          }
        });
        res.on('end', () => settle());
      });
      const onAbort = () => req.destroy();
      signal.addEventListener('abort', onAbort, { once: true });
      req.on('error', settle);
      req.end();
    });
  }

  close(): void {
    this.agent?.destroy();
  }
}
