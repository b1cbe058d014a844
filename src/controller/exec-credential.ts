// Exec credential plugins (a kubeconfig's `users[].user.exec`), as client-go runs them: the
// command with its args and env (plus KUBERNETES_EXEC_INFO, the ExecCredential request),
// its stdout an ExecCredential (client.authentication.k8s.io/v1 or v1beta1) carrying a
// bearer token or a client certificate and key.
//
// Invariants: a credential is reused until its expirationTimestamp (re-run a little before
// it) or until the API server refuses it (forget()); without an expiry it lasts until
// refused. At most one run is in flight: every request waiting for a credential waits for
// the same run. A plugin that fails, hangs or prints something else is an Error naming the
// kubeconfig field and what went wrong, never a request sent without credentials.
import { spawn } from 'node:child_process';
import { z } from 'zod';

const apiVersions = ['client.authentication.k8s.io/v1', 'client.authentication.k8s.io/v1beta1'] as const;

export const execConfig = z.object({
  apiVersion: z.enum(apiVersions, { error: `must be one of ${apiVersions.join(', ')} (v1alpha1 was removed in Kubernetes 1.24)` }),
  command: z.string().min(1, 'must name the plugin to run'),
  args: z.array(z.string()).nullish(),
  env: z.array(z.object({ name: z.string().min(1), value: z.string() })).nullish(),
  installHint: z.string().nullish(),
  provideClusterInfo: z.boolean().nullish(),
  interactiveMode: z.enum(['Never', 'IfAvailable', 'Always']).nullish(),
});
export type ExecConfig = z.infer<typeof execConfig>;

const execCredential = z.object({
  apiVersion: z.string(),
  kind: z.literal('ExecCredential'),
  status: z.object({
    token: z.string().min(1).nullish(),
    clientCertificateData: z.string().min(1).nullish(),
    clientKeyData: z.string().min(1).nullish(),
    expirationTimestamp: z.iso.datetime({ offset: true }).nullish(),
  }),
});

/** What a plugin gave: a token, or a client certificate and key (PEM); when it stops being good. */
export interface ExecCredential {
  token?: string;
  cert?: Buffer;
  key?: Buffer;
  expiresAt?: number;
}

/** The cluster as ExecCredential's spec.cluster carries it (when provideClusterInfo is set). */
export type ExecCluster = Record<string, unknown>;

export interface ExecOptions {
  /** The kubeconfig field, e.g. `users["ci"].user.exec`, for messages. */
  where: string;
  /** spec.cluster, when the plugin asked for it. */
  cluster?: ExecCluster;
  /** A person at a terminal may answer the plugin (the kubectl plugin); the operator never. */
  interactive?: boolean;
  /** A run that has not finished by then is killed (not interactive only). */
  timeoutMs?: number;
}

/** Runs the plugin once; resolves to the credential it printed, rejects saying what went wrong. */
export function runExecPlugin(exec: ExecConfig, options: ExecOptions): Promise<ExecCredential> {
  const { where } = options;
  if (exec.interactiveMode === 'Always' && !options.interactive) {
    return Promise.reject(new Error(`${where}.interactiveMode is Always, but this process has no terminal to interact on: set it to Never or IfAvailable, or use a plugin that needs no prompt`));
  }
  const interactive = !!options.interactive && exec.interactiveMode !== 'Never';
  const request = { apiVersion: exec.apiVersion, kind: 'ExecCredential', spec: { interactive, ...(exec.provideClusterInfo && options.cluster ? { cluster: options.cluster } : {}) } };
  const env = { ...process.env, ...Object.fromEntries((exec.env ?? []).map((e) => [e.name, e.value])), KUBERNETES_EXEC_INFO: JSON.stringify(request) };
  return new Promise((resolve, reject) => {
    // At a terminal the plugin may prompt (stdin, stderr); its answer is always on stdout.
    const args = exec.args ?? [];
    const child = interactive ? spawn(exec.command, args, { env, stdio: ['inherit', 'pipe', 'inherit'] }) : spawn(exec.command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let settled = false;
    const settle = (outcome: { err: Error } | { credential: ExecCredential }) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if ('err' in outcome) reject(outcome.err);
      else resolve(outcome.credential);
    };
    const fail = (err: Error) => settle({ err });
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr?.setEncoding('utf8').on('data', (c: string) => (stderr = (stderr + c).slice(-2000)));
    const said = () => (stderr.trim() ? `: ${stderr.trim()}` : '');
    const limit = options.timeoutMs ?? 60_000;
    // Settled at once, not on 'close': a plugin's own children may hold its stdout open.
    const timer = interactive
      ? undefined
      : setTimeout(() => {
          child.kill('SIGKILL');
          fail(new Error(`${where}.command "${exec.command}" did not finish in ${limit / 1000} s and was killed${said()}`));
        }, limit);
    const hint = exec.installHint ? ` (${exec.installHint.trim()})` : '';
    child.on('error', (err: NodeJS.ErrnoException) => {
      fail(new Error(err.code === 'ENOENT' ? `${where}.command "${exec.command}" was not found on PATH${hint}` : `${where}.command "${exec.command}" could not run: ${err.message}`));
    });
    child.on('close', (code, signal) => {
      if (signal) return fail(new Error(`${where}.command "${exec.command}" was killed by ${signal}${said()}`));
      if (code !== 0) return fail(new Error(`${where}.command "${exec.command}" exited with code ${code}${said()}`));
      try {
        settle({ credential: credentialFrom(stdout, exec.apiVersion, where) });
      } catch (err) {
        fail(err instanceof Error ? err : new Error(String(err)));
      }
    });
  });
}

/** The plugin's stdout, parsed once: an ExecCredential of the configured version with a usable status. */
export function credentialFrom(stdout: string, apiVersion: string, where: string): ExecCredential {
  let json: unknown;
  try {
    json = JSON.parse(stdout);
  } catch {
    throw new Error(`${where}.command printed no ExecCredential JSON on stdout (it printed ${stdout.trim() ? `${JSON.stringify(stdout.trim().slice(0, 80))}…` : 'nothing'})`);
  }
  const parsed = execCredential.safeParse(json);
  if (!parsed.success) {
    throw new Error(`${where}.command printed an ExecCredential that is not valid: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`);
  }
  const { status } = parsed.data;
  if (parsed.data.apiVersion !== apiVersion) throw new Error(`${where}.apiVersion is ${apiVersion}, but the plugin answered with ${parsed.data.apiVersion}: set the version the plugin speaks`);
  if (!!status.clientCertificateData !== !!status.clientKeyData) throw new Error(`${where}.command printed ${status.clientKeyData ? 'status.clientKeyData without status.clientCertificateData' : 'status.clientCertificateData without status.clientKeyData'}: both are needed`);
  if (!status.token && !status.clientCertificateData) throw new Error(`${where}.command printed an ExecCredential with neither status.token nor status.clientCertificateData and status.clientKeyData`);
  return {
    ...(status.token ? { token: status.token } : {}),
    ...(status.clientCertificateData && status.clientKeyData ? { cert: Buffer.from(status.clientCertificateData), key: Buffer.from(status.clientKeyData) } : {}),
    ...(status.expirationTimestamp ? { expiresAt: Date.parse(status.expirationTimestamp) } : {}),
  };
}

/** Re-run this long before the expiry, so that a request does not go out with a token expiring on the way. */
const earlyMs = 10_000;

/** A plugin's credential, cached as client-go caches it. */
export class ExecCredentials {
  private current: ExecCredential | undefined;
  private running: Promise<ExecCredential> | undefined;
  private readonly exec: ExecConfig;
  private readonly options: ExecOptions;
  private readonly run: typeof runExecPlugin;
  private readonly now: () => number;
  constructor(exec: ExecConfig, options: ExecOptions, run: typeof runExecPlugin = runExecPlugin, now: () => number = Date.now) {
    this.exec = exec;
    this.options = options;
    this.run = run;
    this.now = now;
  }

  /** A credential good now: the cached one, else one fresh run shared by every caller. */
  get(): Promise<ExecCredential> {
    const c = this.current;
    if (c && (c.expiresAt === undefined || c.expiresAt - earlyMs > this.now())) return Promise.resolve(c);
    this.running ??= this.run(this.exec, this.options).then(
      (fresh) => {
        this.running = undefined;
        this.current = fresh;
        return fresh;
      },
      (err: unknown) => {
        this.running = undefined;
        throw err;
      },
    );
    return this.running;
  }

  /** The API server refused the credential: the next get() runs the plugin again. */
  forget(): void {
    this.current = undefined;
  }
}
