// The operator's weight (issue 24): how many production packages it carries (what the image
// installs: `npm ls --omit=dev --all --parseable`, one line per package plus the project),
// the image as `npm run image` builds it (its size as podman counts it), and the event-loop
// time of one PKCS#12 bundle (median over BENCH_PKCS12 bundles, each awaited alone, so the
// figure is one bundle's cost and not a batch's).
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { createCa, loadCa } from '../src/credentials/ca.ts';
import { issueClientCertificate } from '../src/credentials/certificate.ts';
import { newPkcs12Password, toPkcs12 } from '../src/credentials/pkcs12.ts';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const round = (n: number) => Math.round(n * 100) / 100;

export function productionPackages(): { count: number; direct: string[] } {
  const out = execFileSync('npm', ['ls', '--omit=dev', '--all', '--parseable'], { cwd: root, encoding: 'utf8' });
  const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> };
  return { count: out.split('\n').filter(Boolean).length, direct: Object.keys(pkg.dependencies ?? {}) };
}

/** `npm run image`'s own report of what it built (its output passes through to stderr: it takes minutes). */
export function imageSize(): { bytes: number; digest: string } | { error: string } {
  const run = spawnSync('bash', [path.join(root, 'test/image/build.sh')], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 64 * 2 ** 20 });
  process.stderr.write(run.stdout ?? '');
  const m = /size \d+ MB \((\d+) bytes\), digest (\S+)/.exec(run.stdout ?? '');
  if (run.status !== 0 || !m) return { error: `npm run image exited ${run.status ?? run.signal}; its output is above` };
  return { bytes: Number(m[1]), digest: m[2]! };
}

export async function benchWeight(bundles: number) {
  const ca = await loadCa(await createCa());
  const leaf = await issueClientCertificate(ca, {
    identity: 'serviceuser:bench:p12', friendlyName: 'p12', namespace: 'bench', algorithm: 'ECDSA', notBefore: new Date(), notAfter: new Date(Date.now() + 86_400_000),
  });
  const ms: number[] = [];
  for (let i = 0; i < bundles + 5; i++) {
    const start = performance.now();
    await toPkcs12({ certPem: leaf.certPem, keyPem: leaf.keyPem, caPem: ca.certPem, password: newPkcs12Password(), friendlyName: 'p12' });
    if (i >= 5) ms.push(performance.now() - start); // the first few warm the JIT
  }
  const packages = productionPackages();
  return {
    name: 'weight',
    productionPackages: packages.count,
    direct: packages.direct,
    image: imageSize(),
    pkcs12: { bundles, medianMs: round(median(ms)), p90Ms: round([...ms].sort((a, b) => a - b)[Math.floor(ms.length * 0.9)]!) },
  };
}
