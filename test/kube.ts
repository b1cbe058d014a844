// Test helpers: a client for the run's API server, a namespace per test file, the one polling
// helper (eventually) and the one subprocess runner (run) every test uses.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { CoreV1Api, KubeConfig, KubernetesObjectApi } from '@kubernetes/client-node';
import { afterAll, beforeAll, inject } from 'vitest';

export function kubeConfig(): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(inject('kubeconfig'));
  return kc;
}

/**
 * Creates a fresh namespace before the file's tests and deletes it after, so test files
 * run in parallel without seeing each other's objects. Read `.name` inside tests.
 */
export function useNamespace(prefix = 'test'): { name: string } {
  const ns = { name: `${prefix}-${randomBytes(4).toString('hex')}` };
  const core = kubeConfig().makeApiClient(CoreV1Api);
  beforeAll(async () => {
    await core.createNamespace({ body: { metadata: { name: ns.name, labels: { 'serviceusers.dev/test': 'true' } } } });
  });
  afterAll(async () => {
    await core.deleteNamespace({ name: ns.name });
  });
  return ns;
}

/** A kubeconfig in `dir` that loads and points at nothing listening: for flags judged before any API call. */
export function unreachableKubeconfig(dir: string): string {
  const file = path.join(dir, 'kubeconfig');
  writeFileSync(file, `apiVersion: v1
kind: Config
clusters: [ { name: c, cluster: { server: 'https://127.0.0.1:9' } } ]
users: [ { name: u, user: { token: x } } ]
contexts: [ { name: c, context: { cluster: c, user: u } } ]
current-context: c
`);
  return file;
}

export function objectApi(): KubernetesObjectApi {
  return KubernetesObjectApi.makeApiClient(kubeConfig());
}

/**
 * Polls `check` (every 100 ms, or `intervalMs`) until it returns a value other than undefined
 * or false, or fails after `timeoutMs` naming `what` and the last error `check` threw.
 */
export async function eventually<T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 20_000, intervalMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}${lastError ? `: ${String(lastError)}` : ''}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** What a subprocess did: `out` and `err` apart, `output` both as a person saw them. */
export interface Ran {
  ok: boolean;
  /** The exit code (1 when it was killed or could not start). */
  code: number;
  out: string;
  err: string;
  output: string;
}

/** Runs a command to its end (never throws: a failure is `ok: false`), killed after `timeoutMs`. */
export function run(cmd: string, args: string[], options: { env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number } = {}): Promise<Ran> {
  return new Promise((resolve) => {
    const child = execFile(cmd, args, { encoding: 'utf8', env: options.env ?? process.env, timeout: options.timeoutMs ?? 120_000, maxBuffer: 256 << 20 }, (error, out, err) =>
      resolve({ ok: !error, code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, out, err, output: `${out}${err}` }),
    );
    if (options.input !== undefined) child.stdin?.end(options.input);
  });
}
