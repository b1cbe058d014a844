// The probes (/healthz: the process serves; /readyz: every cache has synced), plain HTTP for
// the kubelet. /metrics is metrics-server.ts's: it needs authentication.
import { createServer, type Server } from 'node:http';

export async function serve(address: string, routes: Record<string, () => Promise<{ status: number; body: string; type?: string }>>): Promise<Server> {
  const [host, port] = splitAddress(address);
  const server = createServer((req, res) => {
    const route = routes[(req.url ?? '').split('?')[0] ?? ''];
    if (!route || req.method !== 'GET') {
      res.writeHead(404).end('not found\n');
      return;
    }
    route().then(
      (r) => res.writeHead(r.status, { 'content-type': r.type ?? 'text/plain; charset=utf-8' }).end(r.body),
      (err: unknown) => res.writeHead(500).end(`${String(err)}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return server;
}

export function probeRoutes(ready: () => boolean) {
  return {
    '/healthz': async () => ({ status: 200, body: 'ok\n' }),
    '/readyz': async () => (ready() ? { status: 200, body: 'ok\n' } : { status: 503, body: 'caches not synced\n' }),
  };
}

/** ":8080" → all interfaces; "127.0.0.1:0" → loopback, any port. */
export function splitAddress(address: string): [string | undefined, number] {
  const i = address.lastIndexOf(':');
  const host = address.slice(0, i).replace(/^\[|\]$/g, '') || undefined;
  const port = Number(address.slice(i + 1));
  if (i < 0 || !Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`"${address}" is not HOST:PORT`);
  return [host, port];
}
