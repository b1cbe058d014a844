// The zod schema for each kind, by kind name, for tests that hold arbitrary manifests.
import type { z } from 'zod';
import { account } from '../src/api/account.ts';
import { role } from '../src/api/role.ts';
import { roleBinding } from '../src/api/rolebinding.ts';
import { serviceUser } from '../src/api/serviceuser.ts';

export const schemaFor: Record<string, z.ZodType> = { ServiceUser: serviceUser, Role: role, RoleBinding: roleBinding, Account: account };
export const pluralFor: Record<string, string> = { ServiceUser: 'serviceusers', Role: 'roles', RoleBinding: 'rolebindings', Account: 'accounts' };
export const clusterScoped = new Set(['Role', 'Account']);
