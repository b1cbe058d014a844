// The Helm CLI for the chart tests and the end-to-end install, built once from its Go module
// (see tools.go) with the ldflags of Helm's own Makefile: its version, and the Kubernetes
// version it assumes without a cluster (`helm template`, `helm lint`). Without them Helm
// assumes Kubernetes v1.20 and refuses the chart's kubeVersion (>=1.31).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildGoModule } from '../cluster/controlplane.ts';

const moduleDir = path.dirname(fileURLToPath(import.meta.url));

/** `require` versions from go.mod: Helm's own, and client-go's (v0.N → Kubernetes 1.N, as Helm's Makefile does). */
function pinned(goMod: string, module: string): string {
  const match = new RegExp(`^\\s*(?:require\\s+)?${module.replaceAll('.', '\\.')}\\s+(v\\d+\\.\\d+\\.\\d+)`, 'm').exec(goMod);
  if (!match?.[1]) throw new Error(`test/helm/go.mod does not require ${module} at a release version`);
  return match[1];
}

export function helmBinary(): string {
  const goMod = readFileSync(path.join(moduleDir, 'go.mod'), 'utf8');
  const helm = pinned(goMod, 'helm.sh/helm/v3');
  const [, clientGoMinor] = pinned(goMod, 'k8s.io/client-go').slice(1).split('.');
  const kubeMinor = String(Number(clientGoMinor));
  const ldflags = [`-X helm.sh/helm/v3/internal/version.version=${helm}`, '-X helm.sh/helm/v3/internal/version.gitTreeState=clean'];
  for (const pkg of ['helm.sh/helm/v3/pkg/lint/rules', 'helm.sh/helm/v3/pkg/chartutil']) {
    ldflags.push(`-X ${pkg}.k8sVersionMajor=1`, `-X ${pkg}.k8sVersionMinor=${kubeMinor}`);
  }
  return buildGoModule(moduleDir, 'helm', ldflags, 'helm.sh/helm/v3/cmd/helm');
}
