// A ServiceUser's status by server-side apply, under one field manager per controller that
// writes it: the ServiceUser reconcile (reconcile.ts), the restarts controller and the notices
// controller each apply only the fields they own (conditions and notices are map lists keyed by
// type and key: an entry another manager applied survives our apply), so none clobbers another's.
import { apiVersion } from '../api/primitives.ts';
import { resources } from '../api/resources.ts';
import { resourcePath, type KubeClient, type KubeObject } from '../controller/kube.ts';

export function applyServiceUserStatus(client: KubeClient, su: KubeObject, status: unknown, fieldManager: string): Promise<KubeObject> {
  return client.apply(
    resourcePath(resources.serviceUsers, su.metadata.namespace!, su.metadata.name, 'status'),
    { apiVersion, kind: 'ServiceUser', metadata: { name: su.metadata.name, namespace: su.metadata.namespace }, status },
    fieldManager,
  );
}

/** The field manager of a controller beside the ServiceUser reconcile (cert-manager names its per-concern controllers' managers alike). */
export const managerOf = (fieldManager: string, controller: 'restarts' | 'notices') => `${fieldManager}-${controller}`;
