// A Kubernetes object as the API server sends it: metadata typed, the rest opaque until a
// schema (api/*.ts) parses it. Shared by the client (controller/kube.ts) and the typed stores.
export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  finalizers?: string[];
  managedFields?: unknown[];
  ownerReferences?: { apiVersion: string; kind: string; name: string; uid: string; controller?: boolean; blockOwnerDeletion?: boolean }[];
}

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
  [key: string]: unknown;
}

/**
 * A Secret's or ConfigMap's `data` (or `binaryData`): its string entries, the only kind the
 * API server sends; anything else (an object built by hand) reads as absent.
 */
export function stringMap(obj: KubeObject, field: 'data' | 'binaryData' = 'data'): Record<string, string> {
  const value = obj[field];
  const out: Record<string, string> = {};
  if (typeof value === 'object' && value !== null) for (const [k, v] of Object.entries(value)) if (typeof v === 'string') out[k] = v;
  return out;
}
