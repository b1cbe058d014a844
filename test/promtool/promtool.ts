// promtool, Prometheus' own checker, for the alert and dashboard tests: built once from its
// Go module (see tools.go).
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildGoModule } from '../cluster/controlplane.ts';

export function promtoolBinary(): string {
  return buildGoModule(path.dirname(fileURLToPath(import.meta.url)), 'promtool', [], 'github.com/prometheus/prometheus/cmd/promtool');
}
