// `npm run generate`: writes the CRDs (and their copies) from the zod schemas, and the chart's
// CRD, role-catalog and policy templates.
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { generatedFiles, readPolicy, readRoleCatalog } from './crd.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
for (const [file, text] of generatedFiles(readRoleCatalog(root), readPolicy(root))) {
  mkdirSync(path.dirname(path.join(root, file)), { recursive: true });
  writeFileSync(path.join(root, file), text);
  console.log(`wrote ${file}`);
}
