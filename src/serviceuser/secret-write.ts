// Writing a user's Secret: the Secret as a reconcile sees it, whether it already is what the
// plan wants, and the one write that makes it so.
//
// A new Secret is created complete by one POST (which fails when the name is taken: the
// operator never adopts a Secret someone else created, see ownership.ts). A plan without
// credential keys (the end-date wipe) is one merge patch that removes them whoever owns
// them. Any other change is
// a server-side apply; fields the creating POST left to its "Update" field-manager entry,
// credential keys someone else took over, and secretTemplate keys the platform refuses, are
// then removed explicitly — an apply only removes what its own earlier applies set.
import { createHash } from 'node:crypto';
import { apiVersion } from '../api/primitives.ts';
import { resources } from '../api/resources.ts';
import type { ServiceUser } from '../api/serviceuser.ts';
import { resourcePath, type KubeClient, type KubeObject } from '../controller/kube.ts';
import { stableJson } from '../controller/stable-json.ts';
import { annotations as ann, type DesiredSecret, type ObservedSecret } from './desired.ts';
import { createUnlessPresent, isOwnedBy, ownerOf } from './ownership.ts';
import { credentialKeys } from './secret.ts';

/**
 * The Secret as a reconcile sees it. `rawDigest`: its data is known only by digest (what our
 * last write left, which the metadata cache shows unchanged) — read as empty by everything
 * but upToDate. `uid`: the object's, the precondition of a merge patch.
 */
export type SeenSecret = ObservedSecret & { rawDigest?: string; uid?: string };

const decode = (data: Record<string, string> | undefined) =>
  Object.fromEntries(Object.entries(data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]));
const encode = (data: Record<string, string | Buffer>) =>
  Object.fromEntries(Object.entries(data).map(([k, v]) => [k, (typeof v === 'string' ? Buffer.from(v, 'utf8') : v).toString('base64')]));

export const digestOf = (data: Record<string, string> | undefined) => createHash('sha256').update(stableJson(data ?? {})).digest('base64');

export function observeSecret(secret: KubeObject | undefined, rawDigest?: string): SeenSecret | undefined {
  if (!secret) return undefined;
  return {
    ...(rawDigest !== undefined ? { rawDigest } : {}),
    ...(secret.metadata.uid ? { uid: secret.metadata.uid } : {}),
    data: decode(secret.data as Record<string, string> | undefined),
    raw: (secret.data as Record<string, string> | undefined) ?? {},
    labels: secret.metadata.labels ?? {},
    annotations: secret.metadata.annotations ?? {},
    ownerUids: (secret.metadata.ownerReferences ?? []).map((o) => o.uid),
    owner: ownerOf(secret),
  };
}

/** True when the observed Secret already is what we would write. */
export function upToDate(observed: SeenSecret | undefined, want: DesiredSecret, uid: string): boolean {
  if (!observed || !observed.ownerUids.includes(uid)) return false;
  if (observed.rawDigest !== undefined ? observed.rawDigest !== digestOf(encode(want.data)) : stableJson(observed.raw ?? {}) !== stableJson(encode(want.data))) return false;
  for (const [k, v] of Object.entries(want.labels)) if (observed.labels[k] !== v) return false;
  for (const [k, v] of Object.entries(want.annotations)) if (observed.annotations[k] !== v) return false;
  if (want.withheld?.labels.some((k) => k in observed.labels) || want.withheld?.annotations.some((k) => k in observed.annotations)) return false;
  return !Object.values(ann).some((k) => k in observed.annotations && !(k in want.annotations));
}

/** A Secret that is there but not as the cache said (the POST found the name taken): read it live next time. */
export class SecretTaken extends Error {}

/** The keys under data, metadata.labels and metadata.annotations a managedFields entry owns. */
function ownedKeys(entry: { fieldsV1?: unknown }): { data: string[]; labels: string[]; annotations: string[] } {
  const f = (entry.fieldsV1 ?? {}) as Record<string, Record<string, unknown> | undefined>;
  const keys = (o: unknown) => Object.keys((o as object | undefined) ?? {}).filter((k) => k.startsWith('f:')).map((k) => k.slice(2));
  const meta = f['f:metadata'] ?? {};
  return { data: keys(f['f:data']), labels: keys(meta['f:labels']), annotations: keys(meta['f:annotations']) };
}

export interface SecretWriter {
  /** Makes the Secret what `want` says; `seen` is how the reconcile saw it (undefined: absent). Returns it as written. */
  write(su: ServiceUser, want: DesiredSecret, seen: SeenSecret | undefined): Promise<KubeObject>;
}

export function secretWriter(client: KubeClient, fieldManager: string): SecretWriter {
  const path = (ns: string, name: string) => resourcePath(resources.secrets, ns, name);
  const ownerReferencesOf = (su: ServiceUser) => [{ apiVersion, kind: 'ServiceUser', name: su.metadata.name, uid: su.metadata.uid!, controller: true, blockOwnerDeletion: true }];

  async function create(su: ServiceUser, want: DesiredSecret): Promise<KubeObject> {
    const ns = su.metadata.namespace!;
    const created = await createUnlessPresent(client, resourcePath(resources.secrets, ns), {
      apiVersion: 'v1',
      kind: 'Secret',
      type: 'Opaque',
      metadata: { name: want.name, namespace: ns, labels: want.labels, annotations: want.annotations, ownerReferences: ownerReferencesOf(su) },
      data: encode(want.data),
    }, fieldManager);
    if (!isOwnedBy(created, su.metadata.uid)) {
      // Created by someone else since our read: the next pass reads it and says whose it is.
      throw new SecretTaken(`Secret ${want.name} was created by ${ownerOf(created)} while the operator was about to create it; it is left untouched`);
    }
    // Ours, created by an earlier pass the reconcile's view did not show yet: the next pass reads it.
    if (!upToDate(observeSecret(created), want, su.metadata.uid!)) throw new SecretTaken(`Secret ${want.name} already exists (created by an earlier pass); it is read again`);
    return created;
  }

  /**
   * The end-date wipe: what `want` holds, every credential key removed and the token
   * annotations it no longer has. A merge patch removes a key whoever owns it, so the wipe is
   * one write however the Secret was written; the uid makes it fail on a Secret deleted and
   * created again by someone else since the reconcile saw it.
   */
  function wipe(su: ServiceUser, want: DesiredSecret, seen: SeenSecret): Promise<KubeObject> {
    const nulls = (keys: string[], keep: object) => Object.fromEntries(keys.filter((k) => !(k in keep)).map((k) => [k, null]));
    return client.mergePatch(`${path(su.metadata.namespace!, want.name)}?fieldManager=${encodeURIComponent(fieldManager)}`, {
      metadata: {
        uid: seen.uid,
        labels: { ...want.labels, ...nulls(want.withheld?.labels ?? [], want.labels) },
        annotations: { ...want.annotations, ...nulls([...Object.values(ann), ...(want.withheld?.annotations ?? [])], want.annotations) },
      },
      data: { ...encode(want.data), ...nulls(credentialKeys, want.data) },
    });
  }

  async function apply(su: ServiceUser, want: DesiredSecret): Promise<KubeObject> {
    const ns = su.metadata.namespace!;
    const applied = await client.apply(
      path(ns, want.name),
      { apiVersion: 'v1', kind: 'Secret', type: 'Opaque', metadata: { name: want.name, namespace: ns, labels: want.labels, annotations: want.annotations, ownerReferences: ownerReferencesOf(su) }, data: encode(want.data) },
      fieldManager,
    );
    // What survives an apply without it: a credential key someone else took ownership of
    // (kubectl edit), and whatever our creating POST set that this apply no longer does —
    // unless another manager owns that too (an apply would leave it to them as well).
    const entries = (applied.metadata.managedFields ?? []) as { manager?: string; operation?: string; subresource?: string; fieldsV1?: unknown }[];
    const ours = (m: (typeof entries)[number]) => m.manager === fieldManager && !m.subresource;
    const created = entries.filter((m) => ours(m) && m.operation === 'Update').map(ownedKeys);
    const others = entries.filter((m) => !ours(m) && !m.subresource).map(ownedKeys);
    const leftOver = (part: 'data' | 'labels' | 'annotations', wanted: object, present: object | undefined) =>
      [...new Set(created.flatMap((c) => c[part]))].filter((k) => !(k in wanted) && k in (present ?? {}) && !others.some((o) => o[part].includes(k)));
    const data = [...new Set([...credentialKeys.filter((k) => !(k in want.data) && k in ((applied.data as object | undefined) ?? {})), ...leftOver('data', want.data, applied.data as object)])];
    // A refused secretTemplate key (one that has another controller copy the Secret) goes, whoever set it.
    const withheld = (keys: string[] | undefined, present: object | undefined) => (keys ?? []).filter((k) => k in (present ?? {}));
    const labels = [...new Set([...leftOver('labels', want.labels, applied.metadata.labels), ...withheld(want.withheld?.labels, applied.metadata.labels)])];
    const annotations = [...new Set([...leftOver('annotations', want.annotations, applied.metadata.annotations), ...withheld(want.withheld?.annotations, applied.metadata.annotations)])];
    if (!data.length && !labels.length && !annotations.length) return applied;
    const nulls = (keys: string[]) => (keys.length ? Object.fromEntries(keys.map((k) => [k, null])) : undefined);
    return client.mergePatch(path(ns, want.name), {
      metadata: { uid: applied.metadata.uid, ...(labels.length ? { labels: nulls(labels) } : {}), ...(annotations.length ? { annotations: nulls(annotations) } : {}) },
      ...(data.length ? { data: nulls(data) } : {}),
    });
  }

  return {
    write(su, want, seen) {
      if (!seen) return create(su, want);
      const wiping = !credentialKeys.some((k) => k in want.data);
      return wiping && seen.uid ? wipe(su, want, seen) : apply(su, want);
    },
  };
}
