// `npm run e2e`: the install end to end against a real node (test/e2e/install.test.ts). Not
// part of `npm test`: it needs root, containerd, runc, podman and mmdebstrap, and builds
// the image and a kubelet.
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  root: fileURLToPath(new URL('../..', import.meta.url)),
  test: {
    include: ['test/e2e/**/*.test.ts'],
    globalSetup: ['test/setup/node-version.ts'],
    testTimeout: 600_000,
    hookTimeout: 60 * 60_000,
    fileParallelism: false,
  },
});
