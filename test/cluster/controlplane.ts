// Builds (once per source hash) and starts the local control plane in test/cluster/.
// Shared by `npm run cluster` and the vitest global setup.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const moduleDir = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(moduleDir, '../..');

/** The Kubernetes release the control plane is built from, as pinned in go.mod. */
export function kubernetesVersion(): string {
  const goMod = readFileSync(path.join(moduleDir, 'go.mod'), 'utf8');
  const match = /^\s*k8s\.io\/kubernetes\s+(v\d+\.\d+\.\d+)\s*$/m.exec(goMod);
  if (!match?.[1]) throw new Error(`test/cluster/go.mod does not require k8s.io/kubernetes at a release version`);
  return match[1];
}

function goVersion(): string {
  try {
    return execFileSync('go', ['version'], { encoding: 'utf8', env: { ...process.env, GOTOOLCHAIN: 'local' } }).trim();
  } catch {
    throw new Error(
      'Go (1.24 or newer) is needed to build the local control plane. Install Go, or point the tests at ' +
        'an existing cluster with KUBECONFIG, or at envtest binaries with KUBEBUILDER_ASSETS.',
    );
  }
}

/**
 * Path of a Go module's binary under .cluster/bin, building it if this exact source (go.mod,
 * go.sum, *.go, Go version) has not been built before. Builds go to a temporary name and are
 * renamed into place, so concurrent callers never see a half-written binary.
 */
export function buildGoModule(
  moduleDir: string,
  name: string,
  ldflags: string[] = [],
  pkg = '.',
  log: (line: string) => void = (l) => process.stderr.write(`${l}\n`),
): string {
  const go = goVersion();
  const sources = readdirSync(moduleDir)
    .filter((f) => f === 'go.mod' || f === 'go.sum' || f.endsWith('.go'))
    .sort();
  const hash = createHash('sha256').update(go).update(ldflags.join(' ')).update(pkg);
  for (const f of sources) hash.update(f).update(readFileSync(path.join(moduleDir, f)));
  const key = hash.digest('hex').slice(0, 16);
  const binDir = path.join(repoRoot, '.cluster', 'bin');
  const binary = path.join(binDir, `${name}-${key}`);
  if (existsSync(binary)) return binary;

  mkdirSync(binDir, { recursive: true });
  const tmp = `${binary}.${process.pid}.tmp`;
  log(`building ${name} (${go}); a cold build takes several minutes`);
  const started = Date.now();
  // A line at least every 30 s (CI logs, people watching): the build below blocks this process.
  // It stops with the build, or by itself once this process is gone.
  const tick = `s=0; while sleep 30 && kill -0 ${process.pid} 2>/dev/null; do s=$((s+30)); echo "  ... building ${name}: \${s}s" >&2; done`;
  const ticker = spawn('sh', ['-c', tick], { stdio: ['ignore', 'ignore', 'inherit'], detached: true });
  try {
    execFileSync('go', ['build', '-trimpath', `-ldflags=${['-s', '-w', ...ldflags].join(' ')}`, '-o', tmp, pkg], {
      cwd: moduleDir,
      stdio: ['ignore', 'inherit', 'inherit'],
      env: { ...process.env, GOTOOLCHAIN: 'local', CGO_ENABLED: '0' },
    });
  } finally {
    process.kill(-ticker.pid!, 'SIGTERM');
  }
  renameSync(tmp, binary);
  log(`built ${path.relative(repoRoot, binary)} in ${Math.round((Date.now() - started) / 1000)}s`);
  // Older builds are dead weight (each is 60-150 MB).
  for (const f of readdirSync(binDir)) {
    if (f.startsWith(`${name}-`) && path.join(binDir, f) !== binary && !f.endsWith('.tmp')) rmSync(path.join(binDir, f), { force: true });
  }
  return binary;
}

/** The control-plane binary, reporting the real Kubernetes release as its version. */
export function ensureBinary(): string {
  const version = kubernetesVersion();
  const [major, minor] = version.slice(1).split('.');
  const pkg = 'k8s.io/component-base/version';
  return buildGoModule(moduleDir, 'controlplane', [
    `-X ${pkg}.gitVersion=${version}`,
    `-X ${pkg}.gitMajor=${major}`,
    `-X ${pkg}.gitMinor=${minor}`,
    `-X ${pkg}.gitTreeState=clean`,
  ]);
}

/** The sandbox (pause) binary of the local node's pods, from ./pause in the same module. */
export function ensurePauseBinary(): string {
  return buildGoModule(moduleDir, 'pause', [], './pause');
}

export interface ControlPlane {
  kubeconfig: string;
  server: string;
  version: string;
  /** The control plane's process (API server, etcd and controller manager in one), for CPU figures. */
  pid: number;
  stop(): Promise<void>;
}

export interface StartOptions {
  /** State directory: kubeconfig, certificates, etcd data, logs. */
  dir: string;
  /** Extra kube-apiserver flags; they override the defaults. */
  apiserverArgs?: string[];
  /** Directory with envtest binaries (etcd, kube-apiserver) to run instead of the built-in ones. */
  assets?: string;
  /** A PEM file of another CA whose client certificates the API server accepts. */
  extraClientCa?: string;
  /** The API server's port; 0 or absent picks a free one. */
  port?: number;
  /** Reuse the directory's etcd data and certificates: a restart of the same cluster (same port). */
  keepState?: boolean;
  startTimeoutMs?: number;
  /**
   * Also run one node (containerd, kubelet, kube-scheduler; pods on the host network), with
   * these image archives imported into its containerd. Needs root, containerd and runc.
   */
  node?: { images: string[] };
}

const readyLine = /^control plane ready: (\S+) \(Kubernetes (\S+)\), KUBECONFIG=(\S+)$/;

/** Starts the control plane in the background and resolves once it is ready. */
export async function startControlPlane(options: StartOptions): Promise<ControlPlane> {
  const binary = ensureBinary();
  const args = ['--dir', options.dir];
  if (options.assets) args.push('--assets', options.assets);
  if (options.extraClientCa) args.push('--extra-client-ca', options.extraClientCa);
  if (options.port) args.push('--port', String(options.port));
  if (options.keepState) args.push('--keep-state');
  if (options.node) {
    args.push('--node', '--pause-binary', ensurePauseBinary());
    for (const image of options.node.images) args.push('--node-image', image);
  }
  args.push('--', ...(options.apiserverArgs ?? []));
  // Own process group: a Ctrl-C on the test run must not reach it besides our own SIGTERM
  // (kube-apiserver exits without cleanup on a second signal). It stops itself if we die.
  const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-8192);
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

  const ready = new Promise<ControlPlane>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout });
    lines.on('line', (line) => {
      const match = readyLine.exec(line);
      if (match) {
        resolve({ server: match[1]!, version: match[2]!, kubeconfig: match[3]!, pid: child.pid!, stop: () => stopProcess(child, exited) });
      }
    });
    void exited.then((code) => reject(new Error(`control plane exited with ${code} before it was ready:\n${stderr}`)));
  });
  const timeoutMs = options.startTimeoutMs ?? 5 * 60_000;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`control plane not ready after ${timeoutMs / 1000}s:\n${stderr}`)), timeoutMs);
  });
  try {
    return await Promise.race([ready, timeout]);
  } catch (err) {
    await stopProcess(child, exited);
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

async function stopProcess(child: ChildProcess, exited: Promise<number | null>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const killed = setTimeout(() => child.kill('SIGKILL'), 45_000);
  await exited;
  clearTimeout(killed);
}
