// Lint runs inside `npm test` (test/unit/static.test.ts), so a lint error fails the build.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

// The floors of src/ (src/README.md draws them): a folder imports only from its own floor's
// modules it is allowed and from floors below, never upward. Listed bottom to top.
const floors = [
  ['api'],
  ['credentials', 'notify'],
  ['observability'],
  ['controller'],
  ['authority'],
  ['account', 'rolebinding', 'serviceuser', 'verify'],
  ['cli'],
];
// Folders on the same floor that may not import each other: verification reads meanings
// (api/, authority/), never reconcile code; the reconcilers form a chain
// (serviceuser → rolebinding → account), never a cycle.
const sameFloorForbidden = {
  verify: ['account', 'rolebinding', 'serviceuser'],
  account: ['rolebinding', 'serviceuser', 'verify'],
  rolebinding: ['serviceuser', 'verify'],
  serviceuser: ['verify'],
};
// The wiring at the top (src/*.ts) is imported by nobody but itself.
const wiring = ['../operator.ts', '../verifier.ts', '../main.ts'];

const layering = floors.flatMap((floor, level) =>
  floor.map((folder) => {
    const above = floors.slice(level + 1).flat();
    const banned = [...above, ...(sameFloorForbidden[folder] ?? [])];
    return {
      files: [`src/${folder}/**/*.ts`],
      rules: {
        'no-restricted-imports': ['error', {
          patterns: [
            ...(banned.length ? [{ group: banned.map((f) => `../${f}/*`), message: `src/${folder}/ may not import from a floor above it or a forbidden sibling (src/README.md).` }] : []),
            { group: wiring, message: 'The wiring (operator.ts, verifier.ts, main.ts) is the top floor: nothing imports it.' },
            { group: ['../*/reconcile.ts'], message: "No module imports another folder's reconcile module: move what they share to a non-reconcile module (src/README.md)." },
          ],
        }],
      },
    };
  }),
);

export default tseslint.config(
  { ignores: ['node_modules/', '.cluster/', 'coverage/', 'charts/', 'crds/', 'config/', 'dist/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      'no-console': 'off',
    },
  },
  ...layering,
  {
    files: ['src/**/*.ts'],
    rules: {
      'max-lines-per-function': ['error', { max: 100, skipBlankLines: false, skipComments: false, IIFEs: true }],
    },
  },
);
