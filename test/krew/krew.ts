// krew, the kubectl plugin manager, for the plugin's release test: built once from its Go
// module (see tools.go), with its version stamped as its own release does.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildGoModule } from '../cluster/controlplane.ts';

export function krewBinary(): string {
  return buildGoModule(path.dirname(fileURLToPath(import.meta.url)), 'krew', ['-X sigs.k8s.io/krew/internal/version.gitTag=v0.4.3'], 'sigs.k8s.io/krew/cmd/krew');
}
