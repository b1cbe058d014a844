// What a ServiceUser is called, wherever it is named: its identity (the user name
// verification answers with and the certificate's subject), the friendly name a person reads,
// the Secret that holds its credentials, and the labels the operator puts on what it makes.
// Pure and shared by the reconciler, verification and the plugin, so all three name a
// ServiceUser the same way.
import type { ServiceUser } from './serviceuser.ts';

export const managedBy = 'service-user-operator';
export const labels = { managedBy: 'app.kubernetes.io/managed-by', name: 'serviceusers.dev/name' } as const;

export const identityOf = (su: { metadata: { namespace?: string | undefined; name: string } }) => `serviceuser:${su.metadata.namespace}:${su.metadata.name}`;
export const friendlyNameOf = (su: Pick<ServiceUser, 'metadata'> & { spec: Pick<ServiceUser['spec'], 'friendlyName'> }) => su.spec.friendlyName ?? su.metadata.name;
export const secretNameOf = (su: ServiceUser) => su.spec.credentials.secretName ?? `${su.metadata.name}-credentials`;
