// How the chart runs the operator's container, read from the image's Dockerfile (the Node
// flags of its ENTRYPOINT, its ENV) and the chart's values.yaml (the NODE_OPTIONS its
// Deployment sets, the log level, the memory request and limit). The benchmarks run the
// operator's process with these, inside a memory cgroup of the chart's limit, so that a
// memory figure is the one a user's pod would show. packaging.test.ts checks the rendered
// chart and the Dockerfile say the same as this reading of them.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { load } from 'js-yaml';
import { z } from 'zod';
import { repoRoot } from '../cluster/controlplane.ts';

const quantity = z.string().regex(/^\d+(Mi|Gi)$/, 'a quantity in Mi or Gi');
const values = z.object({
  logLevel: z.string(),
  heapMaxMiB: z.number().int().nullable().optional(),
  resources: z.object({ requests: z.object({ memory: quantity }), limits: z.object({ memory: quantity }) }),
});

/** A Kubernetes memory quantity in Mi or Gi, in bytes. */
export const quantityBytes = (q: string) => Number(q.slice(0, -2)) * (q.endsWith('Gi') ? 2 ** 30 : 2 ** 20);

export interface ChartRuntime {
  /** The Node flags the image's ENTRYPOINT passes before dist/main.js. */
  nodeFlags: string[];
  /** The run stage's ENV. */
  env: Record<string, string>;
  /** NODE_OPTIONS as the Deployment sets it ('' when it sets none). */
  nodeOptions: string;
  logLevel: string;
  memoryRequestBytes: number;
  memoryLimitBytes: number;
}

/** The Node options the chart's template builds from these values (templates/deployment.yaml). */
const nodeOptionsOf = (v: { heapMaxMiB?: number | null | undefined }) => (v.heapMaxMiB ? `--max-old-space-size=${v.heapMaxMiB}` : '');

/** The run stage (the last FROM) of config/manager/Dockerfile: its ENTRYPOINT's Node flags and its ENV. */
export function imageRuntime(dockerfile = readFileSync(path.join(repoRoot, 'config/manager/Dockerfile'), 'utf8')) {
  const run = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));
  const entrypoint = z.array(z.string()).parse(JSON.parse(/^ENTRYPOINT (\[.*\])$/m.exec(run)?.[1] ?? 'null'));
  const main = entrypoint.indexOf('dist/main.js');
  if (main < 1) throw new Error(`config/manager/Dockerfile: ENTRYPOINT ${JSON.stringify(entrypoint)} does not run node … dist/main.js`);
  const env: Record<string, string> = {};
  for (const m of run.matchAll(/^ENV (\w+)=(\S+)$/gm)) env[m[1]!] = m[2]!;
  return { nodeFlags: entrypoint.slice(1, main), env };
}

export function chartRuntime(): ChartRuntime {
  const v = values.parse(load(readFileSync(path.join(repoRoot, 'charts/service-user-operator/values.yaml'), 'utf8')));
  return {
    ...imageRuntime(),
    nodeOptions: nodeOptionsOf(v),
    logLevel: v.logLevel,
    memoryRequestBytes: quantityBytes(v.resources.requests.memory),
    memoryLimitBytes: quantityBytes(v.resources.limits.memory),
  };
}
