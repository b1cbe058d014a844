// `npm run build`: the operator as the container image runs it — src/main.ts and every
// package it loads bundled by esbuild into dist/, so that the image's run stage carries no
// node_modules (config/manager/Dockerfile: `node dist/main.js`).
//
// Invariants:
// - dist/main.js runs on Node 24 with nothing beside it but dist/: a package.json there types
//   it as an ES module, and CommonJS packages inside it get a real `require` for Node's
//   built-ins (esbuild's ESM output has none).
// - What is imported only at run time (client-node's KubeConfig, for kubeconfigs with exec
//   plugins or auth providers: src/controller/connection.ts) stays a dynamic import of a
//   chunk under dist/chunks/, loaded only then — never at start, as in the unbundled code.
// - The licences of the bundled packages ship beside the code (dist/THIRD-PARTY-NOTICES).
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { notices } from '../plugins/release.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const banner = `// service-user-operator, bundled by build/bundle.ts from src/ (Apache-2.0); the licences of
// the packages bundled in it are in THIRD-PARTY-NOTICES beside it.
import { createRequire as __suoCreateRequire } from 'node:module';
const require = __suoCreateRequire(import.meta.url);`;

/** Bundles src/main.ts into `out` (dist/ by default); returns the files written, relative to it. */
export async function bundleOperator(out = path.join(root, 'dist')): Promise<string[]> {
  // Only what a previous bundle wrote: dist/plugin/ (npm run plugin:release) stays.
  for (const f of ['main.js', 'chunks', 'package.json', 'THIRD-PARTY-NOTICES']) rmSync(path.join(out, f), { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  const result = await build({
    entryPoints: { main: path.join(root, 'src/main.ts') },
    absWorkingDir: root,
    tsconfig: path.join(root, 'tsconfig.json'),
    bundle: true,
    splitting: true,
    platform: 'node',
    format: 'esm',
    target: 'node24',
    outdir: out,
    chunkNames: 'chunks/[name]-[hash]',
    // Whitespace and syntax only: names stay, so stack traces and logged errors read as in src/.
    minifyWhitespace: true,
    minifySyntax: true,
    keepNames: true,
    legalComments: 'none',
    banner: { js: banner },
    metafile: true,
    logLevel: 'warning',
  });
  writeFileSync(path.join(out, 'package.json'), '{ "type": "module" }\n');
  writeFileSync(path.join(out, 'THIRD-PARTY-NOTICES'), notices(result.metafile).replace(/^kubectl-service_user bundles/, 'service-user-operator (dist/) bundles'));
  return [...Object.keys(result.metafile.outputs).map((f) => path.relative(out, path.join(root, f))), 'package.json', 'THIRD-PARTY-NOTICES'].sort();
}

if (import.meta.main) {
  const files = await bundleOperator();
  console.log(`bundled src/main.ts into dist/: ${files.join(', ')}`);
}
