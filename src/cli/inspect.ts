// inspect secret: what a credentials Secret holds, checked offline where it can be — the
// token's form and checksum (and whether status records its hash), the certificate's
// subject, issuer, validity and key, its chain to the CA (the verification service's
// /v1/ca.crt with --verify-url, else the Secret's own ca.crt) and the CRL (/v1/crl, else the
// operator's revocation ledger ConfigMaps), and whether client.p12 opens with its password. The token is
// printed only with --show-token, and then with a warning on stderr.
import { createPublicKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { z } from 'zod';
import { stringMap } from '../api/object.ts';
import { resources } from '../api/resources.ts';
import { ApiError, resourcePath, type KubeObject } from '../controller/kube.ts';
import { parseToken, tokenSha256 } from '../credentials/token.ts';
import { suPath, withCluster, type Session } from './cluster.ts';
import { CheckFailed, messageOf, UsageError } from './errors.ts';
import { serialize, when } from './format.ts';
import type { Invocation } from './main.ts';

interface Check {
  ok: boolean | undefined;
  detail: string;
}

export interface Report {
  secret: string;
  serviceUser: string | undefined;
  identity: string | undefined;
  expiresAt: string | undefined;
  token?: { id?: string; checksum: Check; recorded: Check; token?: string };
  certificate?: {
    subject: string;
    issuer: string;
    serialNumber: string;
    notBefore: string;
    notAfter: string;
    validNow: Check;
    key: Check;
    chain: Check;
    crl: Check;
  };
  pkcs12?: Check;
}

/** GET over HTTPS trusting `ca` (or the system roots); for the verification service. */
export function fetchText(url: string, ca?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'GET', ...(ca ? { ca } : {}), timeout: 10_000 }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => ((res.statusCode ?? 0) < 300 ? resolve(text) : reject(new Error(`GET ${url}: ${res.statusCode} ${text.slice(0, 200)}`))));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: no answer in 10s`)));
    req.on('error', reject);
    req.end();
  });
}

/** The Secret a ServiceUser's status names (an object without one names none). */
const recordedSecret = z.object({ status: z.object({ secretName: z.string() }) });

async function readSecretOrOwner(s: Session, name: string): Promise<{ secret: KubeObject; owner: KubeObject | undefined }> {
  const get = async (path: string) => {
    try {
      return await s.client.get(path);
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) return undefined;
      throw err;
    }
  };
  const secret = await get(resourcePath(resources.secrets, s.namespace, name));
  const ownerName = (o: KubeObject | undefined) => o?.metadata.ownerReferences?.find((r) => r.kind === 'ServiceUser')?.name ?? o?.metadata.labels?.['serviceusers.dev/name'];
  if (secret) {
    const owner = ownerName(secret);
    return { secret, owner: owner ? await get(suPath(s.namespace, owner)) : undefined };
  }
  // NAME may be the ServiceUser: its Secret is status.secretName.
  const su = await get(suPath(s.namespace, name));
  const secretName = recordedSecret.safeParse(su).data?.status.secretName;
  const viaOwner = secretName ? await get(resourcePath(resources.secrets, s.namespace, secretName)) : undefined;
  if (su && viaOwner) return { secret: viaOwner, owner: su };
  throw new UsageError(
    su
      ? `serviceuser "${name}" has no Secret yet (status.secretName ${secretName ?? 'unset'}): kubectl service-user status ${name}`
      : `secret "${name}" not found in namespace "${s.namespace}": name a credentials Secret or its ServiceUser (kubectl service-user list -n ${s.namespace})`,
  );
}

/** Opens a PKCS#12 bundle with its password: integrity MAC, every safe, the shrouded key. */
export async function openPkcs12(der: Buffer, password: string, certSerial: string | undefined): Promise<Check> {
  const { openPkcs12: open } = await import('../credentials/pkcs12.ts');
  try {
    const { keys, serials } = open(der, password);
    const holdsCert = certSerial ? serials.includes(certSerial.toLowerCase().replace(/^0+/, '')) : serials.length > 0;
    if (!keys || !holdsCert) return { ok: false, detail: `opens, but holds ${keys} key(s) and ${holdsCert ? 'the' : 'not the'} certificate of tls.crt` };
    return { ok: true, detail: `opens with its password: ${keys} key, ${serials.length} certificate(s) including tls.crt's` };
  } catch (err) {
    return { ok: false, detail: `does not open with its password: ${messageOf(err)}` };
  }
}

async function crlCheck(inv: Invocation, s: Session, cert: X509Certificate, ca: X509Certificate | undefined, verifyCa: string | undefined): Promise<Check> {
  let pem: string;
  let source: string;
  const url = inv.flags['verify-url'];
  if (url) {
    source = `${url.replace(/\/$/, '')}/v1/crl`;
    try {
      pem = await fetchText(source, verifyCa);
    } catch (err) {
      return { ok: undefined, detail: `unknown: ${messageOf(err)}` };
    }
  } else {
    // No verification URL: the revocation ledger itself, its shard ConfigMaps in the operator
    // namespace (every replica signs its CRL from them), read through the kubeconfig.
    const ns = inv.flags['operator-namespace'] ?? 'service-user-operator';
    const head = 'service-user-operator-crl';
    const where = `the revocation ledger (ConfigMaps ${ns}/${head}-*)`;
    try {
      const { decodeShard, shardKey } = await import('../authority/ledger-shard.ts');
      const list = await s.client.get<{ items: KubeObject[] }>(
        `${resourcePath({ group: '', version: 'v1', plural: 'configmaps', namespaced: true }, ns)}?labelSelector=${encodeURIComponent(`serviceusers.dev/revocation-ledger=${head}`)}`,
      );
      // The head is written on the operator's first start; shards only once something is revoked.
      if (!list.items.length) await s.client.get(resourcePath({ group: '', version: 'v1', plural: 'configmaps', namespaced: true }, ns, head));
      const serial = cert.serialNumber.toLowerCase().replace(/^0+/, '');
      // The shards and the journal (revocations not yet folded into their shard): a revocation
      // in the journal outranks a hold in the shard.
      const found = list.items.flatMap((cm) => {
        const data = stringMap(cm, 'binaryData')[shardKey];
        return data ? decodeShard(Buffer.from(data, 'base64'), `ConfigMap ${ns}/${cm.metadata.name}`).filter((e) => e.serialNumber.replace(/^0+/, '') === serial) : [];
      });
      const entry = found.find((e) => e.reason !== 'certificateHold') ?? found[0];
      if (entry) return { ok: false, detail: `ON THE CRL since ${entry.revokedAt}, reason ${entry.reason}${entry.reason === 'certificateHold' ? ' (the ServiceUser is disabled)' : ''} (from ${where})` };
      return { ok: true, detail: `not revoked (from ${where})` };
    } catch (err) {
      const why = err instanceof ApiError ? `${err.status === 403 ? 'forbidden' : err.status === 404 ? 'not found' : err.status}` : messageOf(err);
      return { ok: undefined, detail: `unknown: cannot read ${where} (${why}); pass --verify-url or --operator-namespace` };
    }
  }
  if (!pem) return { ok: undefined, detail: `unknown: ${source} holds no CRL` };
  const { x509 } = await import('../credentials/x509.ts');
  let crl: InstanceType<typeof x509.X509Crl>;
  try {
    crl = new x509.X509Crl(pem.replaceAll('X509 CRL', 'CRL'));
  } catch (err) {
    return { ok: undefined, detail: `unknown: ${source} is not a CRL (${messageOf(err)})` };
  }
  if (ca && !(await crl.verify({ publicKey: new x509.X509Certificate(ca.raw).publicKey }).catch(() => false))) {
    return { ok: undefined, detail: `unknown: the CRL from ${source} is not signed by the CA` };
  }
  const entry = crl.entries.find((e) => e.serialNumber.toLowerCase().replace(/^0+/, '') === cert.serialNumber.toLowerCase().replace(/^0+/, ''));
  const age = `CRL from ${source}, updated ${crl.thisUpdate.toISOString()}`;
  if (!entry) return { ok: true, detail: `not revoked (${age})` };
  const reason = entry.reason === undefined ? 'unspecified' : (x509.X509CrlReason[entry.reason] ?? String(entry.reason));
  return { ok: false, detail: `ON THE CRL since ${entry.revocationDate.toISOString()}, reason ${reason}${reason === 'certificateHold' ? ' (the ServiceUser is disabled)' : ''} (${age})` };
}

type Texts = (key: string) => string | undefined;
interface RecordedToken { id: string; sha256: string; state: string }

/** The owner's status.tokens, as far as it has the shape this check reads. */
function recordedTokens(owner: KubeObject | undefined): RecordedToken[] {
  const status = owner?.status;
  const tokens = status && typeof status === 'object' && 'tokens' in status ? status.tokens : undefined;
  return Array.isArray(tokens) ? tokens.filter((t): t is RecordedToken => typeof t?.sha256 === 'string' && typeof t.state === 'string') : [];
}

/** The token's form and checksum, and whether the owner's status records it. */
function tokenReport(inv: Invocation, text: Texts, owner: KubeObject | undefined, tokenText: string): NonNullable<Report['token']> {
  const parsed = parseToken(tokenText.trim());
  const record = recordedTokens(owner).find((t) => t.sha256 === tokenSha256(tokenText));
  const token: NonNullable<Report['token']> = {
    ...(parsed.ok ? { id: parsed.id } : {}),
    checksum: parsed.ok ? { ok: true, detail: 'form and checksum valid' } : { ok: false, detail: parsed.reason },
    recorded: !owner
      ? { ok: undefined, detail: 'unknown: no ServiceUser owns this Secret' }
      : record
        ? { ok: record.state !== 'Revoked', detail: `recorded in ${owner.metadata.name}'s status as ${record.state}` }
        : { ok: false, detail: `not recorded in ${owner.metadata.name}'s status: verification refuses it` },
    ...(inv.flags['show-token'] ? { token: tokenText } : {}),
  };
  if (parsed.ok && text('token-id') && text('token-id') !== parsed.id) token.checksum = { ok: false, detail: `token-id ${text('token-id')} does not match the token's id ${parsed.id}` };
  return token;
}

/** The CA to check the chain against: the verification service's with --verify-url, else the Secret's ca.crt. */
async function caOf(inv: Invocation, text: Texts, verifyCa: string | undefined): Promise<{ ca: X509Certificate | undefined; caSource: string }> {
  let caPem = text('ca.crt');
  let caSource = 'ca.crt in the Secret';
  const url = inv.flags['verify-url'];
  if (url) {
    try {
      caPem = await fetchText(`${url.replace(/\/$/, '')}/v1/ca.crt`, verifyCa);
      caSource = `the verification service's /v1/ca.crt`;
    } catch (err) {
      throw new UsageError(`cannot read ${url}/v1/ca.crt: ${messageOf(err)}${/certificate/i.test(messageOf(err)) ? ' (pass --verify-ca FILE)' : ''}`);
    }
  }
  try {
    return { ca: caPem ? new X509Certificate(caPem) : undefined, caSource };
  } catch {
    return { ca: undefined, caSource };
  }
}

function keyCheck(keyPem: string | undefined, cert: X509Certificate): Check {
  try {
    const pub = createPublicKey(keyPem ?? '');
    return pub.export({ type: 'spki', format: 'der' }).equals(cert.publicKey.export({ type: 'spki', format: 'der' }))
      ? { ok: true, detail: 'tls.key matches the certificate' }
      : { ok: false, detail: 'tls.key does NOT match the certificate' };
  } catch {
    return { ok: false, detail: 'tls.key is missing or not a private key' };
  }
}

/** The certificate's subject, validity, key, chain and CRL entry. */
async function certificateReport(inv: Invocation, s: Session, text: Texts, where: string, certPem: string, verifyCa: string | undefined): Promise<{ cert: X509Certificate; report: NonNullable<Report['certificate']> }> {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
  } catch (err) {
    throw new CheckFailed(`tls.crt in ${where} is not a certificate: ${messageOf(err)}`);
  }
  const { ca, caSource } = await caOf(inv, text, verifyCa);
  const now = inv.io.now();
  const from = Date.parse(cert.validFrom);
  const to = Date.parse(cert.validTo);
  const chain: Check = !ca
    ? { ok: undefined, detail: `unknown: no CA (${caSource} absent or unreadable)` }
    : cert.checkIssued(ca) && cert.verify(ca.publicKey)
      ? { ok: true, detail: `signed by ${ca.subject.replaceAll('\n', ', ')} (${caSource})` }
      : { ok: false, detail: `NOT signed by ${ca.subject.replaceAll('\n', ', ')} (${caSource})` };
  const report = {
    subject: cert.subject.replaceAll('\n', ', '),
    issuer: cert.issuer.replaceAll('\n', ', '),
    serialNumber: cert.serialNumber.toLowerCase(),
    notBefore: new Date(from).toISOString(),
    notAfter: new Date(to).toISOString(),
    validNow: now < from ? { ok: false, detail: 'not yet valid' } : now >= to ? { ok: false, detail: 'expired' } : { ok: true, detail: `valid, expires ${when(new Date(to).toISOString(), now)}` },
    key: keyCheck(text('tls.key'), cert),
    chain,
    crl: await crlCheck(inv, s, cert, ca, verifyCa),
  };
  return { cert, report };
}

/** The report as a person reads it. */
function rendered(report: Report, owner: KubeObject | undefined, now: number): string {
  const mark = (c: Check) => (c.ok === true ? 'ok' : c.ok === false ? 'FAIL' : '?');
  const line = (label: string, c: Check) => `  ${label.padEnd(12)}${mark(c).padEnd(6)}${c.detail}`;
  const out = [
    `Secret:       ${report.secret}${owner ? ` (ServiceUser ${owner.metadata.name})` : ''}`,
    `Identity:     ${report.identity ?? '-'}`,
    `Expires at:   ${report.expiresAt ? when(report.expiresAt, now) : 'never'}`,
  ];
  if (report.token) {
    out.push(`Token:        ${report.token.id ?? '(no valid id)'}`, line('checksum', report.token.checksum), line('status', report.token.recorded));
  } else {
    out.push('Token:        none');
  }
  if (report.certificate) {
    const c = report.certificate;
    out.push('Certificate:', `  subject     ${c.subject}`, `  issuer      ${c.issuer}`, `  serial      ${c.serialNumber}`, `  validity    ${c.notBefore} to ${c.notAfter}`);
    out.push(line('now', c.validNow), line('key', c.key), line('chain', c.chain), line('CRL', c.crl));
  } else {
    out.push('Certificate:  none');
  }
  if (report.pkcs12) out.push('PKCS#12:', line('client.p12', report.pkcs12));
  if (report.token?.token) out.push(`Token (shown on request): ${report.token.token}`);
  return `${out.join('\n')}\n`;
}

/** The Secret's data, decoded from base64. */
function secretData(secret: KubeObject): Record<string, Buffer> {
  const data = secret.data && typeof secret.data === 'object' ? Object.entries(secret.data) : [];
  return Object.fromEntries(data.flatMap(([k, v]) => (typeof v === 'string' ? [[k, Buffer.from(v, 'base64')]] : [])));
}

export async function inspect(inv: Invocation): Promise<void> {
  if (inv.args[0] !== 'secret') throw new UsageError(`inspect what? kubectl service-user inspect secret NAME (got "${inv.args[0] ?? ''}")`);
  const name = inv.args[1];
  if (!name) throw new UsageError('NAME is required: kubectl service-user inspect secret NAME (the credentials Secret or its ServiceUser)');
  if (inv.args.length > 2) throw new UsageError(`inspect secret takes one NAME (got ${inv.args.slice(1).join(' ')})`);
  const verifyCa = inv.flags['verify-ca'] ? readFileSync(inv.flags['verify-ca'], 'utf8') : undefined;
  await withCluster(inv, async (s) => {
    const { secret, owner } = await readSecretOrOwner(s, name);
    const data = secretData(secret);
    const text: Texts = (k) => data[k]?.toString('utf8');
    const report: Report = {
      secret: `${s.namespace}/${secret.metadata.name}`,
      serviceUser: owner?.metadata.name,
      identity: text('identity'),
      expiresAt: text('expires-at'),
    };
    const tokenText = text('token') ?? text('SM_API_KEY');
    if (tokenText !== undefined) report.token = tokenReport(inv, text, owner, tokenText);
    const certPem = text('tls.crt');
    if (certPem) {
      const { cert, report: certificate } = await certificateReport(inv, s, text, report.secret, certPem, verifyCa);
      report.certificate = certificate;
      const p12 = data['client.p12'];
      const password = text('client.p12.password') ?? text('SM_CLIENT_CERT_PASSWORD');
      if (p12) report.pkcs12 = password === undefined ? { ok: false, detail: 'client.p12 present but no password key' } : await openPkcs12(p12, password, cert.serialNumber.toLowerCase());
    }
    if (inv.flags['show-token']) {
      inv.io.err(
        tokenText === undefined
          ? `warning: --show-token: ${report.secret} holds no token\n`
          : `warning: printing the token of ${report.secret}: anyone who sees this output can use it until it is revoked (kubectl service-user revoke ${owner?.metadata.name ?? 'NAME'} ${report.token?.id ?? 'TOKEN-ID'})\n`,
      );
    }
    const failed = [report.token?.checksum, report.token?.recorded, report.certificate?.validNow, report.certificate?.key, report.certificate?.chain, report.certificate?.crl, report.pkcs12].filter((c): c is Check => c?.ok === false);
    inv.io.out(inv.format === 'json' || inv.format === 'yaml' ? serialize(report, inv.format) : rendered(report, owner, inv.io.now()));
    if (failed.length) throw new CheckFailed(`${failed.length} check(s) failed for ${report.secret}: ${failed.map((c) => c.detail).join('; ')}`);
  });
}
