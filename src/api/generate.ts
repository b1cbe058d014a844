// `npm run generate`: writes the CRDs (and their copies) from the zod schemas, and the chart's
// CRD and role-catalog templates.
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { generatedFiles } from './crd.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const rolesDir = path.join(root, 'config/roles');
const roleCatalog = readdirSync(rolesDir)
  .filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml')
  .sort()
  .map((name) => ({ name, text: readFileSync(path.join(rolesDir, name), 'utf8') }));
for (const [file, text] of generatedFiles(roleCatalog)) {
  mkdirSync(path.dirname(path.join(root, file)), { recursive: true });
  writeFileSync(path.join(root, file), text);
  console.log(`wrote ${file}`);
}
