// Where each kind lives in the Kubernetes API.
import { group, version } from './primitives.ts';

export const resources = {
  serviceUsers: { group, version, plural: 'serviceusers', namespaced: true, kind: 'ServiceUser' },
  roles: { group, version, plural: 'roles', namespaced: false, kind: 'Role' },
  roleBindings: { group, version, plural: 'rolebindings', namespaced: true, kind: 'RoleBinding' },
  accounts: { group, version, plural: 'accounts', namespaced: false, kind: 'Account' },
  namespaces: { group: '', version: 'v1', plural: 'namespaces', namespaced: false, kind: 'Namespace' },
  secrets: { group: '', version: 'v1', plural: 'secrets', namespaced: true, kind: 'Secret' },
} as const;
