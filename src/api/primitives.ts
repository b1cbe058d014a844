// Field types shared by the three kinds. Each carries its own admission rule and message.
import { z } from 'zod';
import { parseCidr, isMasked } from './cidr.ts';
import { durationPattern, parseDuration } from './duration.ts';
import { celString, matches, rule } from './rules.ts';

export const group = 'serviceusers.dev';
export const version = 'v1alpha1';
export const apiVersion = `${group}/${version}`;

/** DNS-1123 subdomain: names of Secrets, ServiceUsers, Roles. */
export const dnsSubdomain = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

export function objectName(what: string, max = 253) {
  return matches(
    z.string().min(1).max(max),
    dnsSubdomain,
    `must be the name of a ${what}: lower-case letters, digits, '-' and '.', starting and ending with a letter or digit`,
  );
}

/** CEL: `expr` is a string CEL's duration() accepts without error. */
export const isDurationCel = (expr: string) => `${expr}.matches(${celString(durationPattern.source)})`;

/**
 * CEL: for "30d" or "2w" (what `kubectl service-user extend --by` takes), how to write that
 * length of time here, so both name one length. (No arithmetic: a number made into a string
 * has no size bound the API server's cost estimate accepts.)
 */
export const dayHintCel =
  "(self.matches('^[0-9]{1,5}[dw]$') ? '; Go durations have no days or weeks: write hours (1d is 24h, 1w is 168h, 30d is 720h)' : '')";

/** A positive Go duration such as 720h, 90m or 1h30m. */
export function duration(what: string) {
  return rule(z.string().max(20), {
    cel: `${isDurationCel('self')} && duration(self) > duration('0s')`,
    check: (v) => (parseDuration(v) ?? 0) > 0,
    message: `${what} must be a positive duration such as 720h, 90m or 1h30m (units h, m, s, ms)`,
    hint: dayHintCel,
  });
}

/** Kebab-case identifier: managers, permission categories and actions. */
export const kebab = /^[a-z0-9]+(-[a-z0-9]+)*$/;

/** `category:action`, both kebab case, e.g. `signatures:sign`. */
export const permissionPattern = /^[a-z0-9]+(-[a-z0-9]+)*:[a-z0-9]+(-[a-z0-9]+)*$/;
export const permission = matches(
  z.string().min(3).max(128),
  permissionPattern,
  "must be a permission named category:action in kebab case, e.g. 'signatures:sign'",
);

/** Account identifiers as the vendor platforms show them: names or UUIDs. */
export const accountPattern = /^[A-Za-z0-9]([A-Za-z0-9._-]{0,126}[A-Za-z0-9])?$/;
export const account = matches(
  z.string().min(1).max(128),
  accountPattern,
  "must be an account id: 1-128 letters, digits, '.', '_' or '-', starting and ending with a letter or digit",
);

/** A list of distinct values, enforced by the API server as `x-kubernetes-list-type: set`. */
export function set<T extends z.ZodType>(item: T, what: string, bounds: { min?: number; max: number }) {
  let list = z.array(item).max(bounds.max, `${what} must list at most ${bounds.max} values`);
  if (bounds.min) list = list.min(bounds.min, `${what} must list at least ${bounds.min} value${bounds.min > 1 ? 's' : ''}`);
  return list
    .refine((values) => new Set(values).size === values.length, { message: `${what} must not repeat a value` })
    .meta({ 'x-kubernetes-list-type': 'set' });
}

export const accounts = (what: string) => set(account, what, { min: 1, max: 64 });

/** Token ids: the public half of a token, 16 characters of lower-case base32. */
export const tokenIdPattern = /^[a-z2-7]{16}$/;
export const tokenId = matches(z.string().length(16), tokenIdPattern, 'must be a token id: 16 characters of a-z and 2-7, as shown in status.tokens[].id');

export const cidr = rule(z.string().max(43), {
  cel: 'isCIDR(self) && cidr(self) == cidr(self).masked()',
  check: (v) => {
    const parsed = parseCidr(v);
    return parsed !== undefined && isMasked(parsed);
  },
  message: 'must be a network in CIDR notation with the host bits zero, e.g. 10.0.0.0/8 or 2001:db8::/32',
});

/** metav1.Condition, as the kstatus convention and `kubectl wait` read it. */
export const condition = z.object({
  type: z.string().min(1).max(316),
  status: z.enum(['True', 'False', 'Unknown']),
  observedGeneration: z.number().int().min(0).optional(),
  lastTransitionTime: z.string().max(64),
  reason: z.string().min(1).max(1024),
  message: z.string().max(32768),
});

export const conditions = z.array(condition).max(32).meta({
  'x-kubernetes-list-type': 'map',
  'x-kubernetes-list-map-keys': ['type'],
});

export const objectMeta = z.looseObject({
  name: z.string(),
  namespace: z.string().optional(),
  uid: z.string().optional(),
  generation: z.number().optional(),
  resourceVersion: z.string().optional(),
  labels: z.record(z.string(), z.string()).optional(),
  annotations: z.record(z.string(), z.string()).optional(),
  deletionTimestamp: z.string().optional(),
  finalizers: z.array(z.string()).optional(),
});
