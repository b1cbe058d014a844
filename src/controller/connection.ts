// How the operator reaches the API server: its URL, and what each request carries (TLS
// material, a bearer token). In a cluster — the production path — and for kubeconfigs that
// only name certificates, tokens or token files, it is read here. Anything more (exec
// plugins, auth providers, proxies, several merged files) goes to client-node's KubeConfig,
// imported only then: loading it brings client-node's whole generated API, some 30 MB of
// heap the operator would otherwise carry for one class.
import { existsSync, readFileSync } from 'node:fs';
import type { RequestOptions } from 'node:https';
import { homedir } from 'node:os';
import path from 'node:path';
import { load } from 'js-yaml';

/** The part of client-node's KubeConfig the client uses; a KubeConfig is one. */
export interface Connection {
  getCurrentCluster(): { server: string } | null;
  applyToHTTPSOptions(opts: RequestOptions): Promise<void>;
}

const serviceAccountDir = '/var/run/secrets/kubernetes.io/serviceaccount';

interface Material {
  server: string;
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  insecure?: boolean;
  token?: string;
  tokenFile?: string;
}

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
      if (m.ca) opts.ca = m.ca;
      if (m.cert) opts.cert = m.cert;
      if (m.key) opts.key = m.key;
      if (m.insecure) opts.rejectUnauthorized = false;
      if (token) opts.headers = { ...(opts.headers as Record<string, string> | undefined), authorization: `Bearer ${token}` };
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

type Named<T> = { name: string } & T;
export interface KubeconfigFile {
  'current-context'?: string;
  contexts?: Named<{ context: { cluster: string; user: string } }>[];
  clusters?: Named<{ cluster: Record<string, unknown> }>[];
  users?: Named<{ user: Record<string, unknown> }>[];
}

const clusterKeys = new Set(['server', 'certificate-authority', 'certificate-authority-data', 'insecure-skip-tls-verify', 'extensions']);
const userKeys = new Set(['client-certificate', 'client-certificate-data', 'client-key', 'client-key-data', 'token', 'tokenFile', 'extensions']);

/**
 * A kubeconfig file read here when it only uses what this module knows; undefined when it
 * needs client-node (exec, auth-provider, basic auth, proxy-url, tls-server-name…).
 */
export function simpleKubeconfig(file: string): Connection | undefined {
  return simpleConnection(load(readFileSync(file, 'utf8')) as KubeconfigFile, path.dirname(file));
}

/** As simpleKubeconfig, for a parsed kubeconfig whose relative paths are relative to `dir`; `contextName` overrides current-context. */
export function simpleConnection(config: KubeconfigFile, dir: string, contextName = config['current-context']): Connection | undefined {
  const context = config.contexts?.find((c) => c.name === contextName)?.context;
  const cluster = config.clusters?.find((c) => c.name === context?.cluster)?.cluster;
  const user = config.users?.find((u) => u.name === context?.user)?.user ?? {};
  if (!context || !cluster || typeof cluster.server !== 'string') return undefined;
  if (Object.keys(cluster).some((k) => !clusterKeys.has(k)) || Object.keys(user).some((k) => !userKeys.has(k))) return undefined;
  const bytes = (data: unknown, ref: unknown) =>
    typeof data === 'string' ? Buffer.from(data, 'base64') : typeof ref === 'string' ? readFileSync(path.resolve(dir, ref)) : undefined;
  const material: Material = { server: cluster.server };
  const ca = bytes(cluster['certificate-authority-data'], cluster['certificate-authority']);
  const cert = bytes(user['client-certificate-data'], user['client-certificate']);
  const key = bytes(user['client-key-data'], user['client-key']);
  if (ca) material.ca = ca;
  if (cert) material.cert = cert;
  if (key) material.key = key;
  if (cluster['insecure-skip-tls-verify'] === true) material.insecure = true;
  if (typeof user.token === 'string') material.token = user.token;
  if (typeof user.tokenFile === 'string') material.tokenFile = path.resolve(dir, user.tokenFile);
  return connectionOf(material);
}

/**
 * The connection client-node's loadFromDefault would make: the file given, else $KUBECONFIG,
 * else ~/.kube/config, else in-cluster.
 */
export async function loadConnection(file?: string): Promise<Connection> {
  const env = process.env.KUBECONFIG;
  const home = path.join(homedir(), '.kube', 'config');
  const chosen = file ?? (env && !env.includes(path.delimiter) ? env : env ? undefined : existsSync(home) ? home : undefined);
  if (!chosen && !env) {
    // No kubeconfig anywhere: in a pod. client-node would fall back to http://localhost:8080
    // and fail on that instead of on what is actually missing.
    const problem = inClusterProblem();
    if (problem) throw new Error(problem);
  }
  const simple = chosen ? simpleKubeconfig(chosen) : !env ? inCluster() : undefined;
  if (simple) return simple;
  const { KubeConfig } = await import('@kubernetes/client-node');
  const kc = new KubeConfig();
  if (file) kc.loadFromFile(file);
  else kc.loadFromDefault();
  if (!kc.getCurrentCluster()) throw new Error('no Kubernetes cluster configured: pass --kubeconfig, set KUBECONFIG, or run in a cluster');
  return kc;
}
