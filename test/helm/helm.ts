// The Helm CLI for the chart tests, built once from its Go module (see tools.go).
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildGoModule } from '../cluster/controlplane.ts';

export function helmBinary(): string {
  return buildGoModule(path.dirname(fileURLToPath(import.meta.url)), 'helm', [], 'helm.sh/helm/v3/cmd/helm');
}
