// Test helpers: the operator running in the test process, watching only the test file's
// namespace, with its log captured and its clock under the test's control.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeAll, inject } from 'vitest';
import { repoRoot } from './cluster/controlplane.ts';
import { KubeClient, resourcePath, type KubeObject } from '../src/controller/kube.ts';
import { resources } from '../src/api/resources.ts';
import type { ServiceUserStatus } from '../src/api/serviceuser.ts';
import { recordLog, testLogger } from './logs.ts';
import { createMetrics } from '../src/observability/metrics.ts';
import { startOperator, type Operator, type OperatorOptions } from '../src/operator.ts';
import { eventually, kubeConfig } from './kube.ts';

export interface RunningOperator {
  operator: Operator;
  logs: string[];
  /** Milliseconds added to the operator's clock (rotation and grace tests). */
  clock: { offsetMs: number };
  client: KubeClient;
}

export function useOperator(ns: { name: string }, extra: Partial<OperatorOptions> = {}): RunningOperator {
  const logs: string[] = [];
  const running = { logs, clock: { offsetMs: 0 }, client: new KubeClient(kubeConfig()) } as RunningOperator;
  beforeAll(async () => {
    running.operator = startOperator({
      kubeConfig: kubeConfig(),
      log: testLogger(logs),
      metrics: createMetrics(),
      namespaces: [ns.name],
      operatorNamespace: ns.name,
      now: () => Date.now() + running.clock.offsetMs,
      ...extra,
    });
    await running.operator.ready;
  });
  afterAll(async () => {
    await running.operator.stop();
    running.client.close();
  });
  return running;
}

/** What useNamespace labels every test namespace with; test Accounts admit exactly these. */
export const testNamespaceLabel = { 'serviceusers.dev/test': 'true' } as const;

/**
 * Accounts the file's ServiceUsers name, so that their RoleBindings grant: each admits the
 * run's test namespaces (by the label useNamespace sets), nothing else. Accounts are
 * cluster-scoped and files share names (acme…), so every file applies the same object
 * (idempotent) and none deletes it while another may rely on it: the global teardown does.
 */
export function useAccounts(names: string[], client?: KubeClient) {
  beforeAll(async () => {
    const c = client ?? new KubeClient(kubeConfig());
    try {
      for (const name of names) await c.apply(resourcePath(resources.accounts, undefined, name), testAccount(name), 'service-user-operator-tests');
    } finally {
      if (!client) c.close();
    }
  });
}

export const testAccount = (name: string, namespaceSelector: object = { matchLabels: testNamespaceLabel }) => ({
  apiVersion: 'serviceusers.dev/v1alpha1',
  kind: 'Account',
  metadata: { name, labels: testNamespaceLabel },
  spec: { displayName: `Test account ${name}`, namespaceSelector },
});

/** A ServiceUser's status as the operator wrote it ({} before its first write); tests assert on it. */
export const statusOf = (o: object): ServiceUserStatus => ('status' in o && o.status && typeof o.status === 'object' ? o.status : {}) as ServiceUserStatus;

export const decodeSecret = (s: KubeObject) =>
  Object.fromEntries(Object.entries((s.data as Record<string, string>) ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString()]));

export function api(client: KubeClient, namespace: string) {
  const su = (name = '', sub?: string) => resourcePath(resources.serviceUsers, namespace, name || undefined, sub);
  return {
    client,
    createServiceUser: (name: string, spec: Record<string, unknown>) =>
      client.request('POST', su(), { apiVersion: 'serviceusers.dev/v1alpha1', kind: 'ServiceUser', metadata: { name }, spec }),
    patchServiceUser: (name: string, spec: Record<string, unknown>) => client.mergePatch(su(name), { spec }),
    serviceUser: (name: string) => client.get(su(name)),
    secret: async (name: string) => {
      try {
        return await client.get(resourcePath(resources.secrets, namespace, name));
      } catch {
        return undefined;
      }
    },
    events: async (name: string) =>
      (await client.get<{ items: { reason: string; type: string; message: string }[] }>(`/api/v1/namespaces/${namespace}/events?fieldSelector=involvedObject.name%3D${name}`)).items,
    /** Waits for the ServiceUser's status to satisfy `check`, returning the object. */
    waitFor: (name: string, what: string, check: (o: KubeObject & { status?: Record<string, unknown> }) => boolean, ms = 20_000) =>
      eventually(what, async () => {
        const o = (await client.get(su(name))) as KubeObject & { status?: Record<string, unknown> };
        return check(o) ? o : undefined;
      }, ms),
  };
}

/**
 * Operator processes (`node src/main.ts`, what `npm start` runs) against the run's API
 * server, watching and living in the test file's namespace; all killed after the file.
 */
export function useOperatorProcesses(ns: { name: string }) {
  const children: ChildProcess[] = [];
  afterAll(() => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  });
  return {
    start(args: string[], options: { env?: Record<string, string>; output?: string[] } = {}): ChildProcess {
      const child = spawn(
        process.execPath,
        [path.join(repoRoot, 'src/main.ts'), '--kubeconfig', inject('kubeconfig'), '--namespace', ns.name, '--operator-namespace', ns.name, ...args],
        { env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      const capture = (c: Buffer) => {
        options.output?.push(c.toString());
        recordLog(c.toString());
      };
      child.stdout.on('data', capture);
      child.stderr.on('data', capture);
      children.push(child);
      return child;
    },
  };
}
