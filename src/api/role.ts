// Role: a named set of permissions in one product area ("manager"). Cluster-scoped data;
// the seed catalogs in config/roles/ are Role objects.
import { z } from 'zod';
import { apiVersion, conditions, kebab, objectMeta, permission, set } from './primitives.ts';
import { matches } from './rules.ts';

export const manager = matches(
  z.string().min(1).max(63),
  kebab,
  "must be a product area in kebab case, e.g. 'software-trust-manager'",
);

export const roleSpec = z.object({
  displayName: z.string().min(1).max(64).describe('How people name the role, e.g. "Build engineer".'),
  description: z.string().max(1024).optional(),
  manager: manager.describe('The product area (DigiCert ONE "manager") the permissions belong to.'),
  permissions: set(permission, 'permissions', { min: 1, max: 256 }).describe('category:action names, kebab case.'),
  assignableToServiceUsers: z
    .boolean()
    .default(true)
    .describe('false for roles no service user may hold (superuser-like, or able to mint credentials).'),
});

export const roleStatus = z.object({
  permissionCount: z.number().int().min(0).optional(),
  observedGeneration: z.number().int().min(0).optional(),
  conditions: conditions.optional(),
});

export const role = z.object({
  apiVersion: z.literal(apiVersion),
  kind: z.literal('Role'),
  metadata: objectMeta,
  spec: roleSpec,
  status: roleStatus.optional(),
});

export type Role = z.output<typeof role>;
export type RoleSpec = z.output<typeof roleSpec>;
