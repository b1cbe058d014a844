// The plugin's reach into the cluster: a client for the chosen context, reading
// ServiceUsers, and API errors turned into messages that say what to do.
import { resources } from '../api/resources.ts';
import { ApiError, KubeClient, resourcePath, type KubeObject } from '../controller/kube.ts';
import { UsageError } from './errors.ts';
import { target } from './kubeconfig.ts';
import type { Invocation } from './main.ts';

export interface Session {
  client: KubeClient;
  namespace: string;
  context: string | undefined;
}

export async function withCluster<T>(inv: Invocation, fn: (s: Session) => Promise<T>): Promise<T> {
  const t = await target({
    kubeconfig: inv.flags.kubeconfig,
    context: inv.flags.context,
    namespace: inv.flags.namespace,
    as: inv.flags.as,
    asGroups: inv.flags['as-group'],
  });
  const client = new KubeClient(t.connection);
  try {
    return await fn({ client, namespace: t.namespace, context: t.context });
  } catch (err) {
    throw explain(err, client.server.toString());
  } finally {
    client.close();
  }
}

/** An API or network error as kubectl words it, plus what to do. */
export function explain(err: unknown, server: string): Error {
  if (err instanceof UsageError) return err;
  if (err instanceof ApiError) {
    const message = err.message.replace(/^\w+ \S+: \d+ /, '');
    if (err.status === 401) return new UsageError(`You must be logged in to the server (Unauthorized): check --kubeconfig and --context`);
    if (err.status === 403) return new UsageError(`Error from server (Forbidden): ${message}`);
    if (err.status === 404 && /the server could not find the requested resource/.test(message)) {
      return new UsageError('the ServiceUser API (serviceusers.dev/v1alpha1) is not installed in this cluster: kubectl apply --server-side -f crds/');
    }
    return new UsageError(`Error from server (${err.reason ?? err.status}): ${message}`);
  }
  const code = err instanceof Error && 'code' in err && typeof err.code === 'string' ? err.code : undefined;
  if (code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'ETIMEDOUT' || code === 'ECONNRESET') {
    return new UsageError(`cannot reach the API server at ${server} (${code}): is the cluster up, and is --context right?`);
  }
  return err instanceof Error ? err : new Error(String(err));
}

export const suPath = (ns: string | undefined, name?: string) => resourcePath(resources.serviceUsers, ns, name);

/** The ServiceUser, read as `T` (the fields the command reads; the API server validated it against the CRD). */
export async function readServiceUser<T extends KubeObject = KubeObject>(s: Session, name: string): Promise<T> {
  try {
    return await s.client.get<T>(suPath(s.namespace, name));
  } catch (err) {
    if (err instanceof ApiError && err.status === 404 && !/could not find the requested resource/.test(err.message)) {
      throw new UsageError(`serviceuser "${name}" not found in namespace "${s.namespace}" (kubectl service-user list -n ${s.namespace}, or pass -n)`);
    }
    throw err;
  }
}

export function needName(inv: Invocation, what = 'NAME'): string {
  const name = inv.args[0];
  if (!name) throw new UsageError(`${what} is required: kubectl service-user ${inv.command} ${what}`);
  return name;
}
