// How kubectl finds its cluster, for the plugin: --kubeconfig, else every file in $KUBECONFIG
// merged (the first to set a name or current-context wins, as kubectl merges), else
// ~/.kube/config, else in-cluster; --context picks the context, -n or the context's
// namespace the namespace; --as / --as-group impersonate, as kubectl does with headers.
// Reading and merging the files, and exec credential plugins, are the operator's own
// (controller/connection.ts): no client library is bundled for them.
import { existsSync, readFileSync } from 'node:fs';
import { connectionFor, headersOf, inCluster, kubeconfigFiles, mergeKubeconfigs, type Connection } from '../controller/connection.ts';
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

/** Adds kubectl's impersonation headers to every request. */
function impersonating(connection: Connection, as: string | undefined, groups: string[]): Connection {
  if (!as && !groups.length) return connection;
  return {
    getCurrentCluster: () => connection.getCurrentCluster(),
    refused: () => connection.refused?.() ?? false,
    applyToHTTPSOptions: async (opts) => {
      await connection.applyToHTTPSOptions(opts);
      opts.headers = {
        ...headersOf(opts),
        ...(as ? { 'Impersonate-User': as } : {}),
        ...(groups.length ? { 'Impersonate-Group': groups } : {}),
      };
    },
  };
}

export async function target(flags: ClusterFlags): Promise<Target> {
  if (flags.asGroups?.length && !flags.as) throw new UsageError('--as-group needs --as: impersonating groups without a user is refused by the API server');
  if (flags.kubeconfig && !existsSync(flags.kubeconfig)) throw new UsageError(`--kubeconfig ${flags.kubeconfig}: no such file`);
  const present = kubeconfigFiles(flags.kubeconfig);
  let connection: Connection | undefined;
  let namespace: string | undefined;
  let context: string | undefined;
  if (present.length) {
    try {
      const config = mergeKubeconfigs(present);
      context = flags.context ?? config['current-context'];
      namespace = config.contexts?.find((c) => c.name === context)?.context.namespace;
      // A person may answer an exec plugin's prompt when the plugin runs at a terminal.
      connection = connectionFor(config, context, present.join(', '), !!process.stdin.isTTY);
    } catch (err) {
      throw new UsageError(messageOf(err), { cause: err });
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
