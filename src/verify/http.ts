// The HTTP edge of the verification service: errors that carry their status, bounded request
// bodies parsed once into plain records, and answers that are never cached. Invariant: a body
// over the limit is refused before it is buffered, and a malformed one gets a 4xx naming what is
// expected — never a 500.
import type { IncomingMessage, ServerResponse } from 'node:http';

export class HttpError extends Error {
  readonly status: number;
  /** What the log says when it must say more than the caller is told. */
  readonly logReason: string | undefined;
  constructor(status: number, message: string, logReason?: string) {
    super(message);
    this.status = status;
    this.logReason = logReason;
  }
}

/** The request's path, without the query. */
export const route = (req: IncomingMessage) => (req.url ?? '').split('?')[0] ?? '';

/** The token of an `Authorization: Bearer` header, if that is what it holds. */
export function bearerToken(header: string | undefined): string | undefined {
  return header ? /^Bearer\s+(\S+)$/i.exec(header)?.[1] : undefined;
}

/** One request header as a single string (a repeated header is not one value). */
export function headerValue(value: string | string[] | undefined): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

const mediaType = (req: IncomingMessage) => (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase() ?? '';

async function readBody(req: IncomingMessage, maxBody: number): Promise<string> {
  const length = Number(req.headers['content-length'] ?? 0);
  if (length > maxBody) throw new HttpError(413, `body over ${maxBody} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const bytes = Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk));
    size += bytes.length;
    if (size > maxBody) {
      req.destroy();
      throw new HttpError(413, `body over ${maxBody} bytes`);
    }
    chunks.push(bytes);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return !!value && typeof value === 'object' && !Array.isArray(value);
}

export async function readJson(req: IncomingMessage, maxBody: number): Promise<Record<string, unknown>> {
  if (mediaType(req) !== 'application/json') throw new HttpError(415, 'content-type must be application/json');
  const text = await readBody(req, maxBody);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new HttpError(400, 'body is not valid JSON');
  }
  if (!isRecord(value)) throw new HttpError(400, 'body must be a JSON object');
  return value;
}

/** JSON, or application/x-www-form-urlencoded as RFC 7662 clients send. */
export async function readParams(req: IncomingMessage, maxBody: number): Promise<Record<string, unknown>> {
  const type = mediaType(req);
  if (type === 'application/x-www-form-urlencoded') return Object.fromEntries(new URLSearchParams(await readBody(req, maxBody)));
  if (type === 'application/json') return readJson(req, maxBody);
  throw new HttpError(415, 'content-type must be application/json or application/x-www-form-urlencoded');
}

/** A non-empty string field, or undefined. */
export function nonEmpty(value: unknown): string | undefined {
  return typeof value === 'string' && value ? value : undefined;
}

export function send(res: ServerResponse, status: number, body: unknown, type = 'application/json'): void {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

export function statusText(status: number): string {
  return { 400: 'BadRequest', 401: 'Unauthorized', 403: 'Forbidden', 404: 'NotFound', 405: 'MethodNotAllowed', 413: 'PayloadTooLarge', 415: 'UnsupportedMediaType', 429: 'TooManyRequests' }[status] ?? 'InternalError';
}

export function endpointOf(path: string): string {
  if (path.startsWith('/v1/check')) return 'check';
  return { '/apis/authentication.k8s.io/v1/tokenreviews': 'tokenreview', '/v1/introspect': 'introspect', '/v1/authorize': 'authorize', '/v1/ca.crt': 'ca', '/v1/crl': 'crl' }[path] ?? 'other';
}

export function resultOf(outcome: Record<string, unknown>): string {
  if ('authenticated' in outcome) return outcome.authenticated ? 'authenticated' : 'refused';
  if ('active' in outcome) return outcome.active ? 'active' : 'inactive';
  if ('allowed' in outcome) return outcome.allowed ? 'allowed' : 'denied';
  return 'served';
}
