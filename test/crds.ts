// Installs the generated CRDs (server-side apply) and waits until they are served; applies
// the project's manifests.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { request, type RequestOptions } from 'node:https';
import { ApiextensionsV1Api, type KubeConfig, type KubernetesObject } from '@kubernetes/client-node';
import { loadAll } from 'js-yaml';
import { repoRoot } from './cluster/controlplane.ts';
import { resourcePath, type KubeClient, type ObjectMeta } from '../src/controller/kube.ts';

export function loadYaml(file: string): KubernetesObject[] {
  return (loadAll(readFileSync(file, 'utf8')) as (KubernetesObject | null)[]).filter((d): d is KubernetesObject => d !== null);
}

export function crdManifests(): KubernetesObject[] {
  const dir = path.join(repoRoot, 'crds');
  return readdirSync(dir)
    .filter((f) => f.endsWith('.yaml'))
    .flatMap((f) => loadYaml(path.join(dir, f)));
}

/**
 * Server-side apply of a CRD as raw JSON. Not through client-node's typed APIs: their
 * serializer silently drops `default` and `x-kubernetes-validations` from a plain object,
 * and the API server then accepts a CRD without its validation.
 */
async function applyCrd(kc: KubeConfig, crd: KubernetesObject): Promise<void> {
  const server = new URL(kc.getCurrentCluster()!.server);
  const options: RequestOptions = {
    method: 'PATCH',
    hostname: server.hostname,
    port: server.port,
    path: `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${crd.metadata!.name}?fieldManager=service-user-operator-tests&force=true`,
    headers: { 'content-type': 'application/apply-patch+yaml', accept: 'application/json' },
  };
  await kc.applyToHTTPSOptions(options);
  const body = JSON.stringify(crd);
  const { status, text } = await new Promise<{ status: number; text: string }>((resolve, reject) => {
    const req = request(options, (res) => {
      let text = '';
      res.on('data', (chunk: Buffer) => (text += chunk.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
    });
    req.on('error', reject);
    req.end(body);
  });
  if (status >= 300) throw new Error(`applying CRD ${crd.metadata!.name}: HTTP ${status}: ${text}`);
}

export async function installCrds(kc: KubeConfig): Promise<void> {
  const extensions = kc.makeApiClient(ApiextensionsV1Api);
  const crds = crdManifests();
  for (const crd of crds) await applyCrd(kc, crd);
  const deadline = Date.now() + 60_000;
  for (const crd of crds) {
    for (;;) {
      const current = await extensions.readCustomResourceDefinition({ name: crd.metadata!.name! });
      if (current.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True')) break;
      if (Date.now() > deadline) throw new Error(`CRD ${crd.metadata!.name} not established after 60s`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

const kindPaths: Record<string, { group: string; version: string; plural: string; namespaced: boolean }> = {
  ServiceUser: { group: 'serviceusers.dev', version: 'v1alpha1', plural: 'serviceusers', namespaced: true },
  RoleBinding: { group: 'serviceusers.dev', version: 'v1alpha1', plural: 'rolebindings', namespaced: true },
  Role: { group: 'serviceusers.dev', version: 'v1alpha1', plural: 'roles', namespaced: false },
  Account: { group: 'serviceusers.dev', version: 'v1alpha1', plural: 'accounts', namespaced: false },
  // config/policy: the admission policies and the ClusterRoles for people.
  ValidatingAdmissionPolicy: { group: 'admissionregistration.k8s.io', version: 'v1', plural: 'validatingadmissionpolicies', namespaced: false },
  ValidatingAdmissionPolicyBinding: { group: 'admissionregistration.k8s.io', version: 'v1', plural: 'validatingadmissionpolicybindings', namespaced: false },
  ClusterRole: { group: 'rbac.authorization.k8s.io', version: 'v1', plural: 'clusterroles', namespaced: false },
};

/** Server-side applies this project's manifests (config/roles, config/samples, config/policy) as raw JSON. */
export async function applyManifests(client: KubeClient, objects: KubernetesObject[], namespace: string, fieldManager = 'service-user-operator-dev'): Promise<void> {
  for (const obj of objects) {
    const where = kindPaths[obj.kind ?? ''];
    if (!where) throw new Error(`cannot apply kind ${obj.kind}`);
    const meta = { ...obj.metadata!, ...(where.namespaced ? { namespace } : {}) } as ObjectMeta;
    const path = resourcePath(where, meta.namespace, meta.name);
    await client.apply(path, { ...obj, metadata: meta }, fieldManager);
  }
}

/** Every manifest in a kustomize directory's YAML files (kustomization.yaml aside). */
export function manifestsIn(dir: string): KubernetesObject[] {
  return readdirSync(path.join(repoRoot, dir))
    .filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml')
    .sort()
    .flatMap((f) => loadYaml(path.join(repoRoot, dir, f)));
}
