// Typecheck and lint are part of the test suite: a type error or lint error fails `npm test`.
import { execFile } from 'node:child_process';
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

  it('builds to JavaScript that runs (npm run build, the container image\'s entrypoint)', { timeout: 180_000 }, async () => {
    const built = await tool('node_modules/typescript/bin/tsc', ['-p', 'src/tsconfig.build.json']);
    expect(built.output).toBe('');
    const help = await run(process.execPath, [path.join(repoRoot, 'dist/main.js'), '--help']);
    expect(help.stdout).toContain('Usage: npm start -- [flags]');
  });

  it('lints clean (eslint)', { timeout: 180_000 }, async () => {
    const result = await tool('node_modules/eslint/bin/eslint.js', ['--config', 'test/eslint.config.js', '--max-warnings=0', '.']);
    expect(result.output.trim()).toBe('');
    expect(result.code).toBe(0);
  });
});
