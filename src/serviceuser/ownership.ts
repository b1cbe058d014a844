// Never adopt what the operator did not create. An object is ours when it carries an
// ownerReference to the ServiceUser's uid; we create objects with a POST (which fails when
// the name is taken) rather than a server-side apply (which would merge into, and adopt,
// an object someone else created between our read and our write). Whatever is not ours is
// left untouched, and the condition names its owner.
import { isConflict, isNotFound, type KubeClient, type KubeObject } from '../controller/kube.ts';

export const isOwnedBy = (o: KubeObject | undefined, uid: string | undefined): boolean =>
  !!o && !!uid && (o.metadata.ownerReferences ?? []).some((r) => r.uid === uid);

/**
 * Who an object belongs to, for a person: its controller (or first owner), else the managers
 * that wrote it (not its status: a controller reporting on it does not own it).
 */
export function ownerOf(o: KubeObject): string {
  const refs = o.metadata.ownerReferences ?? [];
  const ref = refs.find((r) => r.controller) ?? refs[0];
  if (ref) return `${ref.kind} ${ref.name}`;
  const fields = (o.metadata.managedFields ?? []) as { manager?: string; subresource?: string }[];
  const managers = [...new Set(fields.filter((m) => !m.subresource).map((m) => m.manager).filter(Boolean))];
  return managers.length ? `field manager ${managers.map((m) => `"${m}"`).join(', ')}` : 'no recorded owner';
}

/**
 * Creates `body` at `collection` unless the name is taken. Returns what is there afterwards:
 * the object just created, or the one someone else created first (read back after a 409).
 */
export async function createUnlessPresent(client: KubeClient, collection: string, body: KubeObject, fieldManager: string): Promise<KubeObject> {
  try {
    return await client.request('POST', `${collection}?fieldManager=${encodeURIComponent(fieldManager)}`, body);
  } catch (err) {
    if (!isConflict(err)) throw err;
    return client.get(`${collection}/${encodeURIComponent(body.metadata.name)}`);
  }
}

/** GET that answers undefined for a missing object. */
export const getIfPresent = (client: KubeClient, path: string): Promise<KubeObject | undefined> =>
  client.get(path).catch((err: unknown) => (isNotFound(err) ? undefined : Promise.reject(err)));

/** The field managers an apply conflicted with, from the API server's message. */
export const conflictingManagers = (err: unknown): string[] => [...new Set([...String((err as Error).message).matchAll(/conflicts? with "([^"]+)"/g)].map((m) => m[1]!))];
