// The ledger key's home: an Opaque Secret in the operator's namespace (`key.<id>` entries and
// `current`, see src/credentials/mac.ts). Created on first start when absent, as the CA is;
// one that is there is validated, and a problem stops the start with the entry at fault.
// Every replica loads it: followers verify what the leader MACs. `create: false` (the
// verifier, which may only read it) never creates: absent is a 404.
import { keyRingData, newLedgerKey, parseKeyRing, type KeyRing } from '../credentials/mac.ts';
import { stringMap } from '../api/object.ts';
import { isConflict, type KubeClient, type KubeObject } from '../controller/kube.ts';
import { existing } from './ca-store.ts';
import type { Logger } from '../observability/logger.ts';

export const ledgerKeyLabels = { 'app.kubernetes.io/managed-by': 'service-user-operator', 'app.kubernetes.io/component': 'ledger-key' } as const;

/** The ring a Secret holds; the error names the Secret and the entry. */
export function keyRingOf(secret: KubeObject): KeyRing {
  const data = Object.fromEntries(Object.entries(stringMap(secret)).map(([k, v]) => [k, Buffer.from(v, 'base64')]));
  try {
    return parseKeyRing(data);
  } catch (err) {
    throw new Error(`the ledger key Secret ${secret.metadata.namespace}/${secret.metadata.name} cannot be used: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
}

export async function ensureLedgerKey(client: KubeClient, namespace: string, name: string, log: Logger, { create = true } = {}): Promise<KeyRing> {
  const path = `/api/v1/namespaces/${encodeURIComponent(namespace)}/secrets/${encodeURIComponent(name)}`;
  return keyRingOf((await existing(client, path, create)) ?? (await created()));
  async function created(): Promise<KubeObject> {
    const key = newLedgerKey();
    try {
      const made = await client.request('POST', `/api/v1/namespaces/${encodeURIComponent(namespace)}/secrets`, {
        apiVersion: 'v1',
        kind: 'Secret',
        type: 'Opaque',
        metadata: { name, namespace, labels: ledgerKeyLabels },
        data: Object.fromEntries(Object.entries(keyRingData({ current: key, keys: [key] })).map(([k, v]) => [k, v.toString('base64')])),
      });
      log.info({ secret: `${namespace}/${name}` }, 'created the ledger key');
      return made;
    } catch (err) {
      // Another replica created it first: use theirs.
      if (!isConflict(err)) throw err;
      return client.get(path);
    }
  }
}
