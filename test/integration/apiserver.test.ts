// Proves that the test run talks to a real API server with the controllers the operator
// relies on: CRDs get established, custom resources round-trip, owners' deletion
// garbage-collects dependents, namespaces finish deleting.
import { randomBytes } from 'node:crypto';
import {
  ApiException,
  ApiextensionsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  VersionApi,
  type V1CustomResourceDefinition,
} from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { eventually, kubeConfig, useNamespace } from '../kube.ts';

const kc = kubeConfig();
const core = kc.makeApiClient(CoreV1Api);
const extensions = kc.makeApiClient(ApiextensionsV1Api);
const custom = kc.makeApiClient(CustomObjectsApi);
const ns = useNamespace('apiserver');

// A CRD of this file's own, in a group unique to the run, so that parallel runs against a
// shared cluster never collide.
const group = `t${randomBytes(4).toString('hex')}.test.serviceusers.dev`;
const version = 'v1';
const plural = 'widgets';
const crd: V1CustomResourceDefinition = {
  apiVersion: 'apiextensions.k8s.io/v1',
  kind: 'CustomResourceDefinition',
  metadata: { name: `${plural}.${group}` },
  spec: {
    group,
    scope: 'Namespaced',
    names: { plural, singular: 'widget', kind: 'Widget', listKind: 'WidgetList' },
    versions: [
      {
        name: version,
        served: true,
        storage: true,
        subresources: { status: {} },
        schema: {
          openAPIV3Schema: {
            type: 'object',
            properties: {
              spec: {
                type: 'object',
                required: ['size'],
                properties: { size: { type: 'integer', minimum: 1 } },
              },
              status: { type: 'object', properties: { ready: { type: 'boolean' } } },
            },
          },
        },
      },
    ],
  },
};

async function notFound(read: () => Promise<unknown>): Promise<true | undefined> {
  try {
    await read();
    return undefined;
  } catch (err) {
    if (err instanceof ApiException && err.code === 404) return true;
    throw err;
  }
}

describe('the API server under test', () => {
  beforeAll(async () => {
    await extensions.createCustomResourceDefinition({ body: crd });
    await eventually('the CRD to be established', async () => {
      const current = await extensions.readCustomResourceDefinition({ name: crd.metadata!.name! });
      const established = current.status?.conditions?.find((c) => c.type === 'Established');
      return established?.status === 'True' ? current : undefined;
    });
  });
  afterAll(async () => {
    await extensions.deleteCustomResourceDefinition({ name: crd.metadata!.name! });
  });

  it('reports a real Kubernetes release', async () => {
    const info = await kc.makeApiClient(VersionApi).getCode();
    expect(info.gitVersion).toMatch(/^v1\.\d+\.\d+/);
    const local = inject('localVersion');
    if (local) {
      expect(info.gitVersion).toBe(local);
      expect(Number(info.minor)).toBeGreaterThanOrEqual(34);
    }
  });

  it('stores a custom resource and reads it back', async () => {
    await custom.createNamespacedCustomObject({
      group,
      version,
      namespace: ns.name,
      plural,
      body: { apiVersion: `${group}/${version}`, kind: 'Widget', metadata: { name: 'round-trip' }, spec: { size: 3 } },
    });
    const read = (await custom.getNamespacedCustomObject({ group, version, namespace: ns.name, plural, name: 'round-trip' })) as {
      spec: { size: number };
      metadata: { uid: string };
    };
    expect(read.spec.size).toBe(3);
    expect(read.metadata.uid).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('enforces the CRD schema', async () => {
    const create = custom.createNamespacedCustomObject({
      group,
      version,
      namespace: ns.name,
      plural,
      body: { apiVersion: `${group}/${version}`, kind: 'Widget', metadata: { name: 'too-small' }, spec: { size: 0 } },
    });
    await expect(create).rejects.toMatchObject({ code: 422 });
    await expect(create).rejects.toThrow(/spec\.size/);
  });

  it('garbage-collects a dependent within seconds of its owner\'s deletion', async () => {
    const owner = await core.createNamespacedConfigMap({ namespace: ns.name, body: { metadata: { name: 'gc-owner' } } });
    await core.createNamespacedSecret({
      namespace: ns.name,
      body: {
        metadata: {
          name: 'gc-dependent',
          ownerReferences: [{ apiVersion: 'v1', kind: 'ConfigMap', name: 'gc-owner', uid: owner.metadata!.uid!, controller: true }],
        },
        stringData: { key: 'value' },
      },
    });
    await core.deleteNamespacedConfigMap({ namespace: ns.name, name: 'gc-owner' });
    await eventually(
      'the dependent Secret to be garbage-collected',
      () => notFound(() => core.readNamespacedSecret({ namespace: ns.name, name: 'gc-dependent' })),
      10_000,
    );
  });

  // The garbage collector learns about a new CRD on its 30-second discovery cycle, so the
  // first deletion after a CRD appears may wait that long; the operator's CRDs are
  // installed once, long before.
  it('garbage-collects a Secret when its owning custom resource is deleted', { timeout: 90_000 }, async () => {
    const owner = (await custom.createNamespacedCustomObject({
      group,
      version,
      namespace: ns.name,
      plural,
      body: { apiVersion: `${group}/${version}`, kind: 'Widget', metadata: { name: 'owner' }, spec: { size: 1 } },
    })) as { metadata: { uid: string } };
    await core.createNamespacedSecret({
      namespace: ns.name,
      body: {
        metadata: {
          name: 'dependent',
          ownerReferences: [
            { apiVersion: `${group}/${version}`, kind: 'Widget', name: 'owner', uid: owner.metadata.uid, controller: true },
          ],
        },
        stringData: { key: 'value' },
      },
    });
    await custom.deleteNamespacedCustomObject({ group, version, namespace: ns.name, plural, name: 'owner' });
    await eventually(
      'the dependent Secret to be garbage-collected',
      () => notFound(() => core.readNamespacedSecret({ namespace: ns.name, name: 'dependent' })),
      75_000,
    );
  });

  it('finishes deleting a namespace that still holds objects', async () => {
    const name = `doomed-${randomBytes(4).toString('hex')}`;
    await core.createNamespace({ body: { metadata: { name } } });
    await core.createNamespacedConfigMap({ namespace: name, body: { metadata: { name: 'left-behind' }, data: { a: 'b' } } });
    await custom.createNamespacedCustomObject({
      group,
      version,
      namespace: name,
      plural,
      body: { apiVersion: `${group}/${version}`, kind: 'Widget', metadata: { name: 'left-behind' }, spec: { size: 1 } },
    });
    await core.deleteNamespace({ name });
    await eventually('the namespace to be gone', () => notFound(() => core.readNamespace({ name })), 30_000);
  });
});
