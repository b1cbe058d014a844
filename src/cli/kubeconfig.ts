// How kubectl finds its cluster, for the plugin: --kubeconfig, else every file in $KUBECONFIG
// merged (the first to set a name or current-context wins, as kubectl merges), else
// ~/.kube/config, else in-cluster; --context picks the context, -n or the context's
// namespace the namespace; --as / --as-group impersonate, as kubectl does with headers.
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import { load } from 'js-yaml';
import { inCluster, simpleConnection, type Connection, type KubeconfigFile } from '../controller/connection.ts';
import { messageOf, UsageError } from './errors.ts';

export interface ClusterFlags {
  kubeconfig?: string | undefined;
  context?: string | undefined;
  namespace?: string | undefined;
  as?: string | undefined;
  asGroups?: string[] | undefined;
}

export interface Target {
  connection: Connection;
  /** The namespace: -n, else the context's, else default. */
  namespace: string;
  /** The context's name, for messages. */
  context: string | undefined;
}

const pathKeys: Record<string, string[]> = {
  clusters: ['certificate-authority'],
  users: ['client-certificate', 'client-key', 'tokenFile'],
};

/** One file's entries with their relative paths made absolute (kubectl resolves them per file). */
function readFile(file: string): KubeconfigFile {
  let config: KubeconfigFile;
  try {
    config = (load(readFileSync(file, 'utf8')) ?? {}) as KubeconfigFile;
  } catch (err) {
    throw new UsageError(`cannot read kubeconfig ${file}: ${messageOf(err)}`);
  }
  const dir = path.dirname(path.resolve(file));
  for (const [list, keys] of Object.entries(pathKeys)) {
    for (const entry of (config[list as 'clusters' | 'users'] ?? []) as unknown as Record<string, Record<string, unknown> | undefined>[]) {
      const inner = entry[list === 'clusters' ? 'cluster' : 'user'];
      for (const key of keys) if (inner && typeof inner[key] === 'string') inner[key] = path.resolve(dir, inner[key]);
    }
  }
  return config;
}

function merge(files: string[]): KubeconfigFile {
  const merged: KubeconfigFile = { contexts: [], clusters: [], users: [] };
  for (const file of files) {
    const config = readFile(file);
    merged['current-context'] ??= config['current-context'] || undefined;
    for (const list of ['contexts', 'clusters', 'users'] as const) {
      for (const entry of (config[list] ?? []) as { name: string }[]) {
        if (!(merged[list] as { name: string }[]).some((e) => e.name === entry.name)) (merged[list] as { name: string }[]).push(entry);
      }
    }
  }
  return merged;
}

/** Adds kubectl's impersonation headers to every request. */
function impersonating(connection: Connection, as: string | undefined, groups: string[]): Connection {
  if (!as && !groups.length) return connection;
  return {
    getCurrentCluster: () => connection.getCurrentCluster(),
    applyToHTTPSOptions: async (opts) => {
      await connection.applyToHTTPSOptions(opts);
      opts.headers = {
        ...(opts.headers as Record<string, string> | undefined),
        ...(as ? { 'Impersonate-User': as } : {}),
        ...(groups.length ? { 'Impersonate-Group': groups } : {}),
      };
    },
  };
}

export async function target(flags: ClusterFlags): Promise<Target> {
  if (flags.asGroups?.length && !flags.as) throw new UsageError('--as-group needs --as: impersonating groups without a user is refused by the API server');
  const env = process.env.KUBECONFIG;
  const home = path.join(homedir(), '.kube', 'config');
  const files = flags.kubeconfig ? [flags.kubeconfig] : env ? env.split(path.delimiter).filter(Boolean) : existsSync(home) ? [home] : [];
  for (const f of files) {
    if (flags.kubeconfig && !existsSync(f)) throw new UsageError(`--kubeconfig ${f}: no such file`);
  }
  const present = files.filter((f) => existsSync(f));
  let connection: Connection | undefined;
  let namespace: string | undefined;
  let context: string | undefined;
  if (present.length) {
    const config = merge(present);
    context = flags.context ?? config['current-context'];
    const entry = config.contexts?.find((c) => c.name === context);
    if (!context) throw new UsageError(`no current context in ${present.join(', ')}: pass --context (one of: ${(config.contexts ?? []).map((c) => c.name).join(', ') || 'none'})`);
    if (!entry) throw new UsageError(`context "${context}" not found in ${present.join(', ')} (contexts: ${(config.contexts ?? []).map((c) => c.name).join(', ') || 'none'})`);
    namespace = (entry.context as { namespace?: string }).namespace;
    connection = simpleConnection(config, '/', context);
    if (!connection) {
      // exec plugins, auth providers, proxies: client-node's KubeConfig knows them.
      const { KubeConfig } = await import('@kubernetes/client-node');
      const kc = new KubeConfig();
      kc.loadFromString(JSON.stringify({ apiVersion: 'v1', kind: 'Config', ...config }));
      kc.setCurrentContext(context);
      if (!kc.getCurrentCluster()) throw new UsageError(`context "${context}" names a cluster that is not in the kubeconfig`);
      connection = kc;
    }
  } else {
    connection = inCluster();
    if (connection && existsSync('/var/run/secrets/kubernetes.io/serviceaccount/namespace')) {
      namespace = readFileSync('/var/run/secrets/kubernetes.io/serviceaccount/namespace', 'utf8').trim();
    }
    if (!connection) throw new UsageError('no kubeconfig found: pass --kubeconfig, set KUBECONFIG, or create ~/.kube/config');
  }
  return { connection: impersonating(connection, flags.as, flags.asGroups ?? []), namespace: flags.namespace ?? namespace ?? 'default', context };
}
