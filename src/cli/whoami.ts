// whoami: who a token is, asked of the verification service (--verify-url or
// $SERVICE_USER_VERIFY_URL, over TLS checked against --verify-ca or the system roots).
//
// /v1/introspect needs an authenticated caller. With --cert/--key the plugin presents that
// certificate (a CA trusted for callers, or a service user's granted verification:introspect).
// Without, the token authenticates itself as the Bearer caller: that works when its own
// service user holds verification:introspect. When it does not (403: the token is live, but may
// not ask), the plugin finds the ServiceUser whose status records this token (id and SHA-256)
// through the kubeconfig, and reads identity, end date, accounts and permissions there.
// The token is checked offline first (form, checksum) and never printed.
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { request } from 'node:https';
import { parseToken, tokenSha256 } from '../credentials/token.ts';
import type { KubeObject } from '../controller/kube.ts';
import { suPath, withCluster } from './cluster.ts';
import { CheckFailed, messageOf, UsageError } from './errors.ts';
import { serialize, when } from './format.ts';
import type { Invocation } from './main.ts';
import { identityOf } from '../api/names.ts';

interface Answer {
  status: number;
  body: unknown;
}

/** What an answer's body says for itself (its `message`), for errors. */
const said = (body: unknown) => String(z.object({ message: z.unknown() }).safeParse(body).data?.message ?? '');

const permissions = z.array(z.object({ account: z.string(), manager: z.string(), permission: z.string() }));
/** /v1/introspect's answer (RFC 7662 names, plus the accounts and permissions the holder has). */
const introspection = z.object({
  active: z.boolean().optional(),
  sub: z.string().optional(),
  friendly_name: z.string().optional(),
  token_id: z.string().optional(),
  exp: z.number().optional(),
  accounts: z.array(z.string()).optional(),
  permissions: permissions.optional(),
});
/** The tokens a ServiceUser's status records (an object without them records none). */
const recordedTokens = z.object({ status: z.object({ tokens: z.array(z.object({ id: z.string(), sha256: z.string() })) }) });
/** What the holder's status says of it; a status that does not parse says nothing. */
const holderStatus = z
  .object({ friendlyName: z.string().optional(), expiresAt: z.string().optional(), accounts: z.array(z.string()).optional(), permissions: permissions.optional() })
  .catch({});

function post(url: string, body: unknown, options: { ca?: string; cert?: string; key?: string; bearer?: string }): Promise<Answer> {
  const payload = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: 'POST',
        timeout: 10_000,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload), ...(options.bearer ? { authorization: `Bearer ${options.bearer}` } : {}) },
        ...(options.ca ? { ca: options.ca } : {}),
        ...(options.cert ? { cert: options.cert, key: options.key } : {}),
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => {
          let parsed: unknown;
          try {
            parsed = JSON.parse(text);
          } catch {
            parsed = { message: text.slice(0, 200) };
          }
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error('no answer in 10s')));
    req.on('error', reject);
    req.end(payload);
  });
}

interface Who {
  active: true;
  identity: string;
  friendlyName?: string;
  tokenId: string;
  expiresAt?: string;
  accounts: string[];
  permissions?: { account: string; manager: string; permission: string }[];
  /** Where the answer came from. */
  source: string;
}

async function readToken(inv: Invocation): Promise<string> {
  const file = inv.flags['token-file'];
  if (file) {
    try {
      return readFileSync(file, 'utf8').trim();
    } catch (err) {
      throw new UsageError(`--token-file ${file}: ${messageOf(err)}`);
    }
  }
  if (inv.io.stdinIsTty) throw new UsageError('pipe the token in (… | kubectl service-user whoami) or pass --token-file FILE: it is never taken as an argument, where shell history would keep it');
  return (await inv.io.stdin()).trim();
}

export async function whoami(inv: Invocation): Promise<void> {
  if (inv.args.length) throw new UsageError('whoami takes no arguments: the token comes from stdin or --token-file, never the command line');
  const url = (inv.flags['verify-url'] ?? process.env.SERVICE_USER_VERIFY_URL)?.replace(/\/$/, '');
  if (!url) {
    throw new UsageError(
      'where is the verification service? pass --verify-url https://HOST:PORT or set SERVICE_USER_VERIFY_URL ' +
        '(e.g. kubectl port-forward -n service-user-operator svc/service-user-operator 8443:8443, then --verify-url https://localhost:8443)',
    );
  }
  if (!/^https:\/\//.test(url)) throw new UsageError(`--verify-url ${url}: must be https:// (the token is sent to it)`);
  const caFile = inv.flags['verify-ca'] ?? process.env.SERVICE_USER_VERIFY_CA;
  const ca = caFile ? readFileSync(caFile, 'utf8') : undefined;
  if (!!inv.flags.cert !== !!inv.flags.key) throw new UsageError('--cert and --key go together');
  const cert = inv.flags.cert ? readFileSync(inv.flags.cert, 'utf8') : undefined;
  const key = inv.flags.key ? readFileSync(inv.flags.key, 'utf8') : undefined;
  const token = await readToken(inv);
  if (!token) throw new UsageError('no token on stdin');
  const parsed = parseToken(token);
  if (!parsed.ok) throw new CheckFailed(`${parsed.reason}: checked offline, nothing was sent`);

  const tls = { ...(ca ? { ca } : {}), ...(cert && key ? { cert, key } : {}) };
  const call = async (path: string, body: unknown, bearer?: string) => {
    try {
      return await post(`${url}${path}`, body, { ...tls, ...(bearer ? { bearer } : {}) });
    } catch (err) {
      const m = messageOf(err);
      const hint = /certificate|self[- ]signed|issuer/i.test(m) ? ': pass --verify-ca FILE, the CA of the verification service (its /v1/ca.crt, or ca.crt in any credentials Secret of the built-in CA)' : '';
      throw new UsageError(`cannot reach the verification service at ${url}: ${m}${hint}`);
    }
  };

  let who: Who | undefined;
  const answer = await call('/v1/introspect', { token }, cert ? undefined : token);
  if (answer.status === 200) {
    const read = introspection.safeParse(answer.body);
    if (!read.success) throw new UsageError(`the verification service at ${url} answered /v1/introspect with something else: ${read.error.issues.map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`).join('; ')}`);
    const b = read.data;
    if (!b.active) throw new CheckFailed(`token ${parsed.id} is not active: revoked, expired, disabled, outside its allowed networks, or unknown`);
    if (typeof b.sub !== 'string') throw new UsageError(`the verification service at ${url} answered active without naming the holder (sub): is it this operator's?`);
    who = {
      active: true,
      identity: b.sub,
      ...(b.friendly_name ? { friendlyName: b.friendly_name } : {}),
      tokenId: b.token_id ?? parsed.id,
      ...(b.exp ? { expiresAt: new Date(b.exp * 1000).toISOString().replace(/\.000Z$/, 'Z') } : {}),
      accounts: b.accounts ?? [],
      ...(b.permissions ? { permissions: b.permissions } : {}),
      source: `${url}/v1/introspect`,
    };
  } else if (answer.status === 401 && !cert) {
    // The token could not even authenticate itself: it is not active.
    throw new CheckFailed(`token ${parsed.id} is not active: revoked, expired, disabled, outside its allowed networks, or unknown`);
  } else if (answer.status === 401 || (answer.status === 403 && cert)) {
    throw new UsageError(`the verification service refused the caller certificate (${answer.status}): ${said(answer.body)}`);
  } else if (answer.status === 403) {
    // Active (it authenticated as a caller) but not allowed to introspect. TokenReview answers
    // only authenticated callers now, so find the token's own ServiceUser through the
    // kubeconfig: the one whose status records this token id with this token's SHA-256.
    const digest = tokenSha256(token);
    who = await withCluster(inv, async (s) => {
      const list = await s.client.get<{ items: KubeObject[] }>(inv.flags.namespace ? suPath(inv.flags.namespace) : '/apis/serviceusers.dev/v1alpha1/serviceusers');
      const su = list.items.find((o) => (recordedTokens.safeParse(o).data?.status.tokens ?? []).some((t) => t.id === parsed.id && t.sha256 === digest));
      if (!su) throw new CheckFailed(`token ${parsed.id} is not recorded by any ServiceUser you can read${inv.flags.namespace ? ` in namespace ${inv.flags.namespace}` : ''}`);
      const status = holderStatus.parse(su.status ?? {});
      return {
        active: true as const,
        identity: identityOf(su),
        ...(status?.friendlyName ? { friendlyName: status.friendlyName } : {}),
        tokenId: parsed.id,
        ...(status?.expiresAt ? { expiresAt: status.expiresAt } : {}),
        accounts: status?.accounts ?? [],
        permissions: (status?.permissions ?? []).map(({ account, manager, permission }) => ({ account, manager, permission })),
        source: `ServiceUser ${su.metadata.namespace}/${su.metadata.name} read through the kubeconfig (the token may not introspect: grant its service user verification:introspect, or pass --cert/--key)`,
      };
    });
  } else {
    throw new UsageError(`the verification service answered ${answer.status}: ${said(answer.body)}`);
  }

  if (inv.format === 'json' || inv.format === 'yaml') {
    inv.io.out(serialize(who, inv.format));
    return;
  }
  const now = inv.io.now();
  const byAccount = new Map<string, string[]>();
  for (const p of who.permissions ?? []) byAccount.set(p.account, [...(byAccount.get(p.account) ?? []), `${p.manager}/${p.permission}`]);
  const lines = [
    `Identity:       ${who.identity}`,
    `Friendly name:  ${who.friendlyName ?? '-'}`,
    `Token id:       ${who.tokenId}`,
    `Valid until:    ${who.expiresAt ? when(who.expiresAt, now) : 'no end date'}`,
    `Accounts:       ${who.accounts.join(', ') || '-'}`,
    `Permissions:    ${who.permissions === undefined ? 'unknown' : byAccount.size ? '' : 'none'}`,
    ...[...byAccount].map(([a, ps]) => `  ${a}: ${ps.join(', ')}`),
    `Source:         ${who.source}`,
  ];
  inv.io.out(`${lines.join('\n')}\n`);
}
