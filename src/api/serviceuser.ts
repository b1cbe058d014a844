// ServiceUser: a non-human identity whose credentials the operator keeps in a Secret.
import { z } from 'zod';
import { parseDuration } from './duration.ts';
import {
  accounts,
  apiVersion,
  cidr,
  conditions,
  duration,
  isDurationCel,
  objectMeta,
  objectName,
  set,
  tokenId,
} from './primitives.ts';
import { celString, matches, rule, withCel } from './rules.ts';
import { labelKeyPattern, labelValuePattern } from './labels.ts';

export const friendlyNamePattern = /^[A-Za-z0-9_-]([A-Za-z0-9 _-]{0,62}[A-Za-z0-9_-])?$/;

/** A date (that day ends at 23:59:59 UTC) or an exact RFC 3339 time. */
export const endDatePattern =
  /^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])(T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9]))?$/;

const y = 'int(self.substring(0, 4))';
const mo = 'self.substring(5, 7)';
const daysInMonthCel =
  `(${mo} == '02' ? ((${y} % 4 == 0 && ${y} % 100 != 0) || ${y} % 400 == 0 ? 29 : 28)` +
  ` : (${mo} in ['04', '06', '09', '11'] ? 30 : 31))`;

function isCalendarDate(text: string): boolean {
  // Only called on text endDatePattern matched: YYYY-MM-DD first.
  const [year, month, day] = [Number(text.slice(0, 4)), Number(text.slice(5, 7)), Number(text.slice(8, 10))];
  const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
  const days = month === 2 ? (leap ? 29 : 28) : [4, 6, 9, 11].includes(month) ? 30 : 31;
  return day <= days;
}

const endDate = rule(
  matches(
    z.string().max(35),
    endDatePattern,
    'must be a date (2027-01-12, which ends at 23:59:59 UTC) or an RFC 3339 time (2027-01-12T18:00:00Z)',
  ),
  {
    cel: `!self.matches(${celString(endDatePattern.source)}) || int(self.substring(8, 10)) <= ${daysInMonthCel}`,
    check: (v) => !endDatePattern.test(v) || isCalendarDate(v),
    message: 'must be a real calendar date: that month has fewer days',
  },
);

const email = matches(
  z.string().min(3).max(254),
  /^[^@\s]+@[^@\s]+\.[^@\s]+$/,
  'must be the email address of the person who manages this credential, e.g. platform@example.com',
);

/** CEL for "a < b" on two duration fields that may be absent or not yet valid. */
function durationBelow(a: string, b: string): string {
  const ok = (f: string) => `has(self.${f}) && ${isDurationCel(`self.${f}`)}`;
  return `!(${ok(a)} && ${ok(b)}) || duration(self.${a}) < duration(self.${b})`;
}

/** Whether both are durations and `a` is the shorter; when one is not, its own field says so (as the CEL does). */
function shorter(a: string, b: string): boolean {
  const [x, y] = [parseDuration(a), parseDuration(b)];
  return x === undefined || y === undefined || x < y;
}

function atLeast(schema: ReturnType<typeof duration>, min: string, what: string) {
  const floor = parseDuration(min);
  if (floor === undefined) throw new Error(`atLeast(${what}): '${min}' is not a Go duration`);
  return rule(schema, {
    cel: `!${isDurationCel('self')} || duration(self) >= duration('${min}')`,
    check: (v) => (parseDuration(v) ?? Infinity) >= floor,
    message: `${what} must be at least ${min}`,
  });
}

const reservedKey = (k: string) => k.startsWith('serviceusers.dev/') || k === 'app.kubernetes.io/managed-by';

function keyedMap(what: string, valueMax: number, value?: RegExp) {
  let map = z.record(z.string().max(317), z.string().max(valueMax)).meta({ maxProperties: 64 });
  map = rule(map, {
    cel: `self.all(k, k.size() <= 317 && k.matches(${celString(labelKeyPattern.source)}))`,
    check: (m) => Object.keys(m).every((k) => labelKeyPattern.test(k)),
    message: `${what} keys must be Kubernetes label keys: an optional DNS prefix and '/', then 1-63 letters, digits, '-', '_' or '.'`,
  });
  map = rule(map, {
    cel: `self.all(k, !k.startsWith('serviceusers.dev/') && k != 'app.kubernetes.io/managed-by')`,
    check: (m) => !Object.keys(m).some(reservedKey),
    message: `${what} must not set app.kubernetes.io/managed-by or keys under serviceusers.dev/: the operator owns them`,
  });
  if (value) {
    map = rule(map, {
      cel: `self.all(k, self[k].matches(${celString(value.source)}))`,
      check: (m) => Object.values(m).every((v) => value.test(v)),
      message: `${what} values must be at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit`,
    });
  }
  return map;
}

/** An on-demand request: an opaque value whose change asks for the action once. */
const request = (what: string) =>
  z
    .string()
    .min(1, { message: `${what} must not be empty: remove it, or set any new value (e.g. the current time) to ask again` })
    .max(64, { message: `${what} must be at most 64 characters (e.g. the current RFC 3339 time)` })
    .optional();

export const tokenSpec = rule(
  z.object({
    enabled: z.boolean().default(true).describe('Issue an API token into the Secret.'),
    rotateEvery: atLeast(duration('rotateEvery'), '1h', 'rotateEvery')
      .optional()
      .describe('Issue a new token this often; the previous one stays valid for gracePeriod.'),
    gracePeriod: duration('gracePeriod')
      .default('24h')
      .describe('How long a rotated-out token stays valid.'),
    revokedTokenIds: set(tokenId, 'revokedTokenIds', { max: 256 })
      .optional()
      .describe('Token ids to revoke, one by one, declaratively. Revoked stays revoked.'),
    allowedCIDRs: set(cidr, 'allowedCIDRs', { max: 64 })
      .optional()
      .describe('Networks the token may be used from; empty or absent means anywhere.'),
    rotationRequest: request('rotationRequest').describe(
      'Rotate the token now: any new value (the kubectl plugin writes the current time) issues a new token; the previous one stays valid for gracePeriod (at most 8 at once: the oldest is revoked). At most one rotation a minute: a value set sooner waits for the minute (condition RequestsThrottled), and the latest one then is acted on. Re-applying the same value does nothing; a value present at creation is recorded without a rotation.',
    ),
  }),
  {
    cel: durationBelow('gracePeriod', 'rotateEvery'),
    check: (t) => !t.rotateEvery || shorter(t.gracePeriod, t.rotateEvery),
    message: 'gracePeriod must be shorter than rotateEvery, or rotated-out tokens would pile up',
    path: ['gracePeriod'],
  },
);

export const issuerRef = z
  .object({
    name: objectName('cert-manager Issuer or ClusterIssuer'),
    kind: z.enum(['Issuer', 'ClusterIssuer']).default('Issuer'),
    group: z.enum(['cert-manager.io']).default('cert-manager.io'),
  })
  .describe("A cert-manager issuer; null or absent means the operator's built-in CA.");

const keySizes: Record<'ECDSA' | 'RSA' | 'Ed25519', readonly number[]> = { ECDSA: [256, 384, 521], RSA: [2048, 3072, 4096], Ed25519: [] };

export const privateKey = rule(
  z.object({
    algorithm: z.enum(['ECDSA', 'RSA', 'Ed25519']).default('ECDSA'),
    size: z.number().int().optional().describe('ECDSA: 256 (default), 384 or 521. RSA: 2048 (default), 3072 or 4096. Ed25519: none.'),
  }),
  {
    cel:
      "!has(self.size) || (self.algorithm == 'ECDSA' && self.size in [256, 384, 521]) || (self.algorithm == 'RSA' && self.size in [2048, 3072, 4096])",
    check: (k) => k.size === undefined || keySizes[k.algorithm].includes(k.size),
    message: 'size must be 256, 384 or 521 for ECDSA, 2048, 3072 or 4096 for RSA, and absent for Ed25519',
    path: ['size'],
  },
);

export const clientCertificateSpec = rule(
  z.object({
    enabled: z.boolean().default(true).describe('Issue a client authentication certificate into the Secret.'),
    issuerRef: issuerRef.nullable().optional(),
    duration: atLeast(duration('duration'), '1h', 'duration')
      .default('2160h')
      .describe('Certificate lifetime; never past the end date.'),
    renewBefore: atLeast(duration('renewBefore'), '5m', 'renewBefore')
      .default('360h')
      .describe('Renew this long before the certificate expires.'),
    privateKey: privateKey.prefault({}),
    pkcs12: z.boolean().default(true).describe('Also write a PKCS#12 bundle (client.p12) with a generated password.'),
    renewalRequest: request('renewalRequest').describe(
      'Renew the certificate now: any new value issues a new certificate and revokes the previous one as superseded. At most one renewal a minute (an hour while this user has more serials on the CRL than the operator\'s --crl-owner-budget): a value set sooner waits (condition RequestsThrottled), and the latest one then is acted on. Re-applying the same value does nothing; a value present at creation is recorded without a renewal.',
    ),
  }),
  {
    cel: durationBelow('renewBefore', 'duration'),
    check: (c) => shorter(c.renewBefore, c.duration),
    message: 'renewBefore must be shorter than duration, or the certificate would be renewed as soon as it is issued',
    path: ['renewBefore'],
  },
);

export const profiles = ['standard', 'digicert-smctl'] as const;

export const restartKinds = ['Deployment', 'StatefulSet', 'DaemonSet'] as const;

/** Workloads in the same namespace rolled out when the credentials change (restarts.ts). */
export const restartTargets = z
  .array(
    z.object({
      kind: z.enum(restartKinds).describe('Deployment, StatefulSet or DaemonSet (apps/v1).'),
      name: objectName('Deployment, StatefulSet or DaemonSet in the same namespace'),
    }),
  )
  .max(16, 'restartTargets must list at most 16 workloads')
  .refine((list) => new Set(list.map((t) => `${t.kind}/${t.name}`)).size === list.length, { message: 'restartTargets must not name the same workload twice' })
  .meta({ 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['kind', 'name'] });

export const credentialsSpec = rule(
  rule(
    z.object({
      secretName: objectName('Secret').optional().describe('Default: <metadata.name>-credentials.'),
      secretTemplate: z
        .object({
          labels: keyedMap('secretTemplate.labels', 63, labelValuePattern).optional(),
          annotations: keyedMap('secretTemplate.annotations', 4096).optional(),
        })
        .optional()
        .describe('Labels and annotations added to the Secret.'),
      profile: z.enum(profiles).default('standard').describe('Key layout of the Secret.'),
      token: tokenSpec.prefault({}),
      clientCertificate: clientCertificateSpec.prefault({}),
      restartTargets: restartTargets
        .optional()
        .describe(
          'Workloads in this namespace whose pod template gets the annotation serviceusers.dev/credentials-digest whenever the credentials in the Secret change, so they roll out. Each must reference the Secret in its pod template.',
        ),
    }),
    {
      // has(): the API server also checks this rule against the schema default `{}`,
      // before nested defaults fill it in; an absent part is enabled by default.
      cel: '!has(self.token) || !has(self.token.enabled) || self.token.enabled || !has(self.clientCertificate) || !has(self.clientCertificate.enabled) || self.clientCertificate.enabled',
      check: (c) => c.token.enabled || c.clientCertificate.enabled,
      message: 'enable the token, the client certificate, or both: a service user needs a credential',
    },
  ),
  {
    cel:
      "!has(self.profile) || self.profile != 'digicert-smctl' || ((!has(self.token) || !has(self.token.enabled) || self.token.enabled) && (!has(self.clientCertificate) || ((!has(self.clientCertificate.enabled) || self.clientCertificate.enabled) && (!has(self.clientCertificate.pkcs12) || self.clientCertificate.pkcs12))))",
    check: (c) => c.profile !== 'digicert-smctl' || (c.token.enabled && c.clientCertificate.enabled && c.clientCertificate.pkcs12),
    message: 'profile digicert-smctl needs token.enabled (SM_API_KEY), clientCertificate.enabled and clientCertificate.pkcs12 (client.p12)',
    path: ['profile'],
  },
);

export const serviceUserSpec = z.object({
  friendlyName: matches(
    z.string().min(1).max(64),
    friendlyNamePattern,
    "must be 1-64 letters, digits, spaces, '-' or '_', not starting or ending with a space",
  )
    .optional()
    .describe('Unique in the namespace; audit logs and the verified identity carry it. Default: metadata.name.'),
  description: z.string().max(1024).optional(),
  email: email.describe('The person who manages this credential; notices go here (see spec.notifications).'),
  endDate: endDate.optional().describe('A date means 23:59:59 UTC that day; an RFC 3339 time is exact. Absent: no end.'),
  disabled: z.boolean().default(false).describe('Suspend without destroying: verification refuses, certificate on hold.'),
  accounts: accounts('accounts').describe('Accounts this service user may act in; RoleBindings grant permissions within them.'),
  expiryWarning: duration('expiryWarning')
    .default('168h')
    .describe('Raise ExpiringSoon (condition, Warning event, metric) this long before the end date.'),
  credentials: credentialsSpec.prefault({}),
  notifications: z
    .object({
      email: z.boolean().default(true).describe('Send notices (expiry warning, expired, disabled, rotated, revoked, renewed) to spec.email, when the operator has SMTP set up.'),
    })
    .prefault({})
    .describe('What the person named in spec.email is told.'),
});

export const phases = ['Pending', 'Active', 'Disabled', 'Expired', 'Failed'] as const;

export const tokenStatus = z.object({
  id: z.string().max(16),
  sha256: z.string().max(64),
  createdAt: z.string().max(64),
  state: z.enum(['Active', 'Grace', 'Revoked']),
  validUntil: z.string().max(64).optional(),
  revokedAt: z.string().max(64).optional(),
  reason: z.string().max(1024).optional(),
  mac: z.string().max(128).optional().describe('The operator\'s MAC over this record; a record without a valid one is never honoured.'),
});

/** Who issued a recorded certificate: the operator's own CA, or cert-manager's referenced issuer. */
export const certificateSources = ['BuiltInCA', 'CertManager'] as const;
export type CertificateSource = (typeof certificateSources)[number];

export const certificateStatus = z.object({
  serialNumber: z.string().max(128),
  notBefore: z.string().max(64),
  notAfter: z.string().max(64),
  renewalTime: z.string().max(64).optional(),
  issuer: z.string().max(1024),
  sha256: z.string().max(64).optional(),
  issuedBy: z
    .enum(certificateSources)
    .optional()
    .describe('Who issued it: BuiltInCA (this operator, to this ServiceUser; only these serials ever go on its CRL) or CertManager (the referenced issuer). Sealed with the rest.'),
});

export const noticeKinds = ['ExpiryWarning', 'Expired', 'Disabled', 'Enabled', 'TokenRotated', 'TokenRevoked', 'CertificateRenewed', 'CertificateRefused'] as const;

/** A notice owed to spec.email: recorded when due, marked when sent (an outbox in status). */
export const noticeStatus = z.object({
  key: z.string().max(256).describe('What the notice is about, unique per occurrence: it is sent once.'),
  kind: z.enum(noticeKinds),
  detail: z.string().max(1024).optional().describe('What happened, for the message.'),
  dueAt: z.string().max(64),
  sentAt: z.string().max(64).optional(),
});

/** How many permissions status records, and how many roles each names: past these, status is cut (desired.ts). */
export const maxPermissions = 4096;
export const maxRolesPerPermission = 64;

export const permissionStatus = z.object({
  account: z.string().max(128),
  manager: z.string().max(63),
  permission: z.string().max(128),
  roles: z.array(z.string().max(253)).max(maxRolesPerPermission).optional(),
});

export const serviceUserStatus = z.object({
  phase: z.enum(phases).optional(),
  identity: z.string().max(512).optional(),
  friendlyName: z.string().max(64).optional(),
  secretName: z.string().max(253).optional(),
  expiresAt: z.string().max(64).optional(),
  tokens: z
    .array(tokenStatus)
    .max(512)
    .meta({ 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['id'] })
    .optional(),
  certificate: certificateStatus.optional(),
  permissions: z.array(permissionStatus).max(maxPermissions).optional(),
  accounts: z
    .array(z.string().max(128))
    .max(64)
    .optional()
    .describe('The accounts of spec.accounts whose Account exists and admits this namespace: the only ones permissions are granted and verification reports in.'),
  seal: z.string().max(128).optional().describe('The operator\'s MAC over permissions, accounts and certificate; without a valid one none of them is honoured.'),
  lastRotationRequest: z.string().max(64).optional().describe('The last spec.credentials.token.rotationRequest handled.'),
  lastRenewalRequest: z.string().max(64).optional().describe('The last spec.credentials.clientCertificate.renewalRequest handled.'),
  credentialsDigest: z
    .string()
    .max(64)
    .optional()
    .describe('SHA-256 over the credential keys of the Secret this status records (not a credential): spec.credentials.restartTargets roll out to it, once it is recorded here.'),
  notices: z
    .array(noticeStatus)
    .max(32)
    .meta({ 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['key'] })
    .optional(),
  observedGeneration: z.number().int().min(0).optional(),
  conditions: conditions.optional(),
});

const nameMessage = 'metadata.name must be at most 63 characters: it is used as a label value on the Secret';

export const serviceUser = withCel(
  z
    .object({
      apiVersion: z.literal(apiVersion),
      kind: z.literal('ServiceUser'),
      metadata: objectMeta,
      spec: serviceUserSpec,
      status: serviceUserStatus.optional(),
    })
    .refine((su) => su.metadata.name.length <= 63, { message: nameMessage, path: ['metadata', 'name'] }),
  // At the root CEL sees metadata.name (and nothing else of metadata).
  [{ rule: 'self.metadata.name.size() <= 63', message: nameMessage }],
);

export type ServiceUser = z.output<typeof serviceUser>;
export type ServiceUserSpec = z.output<typeof serviceUserSpec>;
export type ServiceUserStatus = z.output<typeof serviceUserStatus>;
export type TokenStatus = z.output<typeof tokenStatus>;
export type CertificateStatus = z.output<typeof certificateStatus>;
export type NoticeStatus = z.output<typeof noticeStatus>;
export type NoticeKind = (typeof noticeKinds)[number];
