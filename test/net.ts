// A free TCP port on loopback, for servers a test or benchmark starts; and a proxy that can
// stall the traffic it carries.
import { connect, createServer, type Socket } from 'node:net';

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  server.close();
  return port;
}

/**
 * A TCP proxy on loopback to `target` that can stop forwarding, in both directions, on every
 * connection it holds and every one it accepts later — the API server's traffic stalled, as a
 * network partition or a hung server does it. Nothing a stalled client sent is delivered
 * later: when either side closes, the other is destroyed with whatever was held.
 */
export async function stallableProxy(target: { host: string; port: number }) {
  let stalled = false;
  const pairs = new Set<[Socket, Socket]>();
  const server = createServer((client) => {
    const upstream = connect(target.port, target.host);
    const pair: [Socket, Socket] = [client, upstream];
    pairs.add(pair);
    client.on('data', (chunk) => upstream.write(chunk));
    upstream.on('data', (chunk) => client.write(chunk));
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    for (const s of pair) {
      s.on('error', end);
      s.on('close', end);
      if (stalled) s.pause();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as { port: number }).port,
    stall() {
      stalled = true;
      for (const pair of pairs) for (const s of pair) s.pause();
    },
    resume() {
      stalled = false;
      for (const pair of pairs) for (const s of pair) s.resume();
    },
    async close() {
      for (const pair of pairs) for (const s of pair) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}
