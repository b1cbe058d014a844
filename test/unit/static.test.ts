// Typecheck and lint are part of the test suite: a type error or lint error fails `npm test`.
import { execFile } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../cluster/controlplane.ts';

const run = promisify(execFile);

async function tool(script: string, args: string[]): Promise<{ code: number; output: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [path.join(repoRoot, script), ...args], {
      cwd: repoRoot,
      maxBuffer: 16 * 1024 * 1024,
    });
    return { code: 0, output: stdout + stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? 1, output: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

describe('static checks', () => {
  it('typechecks (tsc --noEmit, strict)', { timeout: 180_000 }, async () => {
    const result = await tool('node_modules/typescript/bin/tsc', ['--noEmit', '-p', 'tsconfig.json']);
    expect(result.output).toBe('');
    expect(result.code).toBe(0);
  });

  it('bundles to JavaScript that runs with no node_modules (npm run build, the container image\'s entrypoint)', { timeout: 180_000 }, async () => {
    const built = await tool('build/bundle.ts', []);
    expect(built.code, built.output).toBe(0);
    // As the image's run stage has it: dist/ alone, no node_modules anywhere above it.
    const image = mkdtempSync(path.join(tmpdir(), 'bundle-'));
    try {
      cpSync(path.join(repoRoot, 'dist'), path.join(image, 'dist'), { recursive: true });
      const help = await run(process.execPath, ['dist/main.js', '--help'], { cwd: image });
      expect(help.stdout).toContain('Usage: npm start -- [flags]');
      // Past the flags: it loads its whole graph and fails only on the missing cluster, in words.
      const started = await run(process.execPath, ['dist/main.js'], { cwd: image, env: { PATH: process.env.PATH ?? '', HOME: image } }).catch((err: { stdout?: string; stderr?: string }) => err);
      expect(`${started.stdout}${started.stderr}`).toContain('no kubeconfig and no in-cluster configuration: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set');
    } finally {
      rmSync(image, { recursive: true, force: true });
    }
  });

  it('lints clean (eslint)', { timeout: 180_000 }, async () => {
    const result = await tool('node_modules/eslint/bin/eslint.js', ['--config', 'test/eslint.config.js', '--max-warnings=0', '.']);
    expect(result.output.trim()).toBe('');
    expect(result.code).toBe(0);
  });
});
