// The operator as users run it — its own Node process running the built JavaScript, as the
// container image does (`npm run build`, `node dist/main.js`), with the Node options and log
// level the chart sets, in a memory cgroup of the chart's limit — for the benchmarks that
// measure what only a process has: resident memory, and a restart.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { repoRoot } from '../test/cluster/controlplane.ts';
import { bundleOperator } from '../build/bundle.ts';
import { freePort } from '../test/net.ts';
import { cpuSecondsOf } from './cpu.ts';
import { chartRuntime } from '../test/image/runtime.ts';

export interface OperatorProcess {
  /** The verification service's port (HTTPS on 127.0.0.1: /v1/crl, /v1/ca.crt…). */
  verifyPort: number;
  pid: number;
  /** CPU seconds the process has used (user + system), from /proc. */
  cpuSeconds(): number;
  /** Resident set size now, and its peak (VmHWM), in bytes, from /proc. */
  memory(): { rss: number; peak: number };
  /** The container's view: its cgroup's working set (what kubelet and `kubectl top` show), its peak, and OOM kills. */
  container(): ContainerMemory;
  /** The operator's own /metrics, as name{labels} → value. */
  metrics(): Promise<Map<string, number>>;
  /**
   * The live heap in bytes: V8's used heap right after a full collection, which a heap
   * snapshot forces (taken on SIGUSR2 into a scratch directory, then deleted).
   */
  liveHeap(): Promise<number>;
  stop(): Promise<void>;
}

let built = false;

export interface ContainerMemory {
  /** Where the limit came from: the chart's, or why there is none (not root, no cgroup v1 memory controller). */
  limit: string;
  workingSetBytes: number;
  peakBytes: number;
  oomKills: number;
}

/**
 * A memory cgroup (v1, as this machine's kubelet uses) with the chart's limit, the operator's
 * container stand-in. Working set as kubelet counts it: usage less inactive file pages.
 */
function memoryCgroup(limitBytes: number) {
  const root = '/sys/fs/cgroup/memory';
  if (process.getuid?.() !== 0 || !existsSync(path.join(root, 'memory.limit_in_bytes'))) return undefined;
  // A bench killed before it stopped its operator leaves its cgroup: empty ones go first.
  for (const stale of readdirSync(root).filter((d) => d.startsWith('suo-bench-'))) {
    if (!readFileSync(path.join(root, stale, 'cgroup.procs'), 'utf8').trim()) rmdirSync(path.join(root, stale));
  }
  const dir = path.join(root, `suo-bench-${process.pid}-${Math.random().toString(36).slice(2, 8)}`);
  mkdirSync(dir);
  writeFileSync(path.join(dir, 'memory.limit_in_bytes'), String(limitBytes));
  const read = (f: string) => readFileSync(path.join(dir, f), 'utf8');
  const stat = (key: string) => Number(new RegExp(`^${key} (\\d+)$`, 'm').exec(read('memory.stat'))?.[1] ?? 0);
  return {
    dir,
    memory: (): ContainerMemory => ({
      limit: `${Math.round(limitBytes / 2 ** 20)} MiB (the chart's)`,
      workingSetBytes: Math.max(0, Number(read('memory.usage_in_bytes')) - stat('total_inactive_file')),
      peakBytes: Number(read('memory.max_usage_in_bytes')),
      oomKills: Number(/^oom_kill (\d+)$/m.exec(read('memory.oom_control'))?.[1] ?? 0),
    }),
    remove: () => rmdirSync(dir),
  };
}

export async function startOperatorProcess(kubeconfig: string, namespaces: string[], operatorNamespace: string, concurrency = 8): Promise<OperatorProcess> {
  if (!built) {
    await bundleOperator();
    built = true;
  }
  const chart = chartRuntime();
  const metricsPort = await freePort();
  const verifyPort = await freePort();
  const scratch = mkdtempSync(path.join(tmpdir(), 'bench-operator-'));
  const cgroup = memoryCgroup(chart.memoryLimitBytes);
  const node = [
    process.execPath,
    '--heapsnapshot-signal=SIGUSR2',
    ...chart.nodeFlags,
    // BENCH_OPERATOR_NODE_FLAGS: Node flags beside the chart's NODE_OPTIONS (these win).
    ...(process.env.BENCH_OPERATOR_NODE_FLAGS?.split(' ').filter(Boolean) ?? []),
    // BENCH_CPU_PROF=DIR: a V8 CPU profile of the operator, written when it stops.
    ...(process.env.BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(process.env.BENCH_CPU_PROF)}`] : []),
    path.join(repoRoot, 'dist/main.js'), '--kubeconfig', kubeconfig, '--namespace', namespaces.join(','), '--operator-namespace', operatorNamespace,
    // Plain HTTP on loopback: the bench scrapes without a token (/metrics is HTTPS with review by default).
    '--metrics-bind-address', `127.0.0.1:${metricsPort}`, '--no-metrics-secure', '--health-probe-bind-address', '0', '--verify-bind-address', `127.0.0.1:${verifyPort}`,
    '--concurrency', String(concurrency), '--log-level', chart.logLevel,
  ];
  // The shell moves itself into the cgroup and then becomes Node: nothing runs outside the limit.
  const [command, ...args] = cgroup ? ['/bin/sh', '-c', `echo $$ > ${cgroup.dir}/cgroup.procs && exec "$@"`, 'sh', ...node] : node;
  const env = { ...process.env, ...chart.env, NODE_OPTIONS: chart.nodeOptions };
  const child = spawn(command!, args, { stdio: ['ignore', 'pipe', 'pipe'], cwd: scratch, env });
  // The operator logs to stdout; its last lines explain an unexpected exit.
  let stderr = '';
  const tail = (c: Buffer) => (stderr = (stderr + c.toString()).slice(-4096));
  child.stdout.on('data', tail);
  child.stderr.on('data', tail);
  child.once('exit', (code, signal) => {
    if (code !== 0 && signal !== 'SIGTERM') process.stderr.write(`operator exited (${code ?? signal}):\n${stderr}\n`);
  });
  const metrics = async () => parseMetrics(await fetch(`http://127.0.0.1:${metricsPort}/metrics`).then((r) => r.text()));
  const status = (field: string) => Number(/(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8').split('\n').find((l) => l.startsWith(field)) ?? '')?.[1] ?? NaN) * 1024;
  return {
    verifyPort,
    pid: child.pid!,
    cpuSeconds: () => cpuSecondsOf(child.pid!),
    memory: () => ({ rss: status('VmRSS:'), peak: status('VmHWM:') }),
    container: () => cgroup?.memory() ?? { limit: 'none: the cgroup v1 memory controller needs root', workingSetBytes: NaN, peakBytes: NaN, oomKills: NaN },
    metrics,
    async liveHeap() {
      child.kill('SIGUSR2');
      // The snapshot is written synchronously; /metrics answers again once it is done.
      for (let last = -1; ; ) {
        await new Promise((r) => setTimeout(r, 1000));
        const files = readdirSync(scratch).filter((f) => f.endsWith('.heapsnapshot'));
        const size = files.length ? statSync(path.join(scratch, files[0]!)).size : -1;
        if (size > 0 && size === last) break;
        last = size;
      }
      const used = sumOf(await metrics(), 'nodejs_heap_size_used_bytes');
      // BENCH_KEEP_HEAPSNAPSHOT=DIR: keep the snapshot there, to see what the live heap holds.
      const keep = process.env.BENCH_KEEP_HEAPSNAPSHOT;
      for (const f of readdirSync(scratch)) {
        if (keep && f.endsWith('.heapsnapshot')) renameSync(path.join(scratch, f), path.join(path.resolve(keep), `${child.pid}-${f}`));
        else rmSync(path.join(scratch, f), { force: true });
      }
      return used;
    },
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await once(child, 'exit');
      }
      rmSync(scratch, { recursive: true, force: true });
      cgroup?.remove();
    },
  };
}

/** Prometheus text format to a map of `name{labels}` → value (comments dropped). */
export function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

/** The RBAC verbs that write. */
export const mutatingVerbs = new Set(['create', 'update', 'patch', 'delete', 'deletecollection']);

/** The sum of every series of `name` whose labels satisfy `match`. */
export function sumOf(metrics: Map<string, number>, name: string, match: (labels: Record<string, string>) => boolean = () => true): number {
  let sum = 0;
  for (const [series, value] of metrics) {
    const brace = series.indexOf('{');
    if ((brace < 0 ? series : series.slice(0, brace)) !== name) continue;
    const labels: Record<string, string> = {};
    for (const m of (brace < 0 ? '' : series.slice(brace)).matchAll(/(\w+)="([^"]*)"/g)) labels[m[1]!] = m[2]!;
    if (match(labels)) sum += value;
  }
  return sum;
}
