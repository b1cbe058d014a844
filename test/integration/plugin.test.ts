// kubectl service-user, as a person installs and runs it: the release script (npm run
// plugin:release) builds the one-file plugin and its archive, krew installs that archive from
// the manifest the script wrote, and the real kubectl finds the installed file on a PATH that
// holds Node 24 and nothing of this checkout. It runs against the run's API server, with the
// operator (and its verification service) running in this process. Every command, its -o
// json, its errors and exit codes.
import { execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { dump, load } from 'js-yaml';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { resources } from '../../src/api/resources.ts';
import { resourcePath, type KubeObject } from '../../src/controller/kube.ts';
import { repoRoot } from '../cluster/controlplane.ts';
import { applyManifests } from '../crds.ts';
import { krewBinary } from '../krew/krew.ts';
import { eventually, useNamespace } from '../kube.ts';
import { api, decodeSecret, useAccounts, useOperator, statusOf } from '../operator.ts';

const ns = useNamespace('plugin');
const running = useOperator(ns, { verification: { address: '127.0.0.1:0' } });
useAccounts(['acme']);
const k = () => api(running.client, ns.name);
const dir = mkdtempSync(path.join(tmpdir(), 'plugin-'));
const role = `plugin-${randomBytes(3).toString('hex')}`;
let verifyUrl = '';
let revokedToken = '';
const caFile = path.join(dir, 'ca.crt');
const run = promisify(execFile);

// A user's machine: a home where `npm init` once ran (its package.json types every
// extensionless file below it as CommonJS), krew's root in it, and a tools directory with
// Node 24 as `node` and krew as `kubectl-krew`.
const home = path.join(dir, 'home');
const krewRoot = path.join(home, '.krew');
const tools = path.join(dir, 'tools');
const releaseDir = path.join(dir, 'release');
const version = (JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { version: string }).version;
const archive = path.join(releaseDir, `kubectl-service-user-v${version}.tar.gz`);
const manifestFile = path.join(releaseDir, 'service-user.yaml');
const releaseScript = path.join(repoRoot, 'plugins', 'release.ts');

/** krew's bin, Node 24, and the system's directories (kubectl): nothing of this checkout. */
const userPath = () =>
  [path.join(krewRoot, 'bin'), tools, ...(process.env.PATH ?? '').split(path.delimiter).filter((d) => d && !path.resolve(d).startsWith(repoRoot))].join(path.delimiter);

function userEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, HOME: home, KREW_ROOT: krewRoot, PATH: userPath(), KUBECONFIG: inject('kubeconfig'), ...extra };
  delete env.NODE_PATH;
  delete env.NODE_OPTIONS;
  return env;
}

interface Ran {
  code: number;
  out: string;
  err: string;
}

/** `kubectl service-user …` as installed by krew, without blocking the in-process operator. */
function ksu(args: string[], options: { stdin?: string; env?: NodeJS.ProcessEnv } = {}): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn('kubectl', ['service-user', ...args], { cwd: home, env: userEnv(options.env), stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, out, err });
    });
    child.stdin.end(options.stdin ?? '');
  });
}
const inNs = (...args: string[]) => ksu([...args, '-n', ns.name]);

const activeToken = (o: KubeObject) => statusOf(o).tokens?.find((t) => t.state === 'Active')?.id;
const day = 86_400_000;

/** The Secret's token once status records it Active (a rotation writes the Secret first). */
const currentToken = (name: string) =>
  eventually(`${name}'s current token`, async () => {
    const data = decodeSecret((await k().secret(`${name}-credentials`))!);
    return data['token-id'] === activeToken(await k().serviceUser(name)) ? data.token : undefined;
  });
const endIn6Days = new Date(Date.now() + 6 * day).toISOString().slice(0, 10);

// The release, built and installed as a user would: outside any test's timeout.
beforeAll(async () => {
  mkdirSync(tools, { recursive: true });
  symlinkSync(process.execPath, path.join(tools, 'node'));
  symlinkSync(krewBinary(), path.join(tools, 'kubectl-krew'));
  mkdirSync(home, { recursive: true });
  writeFileSync(path.join(home, 'package.json'), `${JSON.stringify({ name: 'home', version: '1.0.0', type: 'commonjs' })}\n`);
  await run(process.execPath, [releaseScript, '--out', releaseDir], { cwd: repoRoot });
  await run('kubectl', ['krew', 'install', `--manifest=${manifestFile}`, `--archive=${archive}`], { cwd: home, env: userEnv() });
}, 180_000);

beforeAll(async () => {
  writeFileSync(caFile, running.operator.authority.ca.certPem);
  verifyUrl = `https://127.0.0.1:${running.operator.verificationPort()}`;
  const c = running.client;
  for (const [name, permissions] of [[`${role}.signer`, ['signatures:sign', 'releases:view']], [`${role}.auditor`, ['verification:introspect']]] as const) {
    await c.request('POST', resourcePath(resources.roles), { apiVersion: 'serviceusers.dev/v1alpha1', kind: 'Role', metadata: { name }, spec: { displayName: name, manager: 'software-trust-manager', permissions } });
  }
  await k().createServiceUser('signer', { email: 'ops@example.com', friendlyName: 'Release signer', endDate: endIn6Days, accounts: ['acme'] });
  await k().createServiceUser('auditor', { email: 'ops@example.com', accounts: ['acme'] });
  for (const [name, subject, roleName] of [['signer-signs', 'signer', 'signer'], ['auditor-audits', 'auditor', 'auditor']]) {
    await c.request('POST', resourcePath(resources.roleBindings, ns.name), {
      apiVersion: 'serviceusers.dev/v1alpha1', kind: 'RoleBinding', metadata: { name },
      spec: { roleRef: { name: `${role}.${roleName}` }, subjects: [{ kind: 'ServiceUser', name: subject }] },
    });
  }
  for (const name of ['signer', 'auditor']) {
    await k().waitFor(name, 'Active with permissions and certificate', (o) => statusOf(o).phase === 'Active' && !!statusOf(o).certificate && (statusOf(o).permissions ?? []).length > 0);
  }
}, 120_000);

afterAll(async () => {
  for (const r of ['signer', 'auditor']) await running.client.request('DELETE', resourcePath(resources.roles, undefined, `${role}.${r}`)).catch(() => undefined);
  rmSync(dir, { recursive: true, force: true });
});

describe('kubectl service-user', () => {
  it('installs alone: krew installs the archive its manifest names (sha256 checked), one file that runs on Node 24 with no node_modules', { timeout: 120_000 }, async () => {
    type Platform = { selector: { matchExpressions: unknown[] }; uri: string; sha256: string; bin: string; files: unknown[] };
    const manifest = load(readFileSync(manifestFile, 'utf8')) as { apiVersion: string; kind: string; metadata: { name: string }; spec: { version: string; shortDescription: string; platforms: Platform[] } };
    expect(manifest).toMatchObject({ apiVersion: 'krew.googlecontainertools.github.com/v1alpha2', kind: 'Plugin', metadata: { name: 'service-user' }, spec: { version: `v${version}` } });
    expect(manifest.spec.shortDescription.length).toBeGreaterThan(0);
    expect(manifest.spec.platforms).toHaveLength(1);
    const platform = manifest.spec.platforms[0]!;
    expect(platform.sha256).toBe(createHash('sha256').update(readFileSync(archive)).digest('hex'));
    expect(platform.uri).toBe(`https://github.com/service-user-operator/service-user-operator/releases/download/v${version}/${path.basename(archive)}`);
    expect(platform.bin).toBe('kubectl-service_user');
    expect(platform.selector.matchExpressions).toEqual([{ key: 'os', operator: 'In', values: ['linux', 'darwin'] }]);

    // What krew installed: the archive's three files, the built one among them, linked into its bin.
    const store = path.join(krewRoot, 'store', 'service-user', `v${version}`);
    expect(readdirSync(store).sort()).toEqual(['THIRD-PARTY-NOTICES', 'kubectl-service_user', 'package.json']);
    expect(readFileSync(path.join(store, 'kubectl-service_user')).equals(readFileSync(path.join(releaseDir, 'kubectl-service_user')))).toBe(true);
    expect(realpathSync(path.join(krewRoot, 'bin', 'kubectl-service_user'))).toBe(realpathSync(path.join(store, 'kubectl-service_user')));
    // Nothing to load packages from: no node_modules from the store up to the root.
    for (let d = store; ; d = path.dirname(d)) {
      expect(existsSync(path.join(d, 'node_modules')), d).toBe(false);
      if (d === path.dirname(d)) break;
    }
    expect((await run('kubectl', ['plugin', 'list'], { cwd: home, env: userEnv() })).stdout).toContain(path.join(krewRoot, 'bin', 'kubectl-service_user'));
    const help = await ksu(['--help']);
    expect(help.code).toBe(0);
    expect(help.err).toBe('');
    expect(help.out).toContain('kubectl service-user: service users, their credentials and who a token is.');

    // krew refuses an archive other than the one the manifest's sha256 names.
    const other = path.join(dir, 'other.tar.gz');
    writeFileSync(other, Buffer.concat([readFileSync(archive), Buffer.from([0])]));
    const refused = await run('kubectl', ['krew', 'install', `--manifest=${manifestFile}`, `--archive=${other}`], { cwd: home, env: userEnv({ KREW_ROOT: path.join(dir, 'krew-other') }) }).then(
      () => undefined,
      (err: { stderr: string }) => err,
    );
    expect(refused?.stderr).toMatch(/checksum does not match/);

    // Reproducible: built again (for a mirror), the archive is the same bytes; only the uri moves.
    const again = path.join(dir, 'release-again');
    await run(process.execPath, [releaseScript, '--out', again, '--base-url', 'https://mirror.example/suo/'], { cwd: repoRoot });
    expect(readFileSync(path.join(again, path.basename(archive))).equals(readFileSync(archive))).toBe(true);
    const mirrored = load(readFileSync(path.join(again, 'service-user.yaml'), 'utf8')) as { spec: { platforms: Platform[] } };
    expect(mirrored.spec.platforms[0]).toMatchObject({ uri: `https://mirror.example/suo/v${version}/${path.basename(archive)}`, sha256: platform.sha256 });

    // The checkout's launcher (bin/, on the project's Node) runs the same commands from source.
    const fromCheckout = await run('kubectl', ['service-user', 'list', '-n', ns.name, '-o', 'name'], { env: { ...process.env, PATH: `${path.join(repoRoot, 'bin')}${path.delimiter}${process.env.PATH}`, KUBECONFIG: inject('kubeconfig') } });
    expect(fromCheckout.stdout).toContain('serviceuser.serviceusers.dev/signer');
  });

  it('is found by kubectl on PATH, prints its help, and refuses what it does not know', { timeout: 120_000 }, async () => {
    const help = await ksu(['--help']);
    expect(help.code).toBe(0);
    for (const command of ['list', 'status', 'inspect secret', 'rotate', 'revoke', 'disable', 'enable', 'extend', 'whoami']) expect(help.out).toContain(command);
    const none = await ksu([]);
    expect(none.code).toBe(1);
    const unknown = await ksu(['frobnicate']);
    expect(unknown).toMatchObject({ code: 1 });
    expect(unknown.err).toMatch(/unknown command "frobnicate".*commands: list/);
    const flag = await ksu(['list', '--colour']);
    expect(flag.code).toBe(1);
    expect(flag.err).toContain("Unknown option '--colour'");
    const format = await inNs('list', '-o', 'xml');
    expect(format.code).toBe(1);
    expect(format.err).toContain('--output xml: must be json or yaml or name');
  });

  it('lists service users with friendly name, phase, expiry as date and "in 6d", tokens and accounts', { timeout: 120_000 }, async () => {
    const signer = await k().serviceUser('signer');
    const r = await inNs('list');
    expect(r.code).toBe(0);
    const [header, ...rows] = r.out.trimEnd().split('\n');
    expect(header).toMatch(/^NAME\s+FRIENDLY NAME\s+PHASE\s+EXPIRES\s+TOKENS\s+ACCOUNTS$/);
    const row = rows.find((l) => l.startsWith('signer '))!;
    expect(row).toContain('Release signer');
    expect(row).toContain('Active');
    expect(row).toContain(`${endIn6Days} (in 6d)`);
    expect(row).toContain(activeToken(signer)!);
    expect(row).toMatch(/acme$/);
    expect(rows.find((l) => l.startsWith('auditor '))).toContain('never');

    const all = await ksu(['list', '-A']);
    expect(all.out.split('\n')[0]).toMatch(/^NAMESPACE\s+NAME/);
    expect(all.out).toMatch(new RegExp(`^${ns.name}\\s+signer\\s`, 'm'));

    const json = JSON.parse((await inNs('list', '-o', 'json')).out) as { kind: string; items: KubeObject[] };
    expect(json.kind).toBe('List');
    expect(json.items.map((i) => i.metadata.name)).toEqual(['auditor', 'signer']);
    expect(json.items[0]!.metadata.managedFields).toBeUndefined();
    const yaml = load((await inNs('list', '-o', 'yaml')).out) as { items: KubeObject[] };
    expect(yaml.items).toHaveLength(2);
    expect((await inNs('list', '-o', 'name')).out).toBe('serviceuser.serviceusers.dev/auditor\nserviceuser.serviceusers.dev/signer\n');

    const empty = await ksu(['list', '-n', 'default']);
    expect(empty).toMatchObject({ code: 0, out: '' });
    expect(empty.err).toContain('No service users found in default namespace');
  });

  it('status shows conditions, tokens, certificate, permissions by account and the latest events', { timeout: 120_000 }, async () => {
    const signer = await k().serviceUser('signer');
    const r = await inNs('status', 'signer');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/Friendly name:\s+Release signer/);
    expect(r.out).toMatch(/Phase:\s+Active/);
    expect(r.out).toMatch(/Ready\s+True\s+Active/);
    expect(r.out).toMatch(new RegExp(`${activeToken(signer)}\\s+Active\\s+.*until .*\\(in 6d\\)`));
    expect(r.out).toContain(`Serial:       ${statusOf(signer).certificate!.serialNumber}`);
    // Its certificate ends with the user (in 6 days): nothing to renew before.
    expect(r.out).toMatch(/Renewal:\s+-\n/);
    expect((await inNs('status', 'auditor')).out).toMatch(/Renewal:\s+\S+ \(in \d+d\)/);
    expect(r.out).toMatch(/acme\s+software-trust-manager\/releases:view, software-trust-manager\/signatures:sign|acme\s+software-trust-manager\/signatures:sign, software-trust-manager\/releases:view/);
    expect(r.out).toMatch(/Normal\s+CredentialsIssued\s+\S+\s+token \w+ and client certificate \w+ \(valid until \S+\) issued/);

    const json = JSON.parse((await inNs('status', 'signer', '-o', 'json')).out) as { serviceUser: KubeObject; events: { reason: string }[] };
    expect(json.serviceUser.metadata.name).toBe('signer');
    expect(json.events.map((e) => e.reason)).toContain('CredentialsIssued');

    const missing = await inNs('status', 'nobody');
    expect(missing.code).toBe(1);
    expect(missing.err).toContain(`serviceuser "nobody" not found in namespace "${ns.name}" (kubectl service-user list -n ${ns.name}`);
    const noName = await inNs('status');
    expect(noName.code).toBe(1);
    expect(noName.err).toContain('NAME is required: kubectl service-user status NAME');
  });

  it('inspect secret checks what the Secret holds and never prints the token unless asked', { timeout: 120_000 }, async () => {
    const secret = decodeSecret((await k().secret('signer-credentials'))!);
    const id = secret['token-id']!;
    const r = await inNs('inspect', 'secret', 'signer-credentials', '--operator-namespace', ns.name);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toContain(`Token:        ${id}`);
    expect(r.out).toMatch(/checksum\s+ok\s+form and checksum valid/);
    expect(r.out).toMatch(/status\s+ok\s+recorded in signer's status as Active/);
    expect(r.out).toMatch(/subject\s+CN=serviceuser:/);
    expect(r.out).toMatch(/chain\s+ok\s+signed by .*\(ca.crt in the Secret\)/);
    expect(r.out).toMatch(/CRL\s+ok\s+not revoked \(from the revocation ledger \(ConfigMaps /);
    expect(r.out).toMatch(/client.p12\s+ok\s+opens with its password/);
    expect(r.out).not.toContain(secret.token);

    // By the ServiceUser's name, against the verification service's CA and CRL.
    const viaService = await inNs('inspect', 'secret', 'signer', '--verify-url', verifyUrl, '--verify-ca', caFile);
    expect(viaService.code).toBe(0);
    expect(viaService.out).toMatch(/chain\s+ok\s+signed by .*the verification service's \/v1\/ca.crt/);
    expect(viaService.out).toMatch(new RegExp(`CRL\\s+ok\\s+not revoked \\(CRL from ${verifyUrl.replaceAll('.', '\\.')}/v1/crl`));

    const json = JSON.parse((await inNs('inspect', 'secret', 'signer-credentials', '-o', 'json', '--operator-namespace', ns.name)).out) as { token: { id: string; checksum: { ok: boolean }; token?: string }; pkcs12: { ok: boolean } };
    expect(json.token).toMatchObject({ id, checksum: { ok: true } });
    expect(json.token.token).toBeUndefined();
    expect(json.pkcs12.ok).toBe(true);

    const shown = await inNs('inspect', 'secret', 'signer-credentials', '--show-token', '--operator-namespace', ns.name);
    expect(shown.code).toBe(0);
    expect(shown.out).toContain(secret.token);
    expect(shown.err).toMatch(/^warning: printing the token of .*: anyone who sees this output can use it until it is revoked \(kubectl service-user revoke signer /);
  });

  it('inspect secret fails (exit 2) on a token with a bad checksum, a key that does not match and a wrong p12 password', { timeout: 120_000 }, async () => {
    const original = (await k().secret('signer-credentials'))!;
    const data = decodeSecret(original);
    const token = data.token!;
    const last = token.at(-1) === 'A' ? 'B' : 'A';
    const other = decodeSecret((await k().secret('auditor-credentials'))!);
    const tampered = { ...data, token: token.slice(0, -1) + last, 'tls.key': other['tls.key']!, 'client.p12.password': 'wrong' };
    await running.client.request('POST', resourcePath(resources.secrets, ns.name), {
      apiVersion: 'v1', kind: 'Secret', metadata: { name: 'tampered' },
      data: Object.fromEntries(Object.entries({ ...tampered, 'client.p12': undefined }).filter(([, v]) => v !== undefined).map(([key, v]) => [key, Buffer.from(v!).toString('base64')])),
    });
    await running.client.mergePatch(resourcePath(resources.secrets, ns.name, 'tampered'), { data: { 'client.p12': (original.data as Record<string, string>)['client.p12'] } });
    const r = await inNs('inspect', 'secret', 'tampered', '--operator-namespace', ns.name);
    expect(r.code).toBe(2);
    expect(r.out).toMatch(/checksum\s+FAIL\s+token checksum mismatch/);
    expect(r.out).toMatch(/key\s+FAIL\s+tls.key does NOT match/);
    expect(r.out).toMatch(/client.p12\s+FAIL\s+does not open with its password/);
    expect(r.err).toMatch(/^error: \d check\(s\) failed for /);
    expect(r.out + r.err).not.toContain(token);

    const missing = await inNs('inspect', 'secret', 'nothing-here');
    expect(missing.code).toBe(1);
    expect(missing.err).toContain('secret "nothing-here" not found');
    expect((await inNs('inspect', 'signer')).err).toContain('kubectl service-user inspect secret NAME');
  });

  // Each command below starts kubectl and the plugin several times: on a loaded machine that
  // is seconds per run, hence the explicit timeouts (no step waits on a clock).
  it('--dry-run shows the patch and changes nothing; --dry-run=server has it validated', { timeout: 120_000 }, async () => {
    const dry = await inNs('rotate', 'signer', '--token', '--dry-run');
    expect(dry.code).toBe(0);
    expect(dry.out).toContain('token rotation requested (dry run: nothing changed)');
    expect(dry.out).toMatch(/rotationRequest: '?\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ/);
    const su0 = await k().serviceUser('signer');
    expect((su0.spec as { credentials: { token: Record<string, unknown> } }).credentials.token.rotationRequest).toBeUndefined();
    const serverDry = await inNs('disable', 'signer', '--dry-run=server');
    expect(serverDry.out).toContain('(dry run, validated by the server: nothing changed)');
    expect(((await k().serviceUser('signer')).spec as { disabled: boolean }).disabled).toBe(false);
  });

  it('revoke refuses what is not one of the tokens, and revokes and replaces the active one', { timeout: 120_000 }, async () => {
    // A whole token pasted where its id goes: said so, its id offered, the token never printed.
    const whole = await currentToken('signer');
    const wholeId = /^suo_([a-z2-7]{16})_/.exec(whole)![1]!;
    const pasted = await inNs('revoke', 'signer', whole);
    expect(pasted.code).toBe(1);
    expect(pasted.err).toContain('that is a whole token, not a token id (it is not printed here, and nothing was sent)');
    expect(pasted.err).toContain(`Its id is ${wholeId}: kubectl service-user revoke signer ${wholeId} -n ${ns.name}`);
    const damaged = await inNs('revoke', 'signer', `${whole.slice(0, -1)}${whole.at(-1) === 'A' ? 'B' : 'A'}`);
    expect(damaged.err).toContain(`that looks like a token (suo_${wholeId}_…, not printed here), not a token id, and it is damaged (token checksum mismatch`);
    const extra = await inNs('revoke', 'signer', wholeId, whole);
    expect(extra.err).toContain('revoke takes NAME and one TOKEN-ID');
    for (const r of [pasted, damaged, extra]) {
      expect(r.out + r.err).not.toContain(whole.slice(21, 29));
    }
    const bad = await inNs('revoke', 'signer', 'suo_not-an-id');
    expect(bad.code).toBe(1);
    expect(bad.err).toContain('is not a token id: a token id is 16 characters of a-z and 2-7');
    const unknown = await inNs('revoke', 'signer', 'aaaaaaaaaaaaaaaa');
    expect(unknown.code).toBe(1);
    expect(unknown.err).toContain("token aaaaaaaaaaaaaaaa is not one of signer's tokens");
    revokedToken = await currentToken('signer');
    const active = activeToken(await k().serviceUser('signer'))!;
    const revoked = await inNs('revoke', 'signer', active);
    expect(revoked.code).toBe(0);
    expect(revoked.out).toContain(`token ${active} revoked; it was the active token, so a new one is issued into Secret signer-credentials`);
    expect(revoked.out).toContain(`revokedTokenIds:\n          - ${active}`);
    expect(revoked.out).toContain('commit the same change there');
    await k().waitFor('signer', 'the token revoked and replaced', (o) => {
      const t = statusOf(o).tokens?.find((x) => x.id === active);
      return t?.state === 'Revoked' && t.reason === 'RevokedBySpec' && !!activeToken(o) && activeToken(o) !== active;
    });
  });

  it('disable puts the certificate on hold (inspect fails), enable releases it', { timeout: 120_000 }, async () => {
    const disabled = await inNs('disable', 'signer');
    expect(disabled.out).toContain('disabled: verification refuses its credentials until enabled');
    await k().waitFor('signer', 'Disabled', (o) => statusOf(o).phase === 'Disabled');
    // A disabled user's certificate is on hold: inspect says so and fails.
    const held = await eventually('the hold on the CRL', async () => {
      const r = await inNs('inspect', 'secret', 'signer-credentials', '--operator-namespace', ns.name);
      return r.code === 2 ? r : undefined;
    }, 60_000);
    expect(held.out).toMatch(/CRL\s+FAIL\s+ON THE CRL since .* reason certificateHold \(the ServiceUser is disabled\)/);
    expect((await inNs('enable', 'signer')).code).toBe(0);
    await k().waitFor('signer', 'Active again', (o) => statusOf(o).phase === 'Active');
  });

  it('rotate sets the request fields to now, by server-side apply under its own field manager', { timeout: 240_000 }, async () => {
    // On demand: the request fields, set to now (the operator rotates and renews on a change).
    const before = await k().serviceUser('signer');
    const rotated = await inNs('rotate', 'signer');
    expect(rotated.code).toBe(0);
    expect(rotated.out).toContain('serviceuser.serviceusers.dev/signer token rotation and certificate renewal requested');
    expect(rotated.out).toContain('Server-side apply, field manager "kubectl-service-user"');
    const su1 = await k().serviceUser('signer');
    const creds = (su1.spec as { credentials: { token: { rotationRequest: string }; clientCertificate: { renewalRequest: string } } }).credentials;
    expect(Date.now() - Date.parse(creds.token.rotationRequest)).toBeLessThan(120_000);
    expect(creds.clientCertificate.renewalRequest).toBe(creds.token.rotationRequest);
    expect((su1.metadata.managedFields as { manager: string; operation: string }[]).some((m) => m.manager === 'kubectl-service-user' && m.operation === 'Apply')).toBe(true);
    // The operator answers the requests: a new token (the old one in its grace period) and a
    // new certificate — at most one of each a minute, so within a minute of their issue.
    await k().waitFor('signer', 'the token rotated and the certificate renewed', (o) => {
      const old = statusOf(o).tokens?.find((t) => t.id === activeToken(before));
      return old?.state === 'Grace' && !!activeToken(o) && statusOf(o).certificate?.serialNumber !== statusOf(before).certificate?.serialNumber;
    }, 150_000);
  });

  it('extend moves the end date (taking over a field written imperatively) and refuses what it cannot do', { timeout: 120_000 }, async () => {

    // endDate was set by the POST that created signer: taken over from that imperative writer.
    const expected = new Date(Date.parse(`${endIn6Days}T00:00:00Z`) + 30 * day).toISOString().slice(0, 10);
    const by = await inNs('extend', 'signer', '--by', '30d');
    expect(by.code).toBe(0);
    expect(by.out).toContain(`end date moved from ${endIn6Days} to ${expected}`);
    expect(by.out).toMatch(/Took the field over from "[^"]+" \(written imperatively, not by any apply\)/);
    expect(((await k().serviceUser('signer')).spec as { endDate: string }).endDate).toBe(expected);
    const json = JSON.parse((await inNs('extend', 'signer', '--until', '2099-01-12', '-o', 'json')).out) as { spec: { endDate: string } };
    expect(json.spec.endDate).toBe('2099-01-12');
    for (const [args, message] of [
      [['--until', '2099-02-30'], '--until 2099-02-30: must be a date (2027-01-12'],
      [['--until', '2098-01-01'], 'is before the current end date 2099-01-12'],
      [['--until', '2001-01-01'], '--until 2001-01-01 is in the past'],
      [['--by', 'soon'], '--by soon: must be a positive duration such as 30d'],
      [['--by', '1d', '--until', '2099-01-01'], 'give exactly one of --until DATE'],
    ] as const) {
      const r = await inNs('extend', 'signer', ...args);
      expect(r.code, args.join(' ')).toBe(1);
      expect(r.err).toContain(message);
    }
    const noEnd = await inNs('extend', 'auditor', '--by', '1d');
    expect(noEnd.err).toContain('auditor has no end date (spec.endDate): nothing to extend; set one with --until DATE');
  });

  it('a field another manager owns is a conflict naming it, taken over only with --force-conflicts', { timeout: 120_000 }, async () => {
    const manifest = path.join(dir, 'gitops.yaml');
    writeFileSync(manifest, dump({ apiVersion: 'serviceusers.dev/v1alpha1', kind: 'ServiceUser', metadata: { name: 'gitops', namespace: ns.name }, spec: { email: 'ops@example.com', accounts: ['acme'], disabled: false } }));
    await new Promise<void>((resolve, reject) =>
      execFile('kubectl', ['apply', '--server-side', '--field-manager', 'argocd-controller', '-f', manifest], { env: { ...process.env, KUBECONFIG: inject('kubeconfig') } }, (err) => (err ? reject(err) : resolve())),
    );
    const refused = await inNs('disable', 'gitops');
    expect(refused.code).toBe(1);
    expect(refused.err).toContain('conflict with "argocd-controller"');
    expect(refused.err).toContain('spec.disabled: owned by another field manager — "argocd-controller" (Argo CD) applies it declaratively (server-side apply)');
    expect(refused.err).toContain('run this command again with --force-conflicts to take the field over now');
    expect(((await k().serviceUser('gitops')).spec as { disabled: boolean }).disabled).toBe(false);
    const forced = await inNs('disable', 'gitops', '--force-conflicts');
    expect(forced.code).toBe(0);
    expect(((await k().serviceUser('gitops')).spec as { disabled: boolean }).disabled).toBe(true);
  });

  it('extend on a field npm run dev or Argo CD declares explains the conflict and the choice; --force-conflicts takes it', { timeout: 120_000 }, async () => {
    const endDate = (name: string) => k().serviceUser(name).then((o) => (o.spec as { endDate: string }).endDate);
    // npm run dev applies config/samples by server-side apply under its own field manager.
    const sample = { apiVersion: 'serviceusers.dev/v1alpha1', kind: 'ServiceUser', metadata: { name: 'dev-sample' }, spec: { email: 'ops@example.com', accounts: ['acme'], endDate: '2098-01-01' } };
    await applyManifests(running.client, [sample], ns.name);
    const dev = await inNs('extend', 'dev-sample', '--by', '30d');
    expect(dev.code).toBe(1);
    expect(dev.err).toContain('spec.endDate: owned by another field manager — "service-user-operator-dev" (npm run dev) applies it declaratively (server-side apply), so the API server refused the change');
    expect(dev.err).toContain('change it where it is declared (the manifest in Git that Argo CD or Flux syncs, or the file you apply)');
    expect(dev.err).toContain('or run this command again with --force-conflicts to take the field over now');
    expect(await endDate('dev-sample')).toBe('2098-01-01');
    const devForced = await inNs('extend', 'dev-sample', '--by', '30d', '--force-conflicts');
    expect(devForced.code).toBe(0);
    expect(await endDate('dev-sample')).toBe('2098-01-31');

    // Argo CD's default sync is a client-side kubectl apply: the manifest it applied is kept in
    // the last-applied-configuration annotation, and its next sync sets the field back.
    const manifest = path.join(dir, 'argo.yaml');
    writeFileSync(manifest, dump({ apiVersion: 'serviceusers.dev/v1alpha1', kind: 'ServiceUser', metadata: { name: 'argo-sample', namespace: ns.name }, spec: { email: 'ops@example.com', accounts: ['acme'], endDate: '2098-01-01' } }));
    await run('kubectl', ['apply', '--field-manager', 'argocd-controller', '-f', manifest], { env: { ...process.env, KUBECONFIG: inject('kubeconfig') } });
    const argo = await inNs('extend', 'argo-sample', '--until', '2098-06-01');
    expect(argo.code).toBe(1);
    expect(argo.err).toContain('spec.endDate: owned by another field manager — it is in the object\'s kubectl.kubernetes.io/last-applied-configuration annotation, written by "argocd-controller" (Argo CD)');
    expect(argo.err).toContain('--force-conflicts');
    expect(await endDate('argo-sample')).toBe('2098-01-01');
    expect((await inNs('extend', 'argo-sample', '--until', '2098-06-01', '--force-conflicts')).code).toBe(0);
    expect(await endDate('argo-sample')).toBe('2098-06-01');
  });

  it('whoami asks the verification service who a token is, authenticating with the token itself or falling back to the ServiceUser that records it', { timeout: 120_000 }, async () => {
    const auditorToken = await currentToken('auditor');
    const full = await ksu(['whoami', '--verify-url', verifyUrl, '--verify-ca', caFile], { stdin: `${auditorToken}\n` });
    expect(full.err).toBe('');
    expect(full.code).toBe(0);
    expect(full.out).toMatch(new RegExp(`Identity:\\s+serviceuser:${ns.name}:auditor`));
    expect(full.out).toMatch(/acme: software-trust-manager\/verification:introspect/);
    expect(full.out).toMatch(/Source:\s+https:\/\/127\.0\.0\.1:\d+\/v1\/introspect/);
    expect(full.out).not.toContain(auditorToken);

    // The signer may not introspect: the ServiceUser recording the token says who and the rest.
    const tokenFile = path.join(dir, 'signer.token');
    writeFileSync(tokenFile, await currentToken('signer'));
    const json = JSON.parse((await ksu(['whoami', '--token-file', tokenFile, '--verify-url', verifyUrl, '--verify-ca', caFile, '-o', 'json'])).out) as Record<string, unknown>;
    expect(json).toMatchObject({ active: true, identity: `serviceuser:${ns.name}:signer`, friendlyName: 'Release signer', accounts: ['acme'], expiresAt: '2099-01-12T23:59:59Z' });
    expect(json.permissions).toEqual(expect.arrayContaining([{ account: 'acme', manager: 'software-trust-manager', permission: 'signatures:sign' }]));
    expect(json.source).toMatch(/^ServiceUser .*\/signer read through the kubeconfig \(the token may not introspect: grant its service user verification:introspect/);

    // A revoked token, a typo, no service, no CA.
    const gone = await ksu(['whoami', '--verify-url', verifyUrl, '--verify-ca', caFile], { stdin: revokedToken });
    expect(gone.code).toBe(2);
    expect(gone.err).toMatch(/token \w{16} is not active: revoked, expired, disabled/);
    // Change the last character to one it is not: a fixed 'x' is the token itself 1 time in 62.
    const typoed = auditorToken.slice(0, -1) + (auditorToken.endsWith('x') ? 'y' : 'x');
    const typo = await ksu(['whoami', '--verify-url', verifyUrl, '--verify-ca', caFile], { stdin: typoed });
    expect(typo.code).toBe(2);
    expect(typo.err).toContain('token checksum mismatch (typo or truncation): checked offline, nothing was sent');
    const noUrl = await ksu(['whoami'], { stdin: auditorToken, env: { SERVICE_USER_VERIFY_URL: '' } });
    expect(noUrl.code).toBe(1);
    expect(noUrl.err).toContain('kubectl port-forward -n service-user-operator svc/service-user-operator 8443:8443');
    const noCa = await ksu(['whoami', '--verify-url', verifyUrl], { stdin: auditorToken });
    expect(noCa.code).toBe(1);
    expect(noCa.err).toContain('pass --verify-ca FILE');
    const viaEnv = await ksu(['whoami'], { stdin: auditorToken, env: { SERVICE_USER_VERIFY_URL: verifyUrl, SERVICE_USER_VERIFY_CA: caFile } });
    expect(viaEnv.code).toBe(0);
    expect((await ksu(['whoami', 'suo_token_on_the_command_line'])).err).toContain('never the command line');
  });

  it('whoami --cert/--key asks as a caller certificate: one whose roles grant verification:introspect answers for any token', { timeout: 120_000 }, async () => {
    const files = async (name: string) => {
      const data = decodeSecret((await k().secret(`${name}-credentials`))!);
      writeFileSync(path.join(dir, `${name}.crt`), data['tls.crt']!);
      writeFileSync(path.join(dir, `${name}.key`), data['tls.key']!);
      return ['--cert', path.join(dir, `${name}.crt`), '--key', path.join(dir, `${name}.key`)];
    };
    const asAuditor = await files('auditor');
    // The signer's token may not introspect itself; asked with the auditor's certificate, the
    // service answers in full.
    const signerToken = await currentToken('signer');
    const r = await ksu(['whoami', '--verify-url', verifyUrl, '--verify-ca', caFile, ...asAuditor, '-o', 'json'], { stdin: signerToken });
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const who = JSON.parse(r.out) as Record<string, unknown>;
    expect(who).toMatchObject({ active: true, identity: `serviceuser:${ns.name}:signer`, accounts: ['acme'], source: `${verifyUrl}/v1/introspect` });
    expect(who.permissions).toEqual(expect.arrayContaining([{ account: 'acme', manager: 'software-trust-manager', permission: 'signatures:sign' }]));
    expect(r.out).not.toContain(signerToken);

    // The signer's own certificate grants no introspection: refused as a caller.
    const refused = await ksu(['whoami', '--verify-url', verifyUrl, '--verify-ca', caFile, ...(await files('signer'))], { stdin: signerToken });
    expect(refused.code).toBe(1);
    expect(refused.err).toContain('the verification service refused the caller certificate (403)');
    const half = await ksu(['whoami', '--verify-url', verifyUrl, '--verify-ca', caFile, asAuditor[0]!, asAuditor[1]!], { stdin: signerToken });
    expect(half.code).toBe(1);
    expect(half.err).toContain('--cert and --key go together');
  });

  it('a disabled user\'s token is reported inactive (exit 2)', async () => {
    await k().patchServiceUser('auditor', { disabled: true });
    await k().waitFor('auditor', 'Disabled', (o) => statusOf(o).phase === 'Disabled');
    const token = decodeSecret((await k().secret('auditor-credentials'))!).token!;
    const r = await ksu(['whoami', '--verify-url', verifyUrl, '--verify-ca', caFile], { stdin: token });
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/token \w{16} is not active/);
  });

  it("keeps kubectl's habits: --kubeconfig, --context and its namespace, --as", { timeout: 120_000 }, async () => {
    const config = load(readFileSync(inject('kubeconfig'), 'utf8')) as {
      contexts: { name: string; context: Record<string, string> }[];
      clusters: { name: string; cluster: Record<string, string> }[];
      'current-context': string;
    };
    const base = config.contexts.find((c) => c.name === config['current-context'])!;
    config.contexts.push({ name: 'team', context: { ...base.context, namespace: ns.name } });
    // The CA as a file named relative to the kubeconfig, as kubectl resolves it (not the cwd).
    const cluster = config.clusters.find((c) => c.name === base.context.cluster)!.cluster;
    if (cluster['certificate-authority-data']) {
      writeFileSync(path.join(dir, 'cluster-ca.crt'), Buffer.from(cluster['certificate-authority-data'], 'base64'));
      delete cluster['certificate-authority-data'];
      cluster['certificate-authority'] = 'cluster-ca.crt';
    }
    const file = path.join(dir, 'kubeconfig');
    writeFileSync(file, dump(config));
    const viaContext = await ksu(['list', '--kubeconfig', file, '--context', 'team', '-o', 'name'], { env: { KUBECONFIG: '/nonexistent' } });
    expect(viaContext.err).toBe('');
    expect(viaContext.out).toContain('serviceuser.serviceusers.dev/signer');
    const noContext = await ksu(['list', '--kubeconfig', file, '--context', 'nope']);
    expect(noContext.code).toBe(1);
    expect(noContext.err).toMatch(/context "nope" not found in .* \(contexts: .*team/);
    const noFile = await ksu(['list', '--kubeconfig', path.join(dir, 'absent')]);
    expect(noFile.err).toContain('no such file');
    const viaEnv = await ksu(['list', '--context', 'team'], { env: { KUBECONFIG: `${path.join(dir, 'absent')}${path.delimiter}${file}` } });
    expect(viaEnv.out).toMatch(/^signer\s/m);
    // A user whose credentials come from an exec plugin (run by the plugin itself, as kubectl runs it).
    const admin = (config as unknown as { users: { name: string; user: Record<string, string> }[] }).users.find((u) => u.name === base.context.user)!.user;
    const pem = (data: string | undefined, file: string | undefined) =>
      data ? Buffer.from(data, 'base64').toString('utf8') : file ? readFileSync(path.resolve(path.dirname(inject('kubeconfig')), file), 'utf8') : undefined;
    const credential = Object.fromEntries(
      Object.entries({ clientCertificateData: pem(admin['client-certificate-data'], admin['client-certificate']), clientKeyData: pem(admin['client-key-data'], admin['client-key']), token: admin.token }).filter(([, v]) => v),
    );
    writeFileSync(path.join(dir, 'credential.json'), JSON.stringify({ apiVersion: 'client.authentication.k8s.io/v1', kind: 'ExecCredential', status: credential }));
    (config as unknown as { users: unknown[] }).users.push({ name: 'exec-user', user: { exec: { apiVersion: 'client.authentication.k8s.io/v1', command: 'cat', args: [path.join(dir, 'credential.json')], interactiveMode: 'Never' } } });
    config.contexts.push({ name: 'exec', context: { cluster: base.context.cluster!, user: 'exec-user', namespace: ns.name } });
    writeFileSync(file, dump(config));
    const viaExec = await ksu(['list', '--kubeconfig', file, '--context', 'exec', '-o', 'name']);
    expect(viaExec.err).toBe('');
    expect(viaExec.out).toContain('serviceuser.serviceusers.dev/signer');

    // The admin client may impersonate; jane may not list service users.
    const asJane = await ksu(['list', '-n', ns.name, '--as', 'jane@example.com']);
    expect(asJane.code).toBe(1);
    expect(asJane.err).toMatch(/Error from server \(Forbidden\): serviceusers.serviceusers.dev is forbidden: User "jane@example.com" cannot list resource "serviceusers"/);
    const groups = await ksu(['list', '-n', ns.name, '--as', 'jane@example.com', '--as-group', 'system:masters']);
    expect(groups.code).toBe(0);
    expect((await ksu(['list', '--as-group', 'x'])).err).toContain('--as-group needs --as');
  });
});
