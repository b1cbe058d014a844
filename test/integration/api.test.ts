// The API at admission, on the real API server: every sample and catalog role is accepted,
// every manifest of the bad-input corpus is refused with a message naming the field, and
// the operator's own zod validation agrees with the API server on each of them.
import { execFile } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { ApiException, CustomObjectsApi, type KubernetesObject } from '@kubernetes/client-node';
import { describe, expect, inject, it } from 'vitest';
import { clusterScoped, pluralFor, schemaFor } from '../api-objects.ts';
import { repoRoot } from '../cluster/controlplane.ts';
import { loadYaml } from '../crds.ts';
import { kubeConfig, useNamespace } from '../kube.ts';

const custom = kubeConfig().makeApiClient(CustomObjectsApi);
const ns = useNamespace('api');
const group = 'serviceusers.dev';
const version = 'v1alpha1';

type Manifest = KubernetesObject & { metadata: { name: string; namespace?: string; resourceVersion?: string } };

async function send(obj: Manifest, mode: 'create' | 'dry-run' | 'dry-run-replace'): Promise<Manifest> {
  const kind = obj.kind!;
  const plural = pluralFor[kind];
  if (!plural) throw new Error(`unknown kind ${kind}`);
  const dryRun = mode === 'create' ? undefined : 'All';
  const common = { group, version, plural, body: obj, fieldValidation: 'Strict', ...(dryRun ? { dryRun } : {}) };
  const name = obj.metadata.name;
  if (clusterScoped.has(kind)) {
    if (mode === 'dry-run-replace') return (await custom.replaceClusterCustomObject({ ...common, name })) as Manifest;
    try {
      return (await custom.createClusterCustomObject(common)) as Manifest;
    } catch (err) {
      // Cluster-scoped objects are shared by the run's test files: one another file applied
      // (the role catalog, an Account) is judged as a replacement of it instead.
      if (!(err instanceof ApiException) || err.code !== 409 || mode !== 'dry-run') throw err;
      const existing = (await custom.getClusterCustomObject({ group, version, plural, name })) as Manifest;
      obj.metadata.resourceVersion = existing.metadata.resourceVersion;
      return (await custom.replaceClusterCustomObject({ ...common, body: obj, name })) as Manifest;
    }
  }
  const namespaced = { ...common, namespace: ns.name };
  obj.metadata.namespace = ns.name;
  return (await (mode === 'dry-run-replace'
    ? custom.replaceNamespacedCustomObject({ ...namespaced, name })
    : custom.createNamespacedCustomObject(namespaced))) as Manifest;
}

function statusMessage(err: unknown): { code: number; message: string } {
  if (!(err instanceof ApiException)) throw err;
  const body = typeof err.body === 'string' ? (JSON.parse(err.body) as { message?: string }) : (err.body as { message?: string });
  return { code: err.code, message: body?.message ?? String(err.body) };
}

const withoutIndexes = (p: string) => p.replace(/\[\d+\]/g, '');

function zodPaths(kind: string, obj: unknown): string[] | 'valid' {
  const result = schemaFor[kind]!.safeParse(obj);
  if (result.success) return 'valid';
  return result.error.issues.map((i) => i.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('').slice(1));
}

describe('samples and role catalogs', () => {
  const files = [
    ...readdirSync(path.join(repoRoot, 'config/samples')).map((f) => `config/samples/${f}`),
    ...readdirSync(path.join(repoRoot, 'config/roles')).map((f) => `config/roles/${f}`),
  ].filter((f) => f.endsWith('.yaml') && !f.endsWith('kustomization.yaml'));

  it.each(files)('%s is accepted by the API server and by the operator', async (file) => {
    const docs = loadYaml(path.join(repoRoot, file)) as Manifest[];
    expect(docs.length).toBeGreaterThan(0);
    for (const doc of docs) {
      const accepted = await send(structuredClone(doc), 'dry-run');
      expect(accepted.metadata.name).toBe(doc.metadata.name);
      expect(zodPaths(doc.kind!, doc)).toBe('valid');
    }
  });
});

describe('the bad-input corpus (test/fixtures/invalid)', () => {
  const dir = path.join(repoRoot, 'test/fixtures/invalid');
  const fixtures = readdirSync(dir).filter((f) => f.endsWith('.yaml'));

  it('has at least 50 manifests', () => {
    expect(fixtures.length).toBeGreaterThanOrEqual(50);
  });

  it.each(fixtures)('%s is refused with a message naming its field', async (file) => {
    const text = readFileSync(path.join(dir, file), 'utf8');
    const field = /^# field: (\S+)$/m.exec(text)?.[1];
    expect(field, `${file} needs a '# field:' header`).toBeDefined();
    const admissionOnly = /^# admission-only: /m.test(text);
    const docs = loadYaml(path.join(dir, file)) as Manifest[];
    const target = docs.at(-1)!;
    // Earlier documents are the state the last one is applied over (for update rules).
    let existing: Manifest | undefined;
    for (const doc of docs.slice(0, -1)) existing = await send(doc, 'create');
    if (existing) target.metadata.resourceVersion = existing.metadata.resourceVersion!;

    const refused = await send(structuredClone(target), existing ? 'dry-run-replace' : 'dry-run').then(
      (accepted) => ({ code: 0, message: `accepted: ${JSON.stringify(accepted)}` }),
      statusMessage,
    );
    expect([400, 422]).toContain(refused.code);
    expect(refused.message).toContain(field!);
    // `# shows:` lines: what the message must show besides the field — the value refused
    // (the API server alone prints only its type, `Invalid value: "string"`), a hint.
    for (const [, shown] of text.matchAll(/^# shows: (.+)$/gm)) expect(refused.message).toContain(shown);

    const zod = zodPaths(target.kind!, { ...target, metadata: { ...target.metadata, namespace: ns.name } });
    if (admissionOnly) {
      expect(zod).toBe('valid');
    } else {
      expect(zod).not.toBe('valid');
      const expected = withoutIndexes(field!);
      expect((zod as string[]).map(withoutIndexes)).toContainEqual(expect.stringMatching(new RegExp(`^${expected.replace(/\./g, '\\.')}`)));
    }
  });
});

describe('kubectl', () => {
  const kubectl = async (...args: string[]) =>
    (await promisify(execFile)('kubectl', ['--kubeconfig', inject('kubeconfig'), ...args])).stdout;

  it('lists all three kinds under one category, by short names, with their columns', async () => {
    for (const file of ['serviceuser-minimal.yaml', 'rolebinding-build-engineers.yaml', 'role-custom.yaml']) {
      const [doc] = loadYaml(path.join(repoRoot, 'config/samples', file)) as Manifest[];
      if (doc!.kind === 'Role') doc!.metadata.name = `${ns.name}.custom`;
      await send(doc!, 'create');
    }
    const all = await kubectl('get', 'service-users', '-n', ns.name);
    expect(all).toMatch(/serviceuser\.serviceusers\.dev\/build-bot/);
    expect(all).toMatch(/rolebinding\.serviceusers\.dev\/build-engineers/);
    expect(all).toMatch(new RegExp(`role\\.serviceusers\\.dev/${ns.name}\\.custom`));

    expect(await kubectl('get', 'su', '-n', ns.name)).toMatch(/^NAME\s+FRIENDLY NAME\s+PHASE\s+EXPIRES\s+READY\s+AGE\n/);
    expect(await kubectl('get', 'surb', '-n', ns.name)).toMatch(/^NAME\s+ROLE\s+SUBJECTS\s+READY\s+AGE\nbuild-engineers\s+software-trust-manager\.build-engineer\s/);
    expect(await kubectl('get', 'surole', `${ns.name}.custom`)).toMatch(
      /^NAME\s+MANAGER\s+DISPLAY NAME\s+PERMISSIONS\s+ASSIGNABLE\s+AGE\n\S+\s+software-trust-manager\s+Release auditor\s/,
    );
    await kubectl('delete', 'surole', `${ns.name}.custom`);
  });

  it('shows defaults applied by the API server', async () => {
    const out = JSON.parse(await kubectl('get', 'su', 'build-bot', '-n', ns.name, '-o', 'json')) as {
      spec: { disabled: boolean; expiryWarning: string; credentials: Record<string, Record<string, unknown>> };
    };
    expect(out.spec.disabled).toBe(false);
    expect(out.spec.expiryWarning).toBe('168h');
    expect(out.spec.credentials.profile).toBe('standard');
    expect(out.spec.credentials.token).toMatchObject({ enabled: true, gracePeriod: '24h' });
    expect(out.spec.credentials.clientCertificate).toMatchObject({
      enabled: true,
      duration: '2160h',
      renewBefore: '360h',
      pkcs12: true,
      privateKey: { algorithm: 'ECDSA' },
    });
  });
});
