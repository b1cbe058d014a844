// rotate, revoke, disable, enable, extend: each one spec change, made by server-side apply
// under the field manager "kubectl-service-user" and printed as the fragment it applied, so
// that whoever keeps ServiceUsers in Git sees what to commit. Without --force-conflicts a
// field another manager declares (server-side apply by Argo CD, Flux, kubectl, npm run dev; or
// the manifest of the last client-side kubectl apply, Argo CD's default sync) is a conflict,
// as with kubectl apply --server-side: the error names the owner and the two ways on. A field
// only ever written imperatively (create, edit) is taken over, and said so.
import { z } from 'zod';
import { parseDuration } from '../api/duration.ts';
import { tokenIdPattern } from '../api/primitives.ts';
import { endDatePattern, serviceUserSpec } from '../api/serviceuser.ts';
import { ApiError, type KubeObject } from '../controller/kube.ts';
import { parseToken, tokenPrefix } from '../credentials/token.ts';
import { expiresAt } from '../api/expiry.ts';
import { needName, readServiceUser, suPath, withCluster, type Session } from './cluster.ts';
import { UsageError } from './errors.ts';
import { indent, serialize } from './format.ts';
import type { Invocation } from './main.ts';

export const fieldManager = 'kubectl-service-user';

type Spec = {
  disabled?: boolean;
  endDate?: string;
  credentials?: { token?: { enabled?: boolean; revokedTokenIds?: string[] }; clientCertificate?: { enabled?: boolean }; secretName?: string };
};
type Su = KubeObject & { spec?: Spec; status?: { tokens?: { id: string; state: string }[]; expiresAt?: string; secretName?: string } };

/** RFC 3339 in UTC to the second: what the rotation fields and end dates carry. */
const rfc3339 = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

/** Field managers people meet, by the tool a message can name. */
const knownManagers: Record<string, string> = {
  'argocd-controller': 'Argo CD',
  'argocd-application-controller': 'Argo CD',
  'kustomize-controller': 'Flux',
  'helm-controller': 'Flux',
  helm: 'Helm',
  kubectl: 'kubectl apply --server-side',
  'kubectl-client-side-apply': 'kubectl apply',
  'service-user-operator-dev': 'npm run dev',
};
const named = (manager: string) => `"${manager}"${knownManagers[manager] ? ` (${knownManagers[manager]})` : ''}`;
const lastAppliedKey = 'kubectl.kubernetes.io/last-applied-configuration';

/** The dotted paths of the leaves a patch sets: spec.endDate, spec.credentials.token.revokedTokenIds. */
function leaves(value: unknown, prefix: string): string[] {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return [prefix];
  return Object.entries(value).flatMap(([k, v]) => leaves(v, `${prefix}.${k}`));
}

const mapping = z.record(z.string(), z.unknown());
/** Who wrote the object's fields, as far as judging a conflict needs (an entry of another shape names no one). */
const managedFields = z.array(z.object({ manager: z.string().optional(), operation: z.string().optional() }).catch({})).catch([]);

/** Which of the paths the object's last client-side apply (kubectl apply, Argo CD's default sync) declared. */
function declaredByLastApply(su: Su, paths: string[]): string[] {
  const text = su.metadata.annotations?.[lastAppliedKey];
  if (!text) return [];
  let applied: unknown;
  try {
    applied = JSON.parse(text);
  } catch {
    return [];
  }
  const has = (p: string) => p.split('.').reduce<unknown>((o, k) => mapping.safeParse(o).data?.[k], applied) !== undefined;
  return paths.filter(has);
}

type ConflictAnswer = { refuse: UsageError } | { takeOver: string };

/**
 * A 409 from server-side apply: refused, with the choice spelled out, when the field is declared
 * somewhere that would set it back (a server-side apply, or the last client-side apply's
 * manifest); taken over when its owner only ever wrote it imperatively (create, edit).
 */
function judgeConflict(err: ApiError, su: Su, spec: Record<string, unknown>): ConflictAnswer {
  const owners = [...new Set([...err.message.matchAll(/conflicts? with "([^"]+)"/g)].flatMap(([, owner]) => owner ?? []))];
  const managed = managedFields.parse(su.metadata.managedFields ?? []);
  const appliers = owners.filter((o) => managed.some((m) => m.manager === o && m.operation === 'Apply'));
  const fields = [...new Set([...err.message.matchAll(/\.(spec\.[\w.]+)/g)].flatMap(([, field]) => field ?? []))];
  const lastApplied = declaredByLastApply(su, leaves(spec, 'spec'));
  if (owners.length && !appliers.length && !lastApplied.length) {
    // Written only imperatively (create, edit): nobody declares it, so the request is the
    // person's intent, as kubectl edit would be.
    return { takeOver: `Took the field over from ${owners.map(named).join(', ')} (written imperatively, not by any apply).\n` };
  }
  const what = (fields.length ? fields : lastApplied).join(', ') || 'a field this change sets';
  const why = appliers.length
    ? `${appliers.map(named).join(', ')} applies it declaratively (server-side apply)`
    : `it is in the object's ${lastAppliedKey} annotation, written by ${owners.map(named).join(', ') || 'a client-side apply'}: the manifest applied last declares it`;
  return {
    refuse: new UsageError(
      `${what}: owned by another field manager — ${why}, so the API server refused the change (${err.message.replace(/^\w+ \S+: \d+ /, '').replace(/\s+/g, ' ')}).\n` +
        'Choose one:\n' +
        '  - change it where it is declared (the manifest in Git that Argo CD or Flux syncs, or the file you apply) and sync or apply it: the lasting change;\n' +
        '  - or run this command again with --force-conflicts to take the field over now: the change is made, and the owner\'s next sync or apply of its own value sets it back unless the manifest changes too.',
    ),
  };
}

async function apply(inv: Invocation, s: Session, su: Su, spec: Record<string, unknown>, what: string, gitops: boolean): Promise<void> {
  const name = su.metadata.name;
  const patch = { apiVersion: 'serviceusers.dev/v1alpha1', kind: 'ServiceUser', metadata: { name, namespace: s.namespace }, spec };
  const dryRun = inv.flags['dry-run'];
  const query = new URLSearchParams({ fieldManager });
  if (inv.flags['force-conflicts']) query.set('force', 'true');
  if (dryRun === 'server') query.set('dryRun', 'All');
  let result: KubeObject | undefined;
  let tookOver = '';
  const send = (q: URLSearchParams) => s.client.request('PATCH', `${suPath(s.namespace, name)}?${q}`, patch, 'application/apply-patch+yaml');
  if (dryRun !== 'client') {
    try {
      result = await send(query);
    } catch (err) {
      if (err instanceof ApiError && err.status === 409 && /conflicts? with/.test(err.message)) {
        const answer = judgeConflict(err, su, spec);
        if ('refuse' in answer) throw answer.refuse;
        query.set('force', 'true');
        result = await send(query);
        tookOver = answer.takeOver;
      } else if (err instanceof ApiError && err.status === 422) {
        throw new UsageError(`the API server refused the change: ${err.message.replace(/^\w+ \S+: \d+ /, '')}`);
      } else {
        throw err;
      }
    }
  }
  if (inv.format === 'json' || inv.format === 'yaml') {
    if (result) {
      const { managedFields: _, ...metadata } = result.metadata;
      inv.io.out(serialize({ ...result, metadata }, inv.format));
    } else {
      inv.io.out(serialize(patch, inv.format));
    }
    return;
  }
  const suffix = dryRun ? ` (dry run${dryRun === 'server' ? ', validated by the server' : ''}: nothing changed)` : '';
  inv.io.out(
    `serviceuser.serviceusers.dev/${name} ${what}${suffix}\n` +
      `Server-side apply, field manager "${fieldManager}", namespace ${s.namespace}:\n` +
      indent(serialize({ spec }, 'yaml')) +
      tookOver +
      (gitops ? 'If this ServiceUser is applied from Git (Argo CD, Flux), commit the same change there: the next sync would undo it.\n' : ''),
  );
}

export async function rotate(inv: Invocation): Promise<void> {
  const name = needName(inv);
  if (inv.args.length > 1) throw new UsageError(`rotate takes one NAME (got ${inv.args.join(' ')})`);
  const both = !inv.flags.token && !inv.flags.certificate;
  await withCluster(inv, async (s) => {
    const su = await readServiceUser<Su>(s, name);
    const creds = su.spec?.credentials ?? {};
    const token = (both || inv.flags.token) && creds.token?.enabled !== false;
    const certificate = (both || inv.flags.certificate) && creds.clientCertificate?.enabled !== false;
    if (inv.flags.token && !token) throw new UsageError(`${name} has no token to rotate: spec.credentials.token.enabled is false`);
    if (inv.flags.certificate && !certificate) throw new UsageError(`${name} has no certificate to renew: spec.credentials.clientCertificate.enabled is false`);
    const at = rfc3339(inv.io.now());
    const credentials: Record<string, unknown> = {};
    if (token) credentials.token = { rotationRequest: at };
    if (certificate) credentials.clientCertificate = { renewalRequest: at };
    const what = [token ? 'token rotation' : undefined, certificate ? 'certificate renewal' : undefined].filter(Boolean).join(' and ');
    // A request, not a state to keep: Git need not carry it.
    await apply(inv, s, su, { credentials }, `${what} requested`, false);
  });
}

export async function revoke(inv: Invocation): Promise<void> {
  const name = needName(inv);
  const id = inv.args[1];
  if (!id) throw new UsageError(`TOKEN-ID is required: kubectl service-user revoke ${name} TOKEN-ID (the ids are in kubectl service-user status ${name})`);
  if (inv.args.length > 2) throw new UsageError(`revoke takes NAME and one TOKEN-ID (got ${inv.args.join(' ')})`);
  if (!tokenIdPattern.test(id)) throw notAnId(inv, name, id);
  await withCluster(inv, async (s) => {
    const su = await readServiceUser<Su>(s, name);
    const tokens = su.status?.tokens ?? [];
    const token = tokens.find((t) => t.id === id);
    if (!token) {
      throw new UsageError(`token ${id} is not one of ${name}'s tokens (${tokens.map((t) => `${t.id} ${t.state}`).join(', ') || 'none recorded'}); see kubectl service-user status ${name}`);
    }
    const listed = su.spec?.credentials?.token?.revokedTokenIds ?? [];
    // The whole list: an apply configuration without the ids this manager applied before
    // would drop them (revoked stays revoked, whoever listed it).
    const revokedTokenIds = listed.includes(id) ? listed : [...listed, id];
    const note = token.state === 'Active' ? `token ${id} revoked; it was the active token, so a new one is issued into Secret ${su.status?.secretName ?? '(its Secret)'}` : `token ${id} revoked`;
    await apply(inv, s, su, { credentials: { token: { revokedTokenIds } } }, token.state === 'Revoked' ? `token ${id} already revoked (${listed.includes(id) ? 'listed' : 'by the operator'})` : note, true);
  });
}

/**
 * What to say of a TOKEN-ID that is not one, never echoing a token: a whole token (pasted by
 * mistake, now in shell history) is named by the id inside it, which is public and is what
 * revoke takes.
 */
function notAnId(inv: Invocation, name: string, arg: string): UsageError {
  const again = (id: string) => `kubectl service-user revoke ${name} ${id}${inv.flags.namespace ? ` -n ${inv.flags.namespace}` : ''}`;
  const expected = `a token id is 16 characters of a-z and 2-7, as kubectl service-user status ${name} shows`;
  const parsed = parseToken(arg);
  if (parsed.ok) {
    return new UsageError(
      `that is a whole token, not a token id (it is not printed here, and nothing was sent). Its id is ${parsed.id}: ${again(parsed.id)}\n` +
        'The token is now in your shell history: revoking it is right; remove it from the history too.',
    );
  }
  const id = /^suo_([a-z2-7]{16})_/.exec(arg)?.[1];
  if (id) return new UsageError(`that looks like a token (suo_${id}_…, not printed here), not a token id, and it is damaged (${parsed.reason}); if it is ${name}'s, its id is ${id}: ${again(id)}`);
  if (arg.startsWith(tokenPrefix) || arg.length > 32) return new UsageError(`TOKEN-ID (${arg.length} characters${arg.startsWith(tokenPrefix) ? ', starting suo_' : ''}, not printed here) is not a token id: ${expected}`);
  return new UsageError(`"${arg}" is not a token id: ${expected} (never the token itself)`);
}

export async function setDisabled(inv: Invocation, disabled: boolean): Promise<void> {
  const name = needName(inv);
  if (inv.args.length > 1) throw new UsageError(`${inv.command} takes one NAME (got ${inv.args.join(' ')})`);
  await withCluster(inv, async (s) => {
    const su = await readServiceUser<Su>(s, name);
    await apply(inv, s, su, { disabled }, disabled ? 'disabled: verification refuses its credentials until enabled' : 'enabled', true);
  });
}

/** "30d", "2w" as well as Go durations ("720h"). */
export function parseExtension(text: string): number | undefined {
  const days = /^([0-9]{1,5})(d|w)$/.exec(text);
  if (days) return Number(days[1]) * (days[2] === 'w' ? 7 : 1) * 86_400_000;
  return parseDuration(text);
}

export async function extend(inv: Invocation): Promise<void> {
  const name = needName(inv);
  if (inv.args.length > 1) throw new UsageError(`extend takes one NAME (got ${inv.args.join(' ')})`);
  const { until, by } = inv.flags;
  if ((until === undefined) === (by === undefined)) throw new UsageError('give exactly one of --until DATE (2027-01-12 or 2027-01-12T18:00:00Z) or --by DURATION (30d, 2w, 720h)');
  if (until !== undefined) {
    const checked = serviceUserSpec.shape.endDate.safeParse(until);
    if (!endDatePattern.test(until) || !checked.success) {
      throw new UsageError(`--until ${until}: must be a date (2027-01-12, which ends at 23:59:59 UTC) or an RFC 3339 time (2027-01-12T18:00:00Z)`);
    }
  }
  const byMs = by === undefined ? undefined : parseExtension(by);
  if (by !== undefined && !byMs) throw new UsageError(`--by ${by}: must be a positive duration such as 30d, 2w or 720h`);
  await withCluster(inv, async (s) => {
    const su = await readServiceUser<Su>(s, name);
    const now = inv.io.now();
    const currentEnd = su.spec?.endDate;
    const current = expiresAt(currentEnd);
    let endDate: string;
    if (until !== undefined || byMs === undefined) {
      endDate = until ?? '';
    } else {
      if (current === undefined || currentEnd === undefined) throw new UsageError(`${name} has no end date (spec.endDate): nothing to extend; set one with --until DATE`);
      // From the end date, or from now when it has passed (extending after expiry issues new credentials).
      const base = Math.max(current, now);
      const next = base + byMs;
      const wholeDays = byMs % 86_400_000 === 0 && /^\d{4}-\d{2}-\d{2}$/.test(currentEnd) && base === current;
      endDate = wholeDays ? rfc3339(next).slice(0, 10) : rfc3339(next);
    }
    const at = expiresAt(endDate);
    if (at === undefined) throw new UsageError(`--until ${endDate}: must be a date (2027-01-12) or an RFC 3339 time`);
    if (at <= now) throw new UsageError(`--until ${endDate} is in the past: the service user would expire at once`);
    if (current !== undefined && at < current) {
      throw new UsageError(`${endDate} is before the current end date ${currentEnd}: extend only moves it later (to shorten, edit spec.endDate)`);
    }
    await apply(inv, s, su, { endDate }, `end date ${current === undefined ? 'set' : `moved from ${currentEnd}`} to ${endDate}`, true);
  });
}
