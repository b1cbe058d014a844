import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { kubernetesVersion, repoRoot } from '../cluster/controlplane.ts';

describe('local control plane module', () => {
  it('is pinned to a Kubernetes 1.34+ release with every staging module replaced at the same patch', () => {
    const version = kubernetesVersion();
    const [major, minor, patch] = version.slice(1).split('.').map(Number);
    expect(major).toBe(1);
    expect(minor).toBeGreaterThanOrEqual(34);
    const goMod = readFileSync(path.join(repoRoot, 'test/cluster/go.mod'), 'utf8');
    const replaced = [...goMod.matchAll(/^\s*k8s\.io\/(\S+) => k8s\.io\/\1 (v\S+)$/gm)];
    expect(replaced.length).toBeGreaterThanOrEqual(30);
    for (const [, name, v] of replaced) expect({ name, v }).toEqual({ name, v: `v0.${minor}.${patch}` });
  });
});
