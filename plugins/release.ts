// The kubectl plugin's release: `npm run plugin:release [-- --out DIR] [-- --base-url URL]`.
// It bundles src/cli/ and every package it loads into one ES module script,
// kubectl-service_user, that runs on Node 24 with no node_modules; packs it into a release
// archive; and writes the krew manifest whose uri and sha256 are this archive's.
//
// Invariants:
// - The archive is reproducible: the same sources and dependencies give the same bytes (entries
//   in a fixed order, fixed owner and mtime, gzip without a timestamp), so anyone can rebuild a
//   release and compare its sha256 with the manifest's.
// - The manifest's sha256 is computed from the bytes written to the archive file, never typed.
// - The archive holds the script, a package.json that pins it as an ES module (an extensionless
//   file is otherwise typed by whatever package.json lies above it: `npm init` writes
//   "type": "commonjs"), and the licences of the bundled packages.
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { gzipSync } from 'node:zlib';
import { build, type Metafile } from 'esbuild';
import { dump } from 'js-yaml';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const binName = 'kubectl-service_user';
/** Where a release's archive is published: BASE/vVERSION/ARCHIVE (GitHub's release downloads). */
export const defaultBaseUrl = 'https://github.com/service-user-operator/service-user-operator/releases/download';
/** npm pack's fixed mtime (1985-10-26T08:15:00Z): a date, not the build's time. */
const fixedMtime = 499_162_500;

export interface Release {
  dir: string;
  version: string;
  bin: string;
  archive: string;
  sha256: string;
  manifest: string;
  uri: string;
}

// ---- the bundle ----------------------------------------------------------------------------

// Refuses an older Node in words before anything else runs: the bundle needs Node 24's APIs.
const banner = `#!/usr/bin/env node
// kubectl service-user ${'${VERSION}'}: one file, built by plugins/release.ts from src/cli/ (Apache-2.0);
// the licences of the packages bundled in it are in THIRD-PARTY-NOTICES beside it.
if (Number(process.versions.node.split('.')[0]) < 24) {
  process.stderr.write('error: kubectl service-user needs Node.js 24 or later on PATH; ' + process.execPath + ' is ' + process.version + '\\n');
  process.exit(1);
}
import { createRequire as __suoCreateRequire } from 'node:module';
const require = __suoCreateRequire(import.meta.url);`;

/** src/cli/main.ts and all it imports, as one ES module. */
async function bundle(version: string): Promise<{ code: Uint8Array; metafile: Metafile }> {
  const result = await build({
    stdin: { contents: "import { main } from './src/cli/main.ts';\nawait main();\n", resolveDir: root, sourcefile: 'plugin-entry.ts', loader: 'ts' },
    absWorkingDir: root,
    tsconfig: path.join(root, 'tsconfig.json'),
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node24',
    minify: true,
    // Class and function names stay: errors and a few libraries read them.
    keepNames: true,
    legalComments: 'none',
    // main.ts runs itself when it is the entry; in the bundle the stdin entry calls main().
    define: { 'import.meta.main': 'false' },
    banner: { js: banner.replace('${VERSION}', `v${version}`) },
    metafile: true,
    write: false,
    outfile: binName,
    logLevel: 'warning',
  });
  const out = result.outputFiles[0];
  if (!out) throw new Error('esbuild wrote no output');
  return { code: out.contents, metafile: result.metafile };
}

/** Each bundled package's name, version, licence and licence text, sorted by name. */
export function notices(metafile: Metafile): string {
  const dirs = new Set<string>();
  for (const input of Object.keys(metafile.inputs)) {
    const m = /^(.*node_modules\/(?:@[^/]+\/)?[^/]+)\//.exec(input);
    if (m) dirs.add(m[1]!);
  }
  const sections = [...dirs].sort().map((dir) => {
    const abs = path.join(root, dir);
    const pkg = JSON.parse(readFileSync(path.join(abs, 'package.json'), 'utf8')) as { name: string; version: string; license?: string };
    const file = readdirSync(abs).sort().find((f) => /^(licen[cs]e|copying)(\.|$)/i.test(f));
    const text = file ? readFileSync(path.join(abs, file), 'utf8').trim() : `(no licence file in the package; its package.json says ${pkg.license ?? 'nothing'})`;
    return `${pkg.name} ${pkg.version} — ${pkg.license ?? 'unknown'}\n\n${text}\n`;
  });
  const names = [...new Set(sections.map((s) => s.split(' ')[0]))];
  return `kubectl-service_user bundles these ${names.length} packages:\n\n${sections.join(`\n${'-'.repeat(78)}\n\n`)}`;
}

// ---- the archive ---------------------------------------------------------------------------

interface Entry {
  name: string;
  mode: number;
  data: Uint8Array;
}

function octal(value: number, width: number): string {
  return `${value.toString(8).padStart(width - 1, '0')}\0`;
}

/** One POSIX ustar header (512 bytes) for a regular file owned by root. */
function header(e: Entry): Buffer {
  if (Buffer.byteLength(e.name) > 100) throw new Error(`${e.name}: name too long for a ustar header`);
  const h = Buffer.alloc(512);
  h.write(e.name, 0, 100, 'utf8');
  h.write(octal(e.mode, 8), 100);
  h.write(octal(0, 8), 108);
  h.write(octal(0, 8), 116);
  h.write(octal(e.data.length, 12), 124);
  h.write(octal(fixedMtime, 12), 136);
  h.write(' '.repeat(8), 148);
  h.write('0', 156);
  h.write('ustar\0', 257);
  h.write('00', 263);
  h.write('root', 265);
  h.write('root', 297);
  let sum = 0;
  for (const byte of h) sum += byte;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
  return h;
}

/** A gzipped ustar archive of the entries, in the order given. */
export function tarGz(entries: Entry[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    parts.push(header(e), Buffer.from(e.data), Buffer.alloc((512 - (e.data.length % 512)) % 512));
  }
  parts.push(Buffer.alloc(1024));
  // Node's gzip header carries no timestamp or name: the same tar gives the same bytes.
  return gzipSync(Buffer.concat(parts), { level: 9 });
}

// ---- the manifest --------------------------------------------------------------------------

function manifest(version: string, uri: string, sha256: string): string {
  const plugin = {
    apiVersion: 'krew.googlecontainertools.github.com/v1alpha2',
    kind: 'Plugin',
    metadata: { name: 'service-user' },
    spec: {
      version: `v${version}`,
      homepage: 'https://github.com/service-user-operator/service-user-operator',
      shortDescription: 'Inspect, rotate, revoke and verify service-user credentials',
      description:
        'The command line of service-user-operator: list service users and their phase, end date,\n' +
        'tokens and accounts; show a user\'s conditions, tokens, certificate, permissions and events;\n' +
        'check what a credentials Secret holds (token checksum, certificate chain, CRL, PKCS#12\n' +
        'password) without printing the token; rotate, revoke, disable, enable and extend by\n' +
        'server-side apply under its own field manager; and ask the verification service who a\n' +
        'token is.\n',
      caveats:
        'Needs Node.js 24 or later on PATH as `node` (the plugin is one JavaScript file; it\n' +
        'needs nothing else). `kubectl service-user whoami` needs the verification service\'s URL\n' +
        'and CA: --verify-url and --verify-ca, or SERVICE_USER_VERIFY_URL and SERVICE_USER_VERIFY_CA.\n',
      platforms: [
        {
          selector: { matchExpressions: [{ key: 'os', operator: 'In', values: ['linux', 'darwin'] }] },
          uri,
          sha256,
          files: [{ from: '*', to: '.' }],
          bin: binName,
        },
      ],
    },
  };
  return (
    '# krew manifest for `kubectl service-user`, written by plugins/release.ts (npm run plugin:release):\n' +
    '# uri and sha256 are those of the archive it built beside this file. Install that archive with\n' +
    `#   kubectl krew install --manifest=service-user.yaml --archive=${path.basename(uri)}\n` +
    dump(plugin, { lineWidth: 100 })
  );
}

// ---- the release ---------------------------------------------------------------------------

export async function release(options: { out?: string; baseUrl?: string } = {}): Promise<Release> {
  const dir = path.resolve(options.out ?? path.join(root, 'dist', 'plugin'));
  const version = (JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string }).version;
  const { code, metafile } = await bundle(version);
  const entries: Entry[] = [
    { name: binName, mode: 0o755, data: code },
    { name: 'package.json', mode: 0o644, data: Buffer.from(`${JSON.stringify({ name: 'kubectl-service-user', version, private: true, type: 'module', license: 'Apache-2.0' }, null, 2)}\n`) },
    { name: 'THIRD-PARTY-NOTICES', mode: 0o644, data: Buffer.from(notices(metafile)) },
  ];
  mkdirSync(dir, { recursive: true });
  for (const e of entries) writeFileSync(path.join(dir, e.name), e.data, { mode: e.mode });
  const archiveName = `kubectl-service-user-v${version}.tar.gz`;
  const archive = path.join(dir, archiveName);
  writeFileSync(archive, tarGz(entries));
  const sha256 = createHash('sha256').update(readFileSync(archive)).digest('hex');
  writeFileSync(`${archive}.sha256`, `${sha256}  ${archiveName}\n`);
  const uri = `${(options.baseUrl ?? defaultBaseUrl).replace(/\/$/, '')}/v${version}/${archiveName}`;
  const manifestFile = path.join(dir, 'service-user.yaml');
  writeFileSync(manifestFile, manifest(version, uri, sha256));
  return { dir, version, bin: path.join(dir, binName), archive, sha256, manifest: manifestFile, uri };
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { out: { type: 'string' }, 'base-url': { type: 'string' } }, strict: true });
  if (values['base-url'] !== undefined && !/^https:\/\/\S+$/.test(values['base-url'])) {
    process.stderr.write(`error: --base-url ${values['base-url']}: must be an https:// URL (krew downloads the archive from BASE/vVERSION/ARCHIVE)\n`);
    process.exit(1);
  }
  const r = await release({ ...(values.out ? { out: values.out } : {}), ...(values['base-url'] ? { baseUrl: values['base-url'] } : {}) });
  const rel = (p: string) => path.relative(process.cwd(), p) || '.';
  process.stdout.write(
    `${rel(r.bin)}  (${Math.round(readFileSync(r.bin).length / 1024)} KiB, runs on Node 24 alone)\n` +
      `${rel(r.archive)}  sha256 ${r.sha256}\n` +
      `${rel(r.manifest)}  uri ${r.uri}\n`,
  );
}
