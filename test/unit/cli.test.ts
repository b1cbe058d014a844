// The plugin's parts that need no cluster: flags and usage errors, durations for extend,
// relative times, and opening a PKCS#12 bundle with its password.
import { describe, expect, it } from 'vitest';
import { parseExtension } from '../../src/cli/change.ts';
import { relative, table } from '../../src/cli/format.ts';
import { openPkcs12 } from '../../src/cli/inspect.ts';
import { commands, options, run, usage, type Io } from '../../src/cli/main.ts';
import { target } from '../../src/cli/kubeconfig.ts';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { RequestOptions } from 'node:https';
import { createCa, loadCa } from '../../src/credentials/ca.ts';
import { issueClientCertificate } from '../../src/credentials/certificate.ts';
import { toPkcs12 } from '../../src/credentials/pkcs12.ts';
import { issueToken } from '../../src/credentials/token.ts';
import { repoRoot } from '../cluster/controlplane.ts';

function io(): Io & { stdout: string; stderr: string } {
  const o = {
    stdout: '',
    stderr: '',
    out: (t: string) => void (o.stdout += t),
    err: (t: string) => void (o.stderr += t),
    stdin: async () => '',
    stdinIsTty: true,
    now: () => Date.parse('2027-01-01T00:00:00Z'),
  };
  return o;
}

describe('kubectl service-user, offline', () => {
  it.each([
    [['rotate', '--dry-run=maybe', 'x'], '--dry-run=maybe: must be client or server'],
    [['status', '-o', 'name', 'x'], '-o name is for list only'],
    [['list', '--nope'], "Unknown option '--nope'"],
    [['inspect', 'configmap', 'x'], 'inspect what? kubectl service-user inspect secret NAME'],
    [['revoke', 'x'], 'TOKEN-ID is required'],
    [['revoke', 'x', 'suo_abc'], 'TOKEN-ID (7 characters, starting suo_, not printed here) is not a token id'],
    [['revoke', 'x', 'abc'], '"abc" is not a token id: a token id is 16 characters of a-z and 2-7'],
    [['extend', 'x'], 'give exactly one of --until DATE'],
    [['extend', 'x', '--until', '2027-13-01'], '--until 2027-13-01: must be a date'],
    [['whoami', 'suo_x'], 'never the command line'],
    [['whoami', '--verify-url', 'http://verify:8080'], 'must be https://'],
  ])('%j fails with exit 1 and says what to do', async (args, message) => {
    const o = io();
    expect(await run(args, o)).toBe(1);
    expect(o.stderr).toContain(message);
    expect(o.stderr.startsWith('error: ')).toBe(true);
  });

  it('whoami wants the token piped, never typed as an argument', async () => {
    const o = io();
    expect(await run(['whoami', '--verify-url', 'https://127.0.0.1:1'], o)).toBe(1);
    expect(o.stderr).toContain('pipe the token in');
  });

  it('takes 30d, 2w and Go durations for extend --by', () => {
    expect(parseExtension('30d')).toBe(30 * 86_400_000);
    expect(parseExtension('2w')).toBe(14 * 86_400_000);
    expect(parseExtension('36h')).toBe(36 * 3_600_000);
    expect(parseExtension('soon')).toBeUndefined();
    expect(parseExtension('-1d')).toBeUndefined();
  });

  it('prints relative times and aligned tables as kubectl does', () => {
    const now = Date.parse('2027-01-01T00:00:00Z');
    expect(relative(now + 6.5 * 86_400_000, now)).toBe('in 6d');
    expect(relative(now - 3 * 3_600_000, now)).toBe('3h ago');
    expect(relative(now + 90_000, now)).toBe('in 90s');
    expect(table(['NAME', 'PHASE'], [['a', 'Active'], ['longer', 'Expired']])).toBe('NAME     PHASE\na        Active\nlonger   Expired\n');
  });

  it('opens a PKCS#12 bundle with its password, and not with another', { timeout: 30_000 }, async () => {
    const ca = await loadCa(await createCa());
    const cert = await issueClientCertificate(ca, { identity: 'serviceuser:ns:a', friendlyName: 'a', namespace: 'ns', algorithm: 'ECDSA', notBefore: new Date(), notAfter: new Date(Date.now() + 3_600_000) });
    const p12 = await toPkcs12({ certPem: cert.certPem, keyPem: cert.keyPem, caPem: ca.certPem, password: 'right', friendlyName: 'a' });
    expect(await openPkcs12(p12, 'right', cert.serialNumber)).toMatchObject({ ok: true });
    expect(await openPkcs12(p12, 'wrong', cert.serialNumber)).toMatchObject({ ok: false, detail: expect.stringContaining('does not open with its password') });
    expect(await openPkcs12(p12, 'right', 'deadbeef')).toMatchObject({ ok: false, detail: expect.stringContaining('not the certificate of tls.crt') });
    expect(await openPkcs12(Buffer.from('junk'), 'right', cert.serialNumber)).toMatchObject({ ok: false });
  });
});

describe('a token typed where it does not belong is never printed back', () => {
  const { token, id } = issueToken();
  const damaged = `${token.slice(0, -1)}${token.at(-1) === 'A' ? 'B' : 'A'}`;
  it.each([
    ['revoke with the whole token', ['revoke', 'signer', token], [`that is a whole token, not a token id (it is not printed here, and nothing was sent). Its id is ${id}: kubectl service-user revoke signer ${id}\n`, 'The token is now in your shell history']],
    ['revoke with the whole token, in a namespace', ['revoke', 'signer', token, '-n', 'ci'], [`Its id is ${id}: kubectl service-user revoke signer ${id} -n ci`]],
    ['revoke with a damaged token', ['revoke', 'signer', damaged], [`that looks like a token (suo_${id}_…, not printed here), not a token id, and it is damaged (token checksum mismatch (typo or truncation)); if it is signer's, its id is ${id}`]],
    ['revoke with a truncated token', ['revoke', 'signer', token.slice(0, 30)], [`(suo_${id}_…, not printed here)`, 'malformed token']],
    ['revoke with the secret part alone', ['revoke', 'signer', token.slice(21)], [`TOKEN-ID (${token.length - 21} characters, not printed here) is not a token id`]],
    ['revoke with an id and the token', ['revoke', 'signer', id, token], [`revoke takes NAME and one TOKEN-ID (got signer ${id} suo_${id}_…)`]],
    ['rotate with the token', ['rotate', 'signer', token], [`rotate takes one NAME (got signer suo_${id}_…)`]],
    ['the token as a command', [token], [`unknown command "suo_${id}_…"`]],
    ['the token as a flag', ['list', `--${token}`], [`Unknown option '--suo_${id}_…'`]],
  ])('%s: exit 1, the id offered, the token never printed', async (_, args, messages) => {
    const o = io();
    expect(await run(args, o)).toBe(1);
    for (const m of messages) expect(o.stderr).toContain(m);
    // Not the token, and not a piece of its secret (the part after suo_<id>_).
    for (const piece of [token, damaged, token.slice(21, 29), token.slice(-12)]) expect(o.stdout + o.stderr).not.toContain(piece);
  });
});

describe('the help, as users read it', () => {
  it('--help and docs/cli.md agree: every flag and command, and how whoami falls back without --cert', () => {
    const docs = readFileSync(path.join(repoRoot, 'docs/cli.md'), 'utf8');
    for (const flag of Object.keys(options)) {
      expect(usage, `--${flag} in --help`).toContain(`--${flag}`);
      expect(docs, `--${flag} in docs/cli.md`).toContain(`--${flag}`);
    }
    for (const command of Object.keys(commands)) expect(docs, `${command} in docs/cli.md`).toContain(`| \`${command}`);
    // Without --cert the token asks for itself, else the ServiceUser recording it is read through
    // the kubeconfig; TokenReview answers only authenticated callers, so neither offers it.
    expect(usage).toContain('the token authenticates itself and needs verification:introspect, else the\n            plugin finds the ServiceUser that records the token, through the kubeconfig');
    expect(docs).toMatch(/the plugin finds the ServiceUser\s+whose status records this token \(its id and SHA-256\) through your kubeconfig/);
    expect(usage).not.toContain('TokenReview');
  });

  it('names no test-only switch: neither the plugin\'s --help nor the operator\'s', { timeout: 60_000 }, async () => {
    const o = io();
    expect(await run(['--help'], o)).toBe(0);
    const operator = await promisify(execFile)(process.execPath, [path.join(repoRoot, 'src/main.ts'), '--help']);
    expect(operator.stdout).toContain('Usage: npm start -- [flags]');
    for (const help of [o.stdout, operator.stdout]) expect(help).not.toMatch(/SUO_TEST|CRASH_POINT|crash-safety test/);
  });
});

describe('the kubeconfig, as kubectl reads it', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'cli-kubeconfig-'));
  const first = path.join(dir, 'a.yaml');
  const second = path.join(dir, 'sub', 'b.yaml');
  writeFileSync(first, [
    'apiVersion: v1', 'kind: Config', 'current-context: dev',
    'contexts:', '- {name: dev, context: {cluster: one, user: u1, namespace: team-a}}',
    'clusters:', '- {name: one, cluster: {server: "https://one.example:6443", certificate-authority: ca-one.crt}}',
    'users:', '- {name: u1, user: {token: first-token}}',
  ].join('\n'));
  writeFileSync(path.join(dir, 'ca-one.crt'), 'CA ONE');

  const optionsOf = async (t: Awaited<ReturnType<typeof target>>) => {
    const o: RequestOptions = {};
    await t.connection.applyToHTTPSOptions(o);
    return o;
  };

  it('merges KUBECONFIG files (first wins), resolves paths per file, takes the context\'s namespace', async () => {
    mkdirSync(path.join(dir, 'sub'), { recursive: true });
    writeFileSync(second, [
      'apiVersion: v1', 'kind: Config', 'current-context: prod',
      'contexts:', '- {name: prod, context: {cluster: two, user: u2}}', '- {name: dev, context: {cluster: two, user: u2}}',
      'clusters:', '- {name: two, cluster: {server: "https://two.example", certificate-authority: ca-two.crt}}',
      'users:', '- {name: u2, user: {token: second-token}}',
    ].join('\n'));
    writeFileSync(path.join(dir, 'sub', 'ca-two.crt'), 'CA TWO');
    const old = process.env.KUBECONFIG;
    process.env.KUBECONFIG = [first, path.join(dir, 'absent.yaml'), second].join(path.delimiter);
    try {
      const dev = await target({});
      expect(dev.context).toBe('dev');
      expect(dev.namespace).toBe('team-a');
      expect(dev.connection.getCurrentCluster()?.server).toBe('https://one.example:6443');
      expect(String((await optionsOf(dev)).ca)).toBe('CA ONE');
      const prod = await target({ context: 'prod', namespace: 'ops', as: 'jane', asGroups: ['g1', 'g2'] });
      expect(prod.namespace).toBe('ops');
      const o = await optionsOf(prod);
      expect(String(o.ca)).toBe('CA TWO');
      expect(o.headers).toMatchObject({ authorization: 'Bearer second-token', 'Impersonate-User': 'jane', 'Impersonate-Group': ['g1', 'g2'] });
      expect((await target({ context: 'prod' })).namespace).toBe('default');
      await expect(target({ context: 'staging' })).rejects.toThrow(/context "staging" not found .*\(contexts: dev, prod\)/);
      await expect(target({ kubeconfig: path.join(dir, 'nope.yaml') })).rejects.toThrow('no such file');
    } finally {
      if (old === undefined) delete process.env.KUBECONFIG;
      else process.env.KUBECONFIG = old;
    }
  });
});
