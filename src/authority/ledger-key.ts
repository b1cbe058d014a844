// The ledger key's home: an Opaque Secret in the operator's namespace (`key.<id>` entries and
// `current`, see src/credentials/mac.ts). Created on first start when absent, as the CA is;
// one that is there is validated, and a problem stops the start with the entry at fault.
// Every replica loads it: followers verify what the leader MACs. `create: false` (the
// verifier, which may only read it) never creates: absent is a 404.
import { keyRingData, newLedgerKey, parseKeyRing, type KeyRing } from '../credentials/mac.ts';
import { isConflict, isNotFound, type KubeClient, type KubeObject } from '../controller/kube.ts';
import type { Logger } from '../observability/logger.ts';

export const ledgerKeyLabels = { 'app.kubernetes.io/managed-by': 'service-user-operator', 'app.kubernetes.io/component': 'ledger-key' } as const;

/** The ring a Secret holds; the error names the Secret and the entry. */
export function keyRingOf(secret: KubeObject): KeyRing {
  const data = Object.fromEntries(Object.entries((secret.data ?? {}) as Record<string, string>).map(([k, v]) => [k, Buffer.from(v, 'base64')]));
  try {
    return parseKeyRing(data);
  } catch (err) {
    throw new Error(`the ledger key Secret ${secret.metadata.namespace}/${secret.metadata.name} cannot be used: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
}

export async function ensureLedgerKey(client: KubeClient, namespace: string, name: string, log: Logger, { create = true } = {}): Promise<KeyRing> {
  const path = `/api/v1/namespaces/${encodeURIComponent(namespace)}/secrets/${encodeURIComponent(name)}`;
  let secret: KubeObject | undefined;
  try {
    secret = await client.get(path);
  } catch (err) {
    if (!isNotFound(err) || !create) throw err;
  }
  if (!secret) {
    const key = newLedgerKey();
    try {
      secret = await client.request('POST', `/api/v1/namespaces/${encodeURIComponent(namespace)}/secrets`, {
        apiVersion: 'v1',
        kind: 'Secret',
        type: 'Opaque',
        metadata: { name, namespace, labels: ledgerKeyLabels },
        data: Object.fromEntries(Object.entries(keyRingData({ current: key, keys: [key] })).map(([k, v]) => [k, v.toString('base64')])),
      });
      log.info({ secret: `${namespace}/${name}` }, 'created the ledger key');
    } catch (err) {
      // Another replica created it first: use theirs.
      if (!isConflict(err)) throw err;
      secret = await client.get(path);
    }
  }
  return keyRingOf(secret!);
}
