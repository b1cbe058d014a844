// The docs a newcomer follows in their first hour, checked against what they describe
// (issue 21, items 9 and 10): a doc's claim that no test reads goes stale. Each check parses
// the doc and the thing it documents — the operator's --help, the chart's Service and values,
// the CRDs, `npm run dev` — never a copy of either.
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import path from 'node:path';
import { load } from 'js-yaml';
import { describe, expect, it } from 'vitest';
import { kinds } from '../../src/api/crd.ts';
import { parseDuration } from '../../src/api/duration.ts';
import { parseExtension } from '../../src/cli/change.ts';
import { repoRoot } from '../cluster/controlplane.ts';

const read = (file: string) => readFileSync(path.join(repoRoot, file), 'utf8');
const chart = 'charts/service-user-operator';

/** The flags of `npm start -- --help`, `--[no-]x` as `--x`. */
function helpFlags(): string[] {
  const help = /const help = `([\s\S]*?)`;/.exec(read('src/main.ts'))![1]!;
  return [...help.matchAll(/^ {2}(--(?:\[no-\])?[a-z-]+)/gm)].map((m) => m[1]!.replace('[no-]', ''));
}

/** The flags named in the first column of docs/operator.md's flag table, once per mention. */
function documentedFlags(): string[] {
  return read('docs/operator.md')
    .split('\n')
    .filter((line) => line.startsWith('| `--'))
    .flatMap((line) => [...line.split('|')[1]!.matchAll(/`(--(?:\[no-\])?[a-z-]+)/g)].map((m) => m[1]!.replace('[no-]', '')));
}

describe('docs/operator.md', () => {
  it('lists each flag once', () => {
    const flags = documentedFlags();
    expect(flags.filter((f, i) => flags.indexOf(f) !== i)).toEqual([]);
  });

  it('documents every flag of --help, and no flag --help lacks', () => {
    const documented = new Set(documentedFlags());
    const help = new Set(helpFlags());
    expect([...help].filter((f) => !documented.has(f))).toEqual([]);
    expect([...documented].filter((f) => !help.has(f))).toEqual([]);
  });
});

describe('docs/install.md', () => {
  it('lists each chart value once', () => {
    const values = read('docs/install.md')
      .split('\n')
      .filter((line) => line.startsWith('| `'))
      .flatMap((line) => [...line.split('|')[1]!.matchAll(/`([A-Za-z][\w.*]*)`/g)].map((m) => m[1]!));
    expect(values).toContain('watchNamespaces');
    expect(values.filter((v, i) => values.indexOf(v) !== i)).toEqual([]);
  });

  it('uninstall deletes every CRD the project installs', () => {
    const deleteLine = /kubectl delete crd ([^`]+)`/.exec(read('docs/install.md'))![1]!.trim().split(/\s+/);
    const crds = readdirSync(path.join(repoRoot, 'crds')).map((f) => (load(read(`crds/${f}`)) as { metadata: { name: string } }).metadata.name);
    expect(crds).toHaveLength(kinds.length);
    expect(deleteLine.sort()).toEqual(crds.sort());
  });
});

describe('the port-forward recipe', () => {
  it('forwards to the port the verification Service listens on', () => {
    const values = load(read(`${chart}/values.yaml`)) as { verification: { port: number } };
    const service = read(`${chart}/templates/service.yaml`);
    expect(service).toContain('{ name: verify, port: {{ .Values.verification.port }}');
    const recipes = ['docs/cli.md', 'src/cli/whoami.ts'].flatMap((f) =>
      [...read(f).matchAll(/port-forward -n service-user-operator svc\/service-user-operator (\d+):(\d+)/g)].map((m) => ({ file: f, remote: Number(m[2]) })),
    );
    expect(recipes.map((r) => r.file)).toEqual(['docs/cli.md', 'src/cli/whoami.ts']);
    for (const r of recipes) expect(r, r.file).toEqual({ file: r.file, remote: values.verification.port });
  });
});

describe('README.md', () => {
  it("lists the commands .ci/run runs, in its order (Install and test)", () => {
    const section = read('README.md').split('## Install and test')[1]!;
    const readme = /```sh\n([\s\S]*?)```/.exec(section)![1]!.split('\n').map((l) => l.replace(/#.*$/, '').trim()).filter(Boolean);
    const ci = [...read('.ci/run').matchAll(/^step "[^"]+" (.+)$/gm)].map((m) => m[1]!.trim());
    expect(ci).toEqual(readme.map((c) => (c === 'npm ci' ? 'npm ci --no-audit --no-fund' : c)));
    expect(ci).toContain('npm run e2e');
  });

  it('uses the namespace npm run dev creates', () => {
    const devNamespace = /^const namespace = '([^']+)';$/m.exec(read('test/cluster/dev.ts'))![1]!;
    // The commands: code blocks and code spans.
    const code = [...read('README.md').matchAll(/```sh\n([\s\S]*?)```|`([^`\n]+)`/g)].map((m) => m[1] ?? m[2]).join('\n');
    const namespaces = new Set([...code.matchAll(/(?:^|\s)(?:-n|namespace) ([a-z][a-z0-9-]*)(?=\s|$)/gm)].map((m) => m[1]));
    expect([...namespaces]).toEqual([devNamespace]);
  });

  it('links only files in the repository, as do the docs (a clone has nothing beside it)', () => {
    const files = ['README.md', ...readdirSync(path.join(repoRoot, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];
    const broken = files.flatMap((file) =>
      [...read(file).matchAll(/\]\(([^)#\s]+)(?:#[^)]*)?\)/g)]
        .map((m) => m[1]!)
        .filter((link) => !/^[a-z]+:/.test(link))
        .filter((link) => !existsSync(path.join(repoRoot, path.dirname(file), link)) || !path.resolve(repoRoot, path.dirname(file), link).startsWith(repoRoot + path.sep))
        .map((link) => `${file} → ${link}`),
    );
    expect(broken).toEqual([]);
  });
});

describe('docs/argocd.md', () => {
  const doc = read('docs/argocd.md');
  it('gives the health check for every kind', () => {
    const keyed = [...doc.matchAll(/resource\.customizations\.health\.serviceusers\.dev_(\w+):/g)].map((m) => m[1]);
    expect(keyed.sort()).toEqual(kinds.map((k) => k.kind).sort());
  });

  it('orders the sync: Accounts and Roles in an earlier wave than ServiceUsers and RoleBindings', () => {
    const waves = Object.fromEntries(
      [...doc.matchAll(/^\| `(-?\d+)`[^|]*\| ([A-Za-z, ]+) \|$/gm)].flatMap((m) => m[2]!.split(', ').map((kind) => [kind, Number(m[1])] as const)),
    );
    expect(Object.keys(waves).sort()).toEqual(kinds.map((k) => k.kind).sort());
    for (const first of ['Account', 'Role']) for (const then of ['ServiceUser', 'RoleBinding']) expect(waves[first]!).toBeLessThan(waves[then]!);
    expect(doc).toContain('argocd.argoproj.io/sync-wave: "-1"');
  });
});

describe('durations', () => {
  it('30d and 2w mean to extend --by what the CRD message tells a person to write', () => {
    const hint = read('src/api/primitives.ts');
    for (const [days, hours] of [...hint.matchAll(/(\d+[dw]) is (\d+h)/g)].map((m) => [m[1]!, m[2]!] as const)) {
      expect(parseExtension(days), days).toBe(parseDuration(hours));
    }
    expect(parseExtension('30d')).toBe(parseDuration('720h'));
  });
});
