// How the operator reaches the API server: its URL, and what each request carries (TLS
// material, a bearer token, impersonation headers). In a cluster — the production path — it
// is the ServiceAccount's; outside, a kubeconfig read here as kubectl reads it: --kubeconfig,
// else every file in $KUBECONFIG merged (the first to set a name or current-context wins),
// else ~/.kube/config. Certificates, tokens, token files, basic auth, tls-server-name,
// impersonation and exec credential plugins (exec-credential.ts) are read here; the legacy
// auth-provider and proxy-url are refused with what to use instead. No client library is
// loaded for it: client-node's KubeConfig alone brought some 30 MB of heap and 65 packages.
import { existsSync, readFileSync } from 'node:fs';
import type { OutgoingHttpHeaders } from 'node:http';
import type { RequestOptions } from 'node:https';
import { homedir } from 'node:os';
import path from 'node:path';
import { load } from 'js-yaml';
import { z } from 'zod';
import { execConfig, ExecCredentials, type ExecCluster } from './exec-credential.ts';

/** What the client needs of a connection. A client-node KubeConfig is one too (the tests pass theirs). */
export interface Connection {
  getCurrentCluster(): { server: string } | null;
  applyToHTTPSOptions(opts: RequestOptions): Promise<void>;
  /** The API server answered 401: forget cached credentials. True when asking again may succeed. */
  refused?(): boolean;
}

const serviceAccountDir = '/var/run/secrets/kubernetes.io/serviceaccount';

interface Material {
  server: string;
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  insecure?: boolean;
  serverName?: string;
  token?: string;
  tokenFile?: string;
  basic?: string;
  headers?: Record<string, string | string[]>;
  exec?: ExecCredentials;
}

/** The headers a request already carries, as an object (node also takes a flat [name, value, …] list). */
export function headersOf(opts: RequestOptions): OutgoingHttpHeaders {
  const h = opts.headers;
  if (h === undefined) return {};
  if (isList(h)) {
    const out: OutgoingHttpHeaders = {};
    for (let i = 0; i + 1 < h.length; i += 2) out[h[i] ?? ''] = h[i + 1];
    return out;
  }
  return h;
}
const isList = (h: OutgoingHttpHeaders | readonly string[]): h is readonly string[] => Array.isArray(h);

/** A token file is re-read at most once a minute: projected service-account tokens rotate. */
function connectionOf(m: Material): Connection {
  let token = m.token;
  let readAt = 0;
  return {
    getCurrentCluster: () => ({ server: m.server }),
    applyToHTTPSOptions: async (opts) => {
      if (m.tokenFile && Date.now() - readAt > 60_000) {
        token = readFileSync(m.tokenFile, 'utf8').trim();
        readAt = Date.now();
      }
      // An exec plugin's credential wins over the kubeconfig's own, as in client-go.
      const fromExec = m.exec ? await m.exec.get() : undefined;
      const bearer = fromExec?.token ?? token;
      if (m.ca) opts.ca = m.ca;
      const cert = fromExec?.cert ?? m.cert;
      const key = fromExec?.cert ? fromExec.key : m.key;
      if (cert) opts.cert = cert;
      if (key) opts.key = key;
      if (m.insecure) opts.rejectUnauthorized = false;
      if (m.serverName) opts.servername = m.serverName;
      if (m.basic && !bearer) opts.auth = m.basic;
      const headers = { ...headersOf(opts), ...m.headers };
      if (bearer) headers.authorization = `Bearer ${bearer}`;
      if (Object.keys(headers).length) opts.headers = headers;
    },
    refused: () => {
      m.exec?.forget();
      return !!m.exec;
    },
  };
}

/** The in-cluster connection, as client-go's rest.InClusterConfig. */
export function inCluster(dir = serviceAccountDir): Connection | undefined {
  const host = process.env.KUBERNETES_SERVICE_HOST;
  const port = process.env.KUBERNETES_SERVICE_PORT;
  if (!host || !port || !existsSync(path.join(dir, 'token'))) return undefined;
  return connectionOf({ server: `https://${host.includes(':') ? `[${host}]` : host}:${port}`, ca: readFileSync(path.join(dir, 'ca.crt')), tokenFile: path.join(dir, 'token') });
}

/**
 * What keeps the in-cluster configuration from being complete, and what provides it; undefined
 * when it is complete. Checked when no kubeconfig is given, so that a pod without its
 * ServiceAccount token says so instead of failing on a fallback address.
 */
export function inClusterProblem(dir = serviceAccountDir, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const outside = 'Outside a cluster, pass --kubeconfig or set KUBECONFIG.';
  const vars = ['KUBERNETES_SERVICE_HOST', 'KUBERNETES_SERVICE_PORT'].filter((v) => !env[v]);
  if (vars.length > 0) {
    return `no kubeconfig and no in-cluster configuration: ${vars.join(' and ')} ${vars.length > 1 ? 'are' : 'is'} not set (the kubelet sets them in every pod from the kubernetes Service; with hostNetwork and no Service, set them in the pod's env). ${outside}`;
  }
  if (!existsSync(path.join(dir, 'token'))) {
    return `in-cluster configuration incomplete: no ServiceAccount token at ${path.join(dir, 'token')} (mounted by the API server's ServiceAccount admission plugin unless the pod or its ServiceAccount sets automountServiceAccountToken: false). ${outside}`;
  }
  if (!existsSync(path.join(dir, 'ca.crt'))) {
    return `in-cluster configuration incomplete: no cluster CA at ${path.join(dir, 'ca.crt')} (projected from the kube-root-ca.crt ConfigMap, which kube-controller-manager's root-ca-cert-publisher writes in every namespace). ${outside}`;
  }
  return undefined;
}

// A kubeconfig as read here: the lists and their entries' shape checked, each cluster and user
// a mapping whose fields are read one by one below (with what is refused named there).
const mapping = z.record(z.string(), z.unknown(), { error: 'must be a mapping' });
/** Entries left empty (`- null`) are skipped, as kubectl skips them. */
const entries = <T extends z.ZodType>(entry: T) =>
  z
    .array(entry.nullable(), { error: 'must be a list' })
    .optional()
    .transform((list) => list?.filter((e): e is z.output<T> => e !== null));
const entryName = z.string({ error: 'must be the entry\'s name' });
const kubeconfigFile = z.object({
  'current-context': z
    .string()
    .nullish()
    .transform((name) => name || undefined),
  contexts: entries(z.object({ name: entryName, context: z.object({ cluster: z.string().default(''), user: z.string().default(''), namespace: z.string().optional() }) })),
  clusters: entries(z.object({ name: entryName, cluster: mapping.optional() })),
  users: entries(z.object({ name: entryName, user: mapping.optional() })),
});
export type KubeconfigFile = z.output<typeof kubeconfigFile>;

const pathKeys = { clusters: ['certificate-authority'], users: ['client-certificate', 'client-key', 'tokenFile'] } as const;

/** Relative paths made absolute against `dir`, and an exec plugin's command too when it names a path. */
function resolvePaths(inner: Record<string, unknown>, keys: readonly string[], dir: string): void {
  for (const key of keys) {
    const value = inner[key];
    if (typeof value === 'string') inner[key] = path.resolve(dir, value);
  }
  const exec = mapping.safeParse(inner.exec);
  if (exec.success && typeof exec.data.command === 'string' && exec.data.command.includes('/')) {
    inner.exec = { ...exec.data, command: path.resolve(dir, exec.data.command) };
  }
}

/**
 * One kubeconfig file, its relative paths made absolute against its own directory (kubectl
 * resolves them per file), and an exec plugin's command too when it names a path.
 */
export function readKubeconfig(file: string): KubeconfigFile {
  let text: unknown;
  try {
    text = load(readFileSync(file, 'utf8')) ?? {};
  } catch (err) {
    throw new Error(`cannot read kubeconfig ${file}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  if (typeof text !== 'object' || Array.isArray(text)) throw new Error(`kubeconfig ${file} is not a kubeconfig (a YAML mapping with clusters, users and contexts)`);
  const parsed = kubeconfigFile.safeParse(text);
  if (!parsed.success) throw new Error(`kubeconfig ${file}: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  const config = parsed.data;
  const dir = path.dirname(path.resolve(file));
  for (const c of config.clusters ?? []) if (c.cluster) resolvePaths(c.cluster, pathKeys.clusters, dir);
  for (const u of config.users ?? []) if (u.user) resolvePaths(u.user, pathKeys.users, dir);
  return config;
}

/** Several kubeconfig files as kubectl merges them: the first to set a name, or current-context, wins. */
export function mergeKubeconfigs(files: string[]): KubeconfigFile {
  let current: string | undefined;
  const contexts: NonNullable<KubeconfigFile['contexts']> = [];
  const clusters: NonNullable<KubeconfigFile['clusters']> = [];
  const users: NonNullable<KubeconfigFile['users']> = [];
  const add = <T extends { name: string }>(into: T[], from: T[] | undefined) => {
    for (const entry of from ?? []) if (!into.some((e) => e.name === entry.name)) into.push(entry);
  };
  for (const file of files) {
    const config = readKubeconfig(file);
    current ??= config['current-context'];
    add(contexts, config.contexts);
    add(clusters, config.clusters);
    add(users, config.users);
  }
  return { 'current-context': current, contexts, clusters, users };
}

/** The kubeconfig files to read: the one given, else $KUBECONFIG's (existing ones), else ~/.kube/config if present. */
export function kubeconfigFiles(file?: string, env = process.env.KUBECONFIG): string[] {
  if (file) return [file];
  if (env) return env.split(path.delimiter).filter((f) => f && existsSync(f));
  const home = path.join(homedir(), '.kube', 'config');
  return existsSync(home) ? [home] : [];
}

const bytes = (data: unknown, ref: unknown) => (typeof data === 'string' ? Buffer.from(data, 'base64') : typeof ref === 'string' ? readFileSync(ref) : undefined);

const named = z.object({ name: z.string() });
/** A cluster's extensions; ones that are not `{name, extension}` are not the exec plugin's. */
const extensions = z.array(z.object({ name: z.string(), extension: z.unknown() }).nullable().catch(null)).catch([]);

/** Fields a kubeconfig may hold that are refused here, with what to do instead. */
function refusal(cluster: Record<string, unknown>, user: Record<string, unknown>, names: { cluster: string; user: string }): string | undefined {
  const provider = user['auth-provider'];
  if (provider) {
    const name = named.safeParse(provider).data?.name;
    return `users["${names.user}"].user.auth-provider${name ? ` (${name})` : ''} is not supported: the legacy auth-provider plugins were removed from kubectl and client-go in Kubernetes 1.26. Use an exec credential plugin (users[].user.exec) instead — gke-gcloud-auth-plugin for GKE, kubelogin for AKS and for OIDC — as kubectl itself now does`;
  }
  if (cluster['proxy-url']) {
    return `clusters["${names.cluster}"].cluster.proxy-url is not supported: the operator connects to the API server directly. Run it where the API server is reachable (in the cluster, as the chart does), or give it a kubeconfig without proxy-url`;
  }
  return undefined;
}

/** What an exec plugin may be told of the cluster (ExecCredential spec.cluster). */
function execCluster(cluster: Record<string, unknown>, ca: Buffer | undefined): ExecCluster {
  const config = extensions.parse(cluster.extensions).find((e) => e?.name === 'client.authentication.k8s.io/exec')?.extension;
  return {
    server: cluster.server,
    ...(cluster['tls-server-name'] ? { 'tls-server-name': cluster['tls-server-name'] } : {}),
    ...(cluster['insecure-skip-tls-verify'] ? { 'insecure-skip-tls-verify': true } : {}),
    ...(ca ? { 'certificate-authority-data': ca.toString('base64') } : {}),
    ...(config !== undefined ? { config } : {}),
  };
}

/** kubectl's impersonation fields of a kubeconfig user, as request headers. */
function impersonation(user: Record<string, unknown>): Record<string, string | string[]> {
  const headers: Record<string, string | string[]> = {};
  if (typeof user.as === 'string' && user.as) headers['Impersonate-User'] = user.as;
  if (typeof user['as-uid'] === 'string' && user['as-uid']) headers['Impersonate-Uid'] = user['as-uid'];
  const groups = user['as-groups'];
  if (Array.isArray(groups) && groups.length) headers['Impersonate-Group'] = Array.from(groups, String);
  for (const [k, v] of Object.entries(mapping.safeParse(user['as-user-extra']).data ?? {})) headers[`Impersonate-Extra-${encodeURIComponent(k)}`] = (Array.isArray(v) ? v : [v]).map(String);
  return headers;
}

/**
 * The connection a parsed kubeconfig names for `contextName` (its paths already absolute, as
 * readKubeconfig makes them); `where` names the file(s) in errors. `interactive`: an exec
 * plugin may prompt (the kubectl plugin at a terminal).
 */
export function connectionFor(config: KubeconfigFile, contextName: string | undefined, where: string, interactive = false): Connection {
  const contexts = (config.contexts ?? []).map((c) => c.name).join(', ') || 'none';
  if (!contextName) throw new Error(`no current-context in ${where}: set one (kubectl config use-context NAME; contexts: ${contexts})`);
  const context = config.contexts?.find((c) => c.name === contextName)?.context;
  if (!context) throw new Error(`context "${contextName}" not found in ${where} (contexts: ${contexts})`);
  if (!context.cluster) throw new Error(`context "${contextName}" in ${where} names no cluster: set contexts[].context.cluster`);
  const cluster = config.clusters?.find((c) => c.name === context.cluster)?.cluster;
  if (!cluster) throw new Error(`context "${contextName}" names cluster "${context.cluster}", which is not in ${where}`);
  if (typeof cluster.server !== 'string' || !cluster.server) throw new Error(`clusters["${context.cluster}"].cluster.server is not set in ${where}: it must be the API server's URL`);
  // A context without a known user is anonymous, as in kubectl.
  const user = config.users?.find((u) => u.name === context.user)?.user ?? {};
  const names = { cluster: context.cluster, user: context.user };
  const refused = refusal(cluster, user, names);
  if (refused) throw new Error(refused);
  const material: Material = { server: cluster.server };
  const ca = bytes(cluster['certificate-authority-data'], cluster['certificate-authority']);
  const cert = bytes(user['client-certificate-data'], user['client-certificate']);
  const key = bytes(user['client-key-data'], user['client-key']);
  if (ca) material.ca = ca;
  if (cert) material.cert = cert;
  if (key) material.key = key;
  if (cluster['insecure-skip-tls-verify'] === true) material.insecure = true;
  if (typeof cluster['tls-server-name'] === 'string' && cluster['tls-server-name']) material.serverName = cluster['tls-server-name'];
  if (typeof user.token === 'string' && user.token) material.token = user.token;
  if (typeof user.tokenFile === 'string') material.tokenFile = user.tokenFile;
  if (typeof user.username === 'string' && user.username) material.basic = `${user.username}:${typeof user.password === 'string' ? user.password : ''}`;
  const headers = impersonation(user);
  if (Object.keys(headers).length) material.headers = headers;
  if (user.exec) {
    const execWhere = `users["${context.user}"].user.exec`;
    const exec = execConfig.safeParse(user.exec);
    if (!exec.success) throw new Error(`${execWhere} in ${where} is not valid: ${exec.error.issues.map((i) => `${[execWhere, ...i.path].join('.')}: ${i.message}`).join('; ')}`);
    material.exec = new ExecCredentials(exec.data, { where: execWhere, cluster: execCluster(cluster, ca), interactive });
  }
  return connectionOf(material);
}

/**
 * The operator's connection: the kubeconfig given, else $KUBECONFIG's files merged, else
 * ~/.kube/config, else in-cluster — naming what is missing rather than falling back to an
 * address where nothing listens.
 */
export function loadConnection(file?: string): Promise<Connection> {
  return Promise.resolve().then(() => {
    if (file && !existsSync(file)) throw new Error(`--kubeconfig ${file}: no such file`);
    const files = kubeconfigFiles(file);
    if (!files.length) {
      if (process.env.KUBECONFIG) throw new Error(`KUBECONFIG=${process.env.KUBECONFIG} names no file that exists: fix it, or unset it to use ~/.kube/config or the in-cluster configuration`);
      const problem = inClusterProblem();
      const connection = problem ? undefined : inCluster();
      if (!connection) throw new Error(problem ?? `in-cluster configuration incomplete: the ServiceAccount token at ${serviceAccountDir} went away while starting`);
      return connection;
    }
    const config = mergeKubeconfigs(files);
    return connectionFor(config, config['current-context'], files.join(path.delimiter));
  });
}
