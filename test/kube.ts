// Test helpers: a client for the run's API server and a namespace per test file.
import { randomBytes } from 'node:crypto';
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

export function objectApi(): KubernetesObjectApi {
  return KubernetesObjectApi.makeApiClient(kubeConfig());
}

/** Polls `check` until it returns a value other than undefined, or fails after `timeoutMs`. */
export async function eventually<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}${lastError ? `: ${String(lastError)}` : ''}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}
