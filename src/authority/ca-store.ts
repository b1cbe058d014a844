// The built-in CA's home: a kubernetes.io/tls Secret in the operator's namespace. Created on
// first start when absent; a Secret the user put there (their own CA) is used as it is.
// `create: false` (the verifier, which may only read it) never creates: absent is a 404.
import { createCa, loadCa, type Ca } from '../credentials/ca.ts';
import { stringMap } from '../api/object.ts';
import { isConflict, isNotFound, type KubeClient, type KubeObject } from '../controller/kube.ts';
import type { Logger } from '../observability/logger.ts';

export async function ensureCa(client: KubeClient, namespace: string, name: string, log: Logger, { create = true } = {}): Promise<Ca> {
  const path = `/api/v1/namespaces/${encodeURIComponent(namespace)}/secrets/${encodeURIComponent(name)}`;
  const secret = (await existing(client, path, create)) ?? (await created());
  async function created(): Promise<KubeObject> {
    const material = await createCa();
    try {
      const made = await client.request('POST', `/api/v1/namespaces/${encodeURIComponent(namespace)}/secrets`, {
        apiVersion: 'v1',
        kind: 'Secret',
        type: 'kubernetes.io/tls',
        metadata: { name, namespace, labels: { 'app.kubernetes.io/managed-by': 'service-user-operator', 'app.kubernetes.io/component': 'ca' } },
        data: { 'tls.crt': Buffer.from(material.certPem).toString('base64'), 'tls.key': Buffer.from(material.keyPem).toString('base64') },
      });
      log.info({ secret: `${namespace}/${name}` }, 'created the built-in CA');
      return made;
    } catch (err) {
      // Another replica created it first: use theirs.
      if (!isConflict(err)) throw err;
      return client.get(path);
    }
  }
  const data = stringMap(secret);
  const text = (key: string) => (data[key] ? Buffer.from(data[key], 'base64').toString('utf8') : '');
  try {
    return await loadCa({ certPem: text('tls.crt'), keyPem: text('tls.key') });
  } catch (err) {
    throw new Error(`the CA Secret ${namespace}/${name} cannot be used: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
}

/** The Secret at `path`, or undefined when it is absent and may be created. */
export async function existing(client: KubeClient, path: string, create: boolean): Promise<KubeObject | undefined> {
  try {
    return await client.get(path);
  } catch (err) {
    if (!isNotFound(err) || !create) throw err;
    return undefined;
  }
}
