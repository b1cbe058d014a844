// The API schemas without a cluster: generated files are current and structural, defaults
// and rules behave, and the role catalogs are well formed.
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { generatedFiles, kinds, readPolicy, readRoleCatalog } from '../../src/api/crd.ts';
import { cidrContains, isMasked, parseCidr } from '../../src/api/cidr.ts';
import { formatDuration, parseDuration } from '../../src/api/duration.ts';
import { permissionPattern } from '../../src/api/primitives.ts';
import { role } from '../../src/api/role.ts';
import { serviceUser } from '../../src/api/serviceuser.ts';
import { repoRoot } from '../cluster/controlplane.ts';
import { loadYaml } from '../crds.ts';

describe('generated CRDs', () => {
  it('are current: run `npm run generate` after changing src/api or config/roles', () => {
    for (const [file, text] of generatedFiles(readRoleCatalog(repoRoot), readPolicy(repoRoot))) {
      let onDisk: string;
      try {
        onDisk = readFileSync(path.join(repoRoot, file), 'utf8');
      } catch {
        throw new Error(`${file} is missing: run npm run generate`);
      }
      expect(onDisk, `${file} is stale: run npm run generate`).toBe(text);
    }
  });

  it('are structural: every node typed, no $ref, no additionalProperties: false, no anyOf', () => {
    const problems: string[] = [];
    const walk = (node: Record<string, unknown>, at: string) => {
      if (!('type' in node) && !node['x-kubernetes-int-or-string'] && !node['x-kubernetes-preserve-unknown-fields']) {
        problems.push(`${at}: no type`);
      }
      for (const banned of ['$ref', 'anyOf', 'oneOf', 'allOf', 'propertyNames', '$schema']) {
        if (banned in node) problems.push(`${at}: ${banned}`);
      }
      if (node.additionalProperties === false) problems.push(`${at}: additionalProperties: false`);
      for (const [k, v] of Object.entries((node.properties ?? {}) as Record<string, Record<string, unknown>>)) walk(v, `${at}.${k}`);
      if (node.items) walk(node.items as Record<string, unknown>, `${at}[]`);
      if (typeof node.additionalProperties === 'object') walk(node.additionalProperties as Record<string, unknown>, `${at}{}`);
    };
    for (const file of readdirSync(path.join(repoRoot, 'crds'))) {
      for (const crd of loadYaml(path.join(repoRoot, 'crds', file)) as unknown as {
        spec: { versions: { schema: { openAPIV3Schema: Record<string, unknown> } }[] };
      }[]) {
        walk(crd.spec.versions[0]!.schema.openAPIV3Schema, file);
      }
    }
    expect(problems).toEqual([]);
  });

  it('give every kind a short name, the shared category and a status subresource', () => {
    const files = generatedFiles([]);
    for (const def of kinds) {
      const text = files.get(`crds/${def.plural}.serviceusers.dev.yaml`)!;
      expect(text).toContain(`categories:\n      - service-users`);
      expect(text).toContain(`subresources:\n        status: {}`);
      expect(def.shortNames.length).toBe(1);
      expect(def.plural).not.toBe('service-users');
    }
  });
});

describe('ServiceUser schema', () => {
  const minimal = {
    apiVersion: 'serviceusers.dev/v1alpha1',
    kind: 'ServiceUser',
    metadata: { name: 'ci', namespace: 'team' },
    spec: { email: 'ops@example.com', accounts: ['acme'] },
  };

  it('fills in every default, as the API server does', () => {
    const su = serviceUser.parse(minimal);
    expect(su.spec).toEqual({
      email: 'ops@example.com',
      accounts: ['acme'],
      disabled: false,
      expiryWarning: '168h',
      notifications: { email: true },
      credentials: {
        profile: 'standard',
        token: { enabled: true, gracePeriod: '24h' },
        clientCertificate: {
          enabled: true,
          duration: '2160h',
          renewBefore: '360h',
          privateKey: { algorithm: 'ECDSA' },
          pkcs12: true,
        },
      },
    });
  });

  it('names the field and says what is expected', () => {
    const result = serviceUser.safeParse({ ...minimal, spec: { ...minimal.spec, endDate: '2027-02-29' } });
    expect(result.success).toBe(false);
    expect(result.error!.issues).toEqual([
      expect.objectContaining({ path: ['spec', 'endDate'], message: 'must be a real calendar date: that month has fewer days' }),
    ]);
  });

  it('accepts leap days, dates and RFC 3339 times with offsets', () => {
    for (const endDate of ['2028-02-29', '2000-02-29', '2027-01-12', '2027-01-12T18:00:00Z', '2027-01-12T18:00:00.5+05:30']) {
      expect(serviceUser.safeParse({ ...minimal, spec: { ...minimal.spec, endDate } }).success, endDate).toBe(true);
    }
    expect(serviceUser.safeParse({ ...minimal, spec: { ...minimal.spec, endDate: '2100-02-29' } }).success).toBe(false);
  });
});

describe('durations', () => {
  it('parse as Go parses them', () => {
    expect(parseDuration('720h')).toBe(720 * 3_600_000);
    expect(parseDuration('1h30m')).toBe(90 * 60_000);
    expect(parseDuration('1.5h')).toBe(90 * 60_000);
    expect(parseDuration('250ms')).toBe(250);
    for (const bad of ['', '7d', '-1h', '1 h', 'h', '1h-30m', '9999999h']) expect(parseDuration(bad), bad).toBeUndefined();
    expect(formatDuration(90 * 60_000)).toBe('1h30m0s');
  });
});

describe('CIDRs', () => {
  it('parse, check host bits and match addresses', () => {
    const v4 = parseCidr('10.20.0.0/16')!;
    expect(isMasked(v4)).toBe(true);
    expect(cidrContains(v4, '10.20.3.4')).toBe(true);
    expect(cidrContains(v4, '::ffff:10.20.3.4')).toBe(true);
    expect(cidrContains(v4, '10.21.0.1')).toBe(false);
    expect(isMasked(parseCidr('10.20.0.1/16')!)).toBe(false);
    const v6 = parseCidr('2001:db8:20::/48')!;
    expect(isMasked(v6)).toBe(true);
    expect(cidrContains(v6, '2001:db8:20:ffff::1')).toBe(true);
    expect(cidrContains(v6, '2001:db8:21::1')).toBe(false);
    expect(cidrContains(v6, '10.20.3.4')).toBe(false);
    for (const bad of ['10.0.0.0', '10.0.0.0/33', '10.0.0.0/08', '010.0.0.0/8', '2001:db8::/129', 'x/8']) expect(parseCidr(bad), bad).toBeUndefined();
    expect(parseCidr('0.0.0.0/0')).toBeDefined();
  });
});

describe('role catalogs (config/roles)', () => {
  const dir = path.join(repoRoot, 'config/roles');
  const roles = readdirSync(dir)
    .filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml')
    .flatMap((f) => loadYaml(path.join(dir, f)).map((doc) => ({ file: f, doc })));

  it('hold the Software Trust Manager, Account Manager and IoT Trust Manager roles, and the verifier role', () => {
    const names = roles.map((r) => r.doc.metadata!.name).sort();
    expect(names).toEqual(
      [
        'software-trust-manager.lead',
        'software-trust-manager.team-lead',
        'software-trust-manager.developer',
        'software-trust-manager.build-engineer',
        'software-trust-manager.signer',
        'account-manager.account-admin',
        'account-manager.user-manager',
        'account-manager.account-user',
        'account-manager.default-user',
        'account-manager.view-only',
        'iot-trust-manager.administrator',
        'iot-trust-manager.system-user',
        'service-user-operator.verifier',
      ].sort(),
    );
  });

  it.each(roles.map((r) => [r.doc.metadata!.name, r] as const))('%s loads and names its permissions category:action', (_, { file, doc }) => {
    const parsed = role.parse(doc);
    expect(`${parsed.spec.manager}.yaml`).toBe(file);
    expect(parsed.metadata.name.startsWith(`${parsed.spec.manager}.`)).toBe(true);
    for (const p of parsed.spec.permissions) expect(p).toMatch(permissionPattern);
  });

  it('keep superuser-like and credential-minting roles away from service users', () => {
    const unassignable = roles.filter((r) => role.parse(r.doc).spec.assignableToServiceUsers === false).map((r) => r.doc.metadata!.name);
    expect(unassignable.sort()).toEqual(
      [
        'account-manager.account-admin',
        'account-manager.user-manager',
        'iot-trust-manager.administrator',
        'software-trust-manager.lead',
        'software-trust-manager.team-lead',
      ].sort(),
    );
    for (const r of roles) {
      const spec = role.parse(r.doc).spec;
      if (spec.permissions.includes('user-management:manage-users')) expect(spec.assignableToServiceUsers).toBe(false);
    }
  });
});
