// The benchmarks run the operator as the image and the chart do, from their own reading of
// the Dockerfile (test/image/runtime.ts): that reading, on a Dockerfile of each shape it
// must handle and refuse. (e2e checks the running pod's argv and environment against it.)
import { describe, expect, it } from 'vitest';
import { imageRuntime } from '../image/runtime.ts';

const dockerfile = (run: string) => `FROM node:24 AS build\nENV BUILD_ONLY=1\nENTRYPOINT ["node", "--build-stage", "dist/main.js"]\n\nFROM distroless AS run\n${run}\n`;

describe('the image runtime the benchmarks read', () => {
  it('takes the run stage\'s ENTRYPOINT flags before dist/main.js and its ENV, never the build stage\'s', () => {
    expect(imageRuntime(dockerfile('ENV MALLOC_ARENA_MAX=2\nENTRYPOINT ["/nodejs/bin/node", "--optimize-for-size", "dist/main.js"]'))).toEqual({
      nodeFlags: ['--optimize-for-size'],
      env: { MALLOC_ARENA_MAX: '2' },
    });
    expect(imageRuntime(dockerfile('ENTRYPOINT ["/nodejs/bin/node", "dist/main.js"]'))).toEqual({ nodeFlags: [], env: {} });
  });

  it('refuses an ENTRYPOINT that does not run node … dist/main.js, naming it', () => {
    expect(() => imageRuntime(dockerfile('ENTRYPOINT ["/bin/sh", "-c", "run"]'))).toThrow(/ENTRYPOINT \["\/bin\/sh","-c","run"\] does not run node … dist\/main.js/);
    expect(() => imageRuntime(dockerfile('CMD ["x"]'))).toThrow();
  });

  it('reads the project\'s own Dockerfile', () => {
    expect(() => imageRuntime()).not.toThrow();
  });
});
