// Account: a tenant's scope on the vendor platforms (DigiCert ONE account), as an object, so
// that which namespaces may act in it is the platform team's decision, made once.
// Cluster-scoped; ServiceUsers and RoleBindings name accounts by these objects' names.
import { z } from 'zod';
import { apiVersion, conditions, objectMeta } from './primitives.ts';
import { labelSelector } from './labels.ts';

export const accountSpec = z.object({
  displayName: z.string().min(1).max(64).optional().describe('How people name the account, e.g. "ACME production".'),
  description: z.string().max(1024).optional(),
  namespaceSelector: labelSelector
    .optional()
    .describe(
      'The namespaces whose ServiceUsers and RoleBindings may act in this account. Absent: none. {}: every namespace. ' +
        'Match on kubernetes.io/metadata.name to list namespaces by name.',
    ),
});

export const accountStatus = z.object({
  serviceUsers: z.number().int().min(0).optional().describe('How many ServiceUsers this account admits (status.accounts names it).'),
  observedGeneration: z.number().int().min(0).optional(),
  conditions: conditions.optional(),
});

export const account = z.object({
  apiVersion: z.literal(apiVersion),
  kind: z.literal('Account'),
  metadata: objectMeta,
  spec: accountSpec,
  status: accountStatus.optional(),
});

export type Account = z.output<typeof account>;
export type AccountSpec = z.output<typeof accountSpec>;
