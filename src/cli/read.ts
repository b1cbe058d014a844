// list and status: what `kubectl get su` would need jsonpath for, as cmctl shows certificates.
import type { ServiceUserStatus, TokenStatus } from '../api/serviceuser.ts';
import type { KubeObject } from '../controller/kube.ts';
import { readServiceUser, needName, suPath, withCluster } from './cluster.ts';
import { UsageError } from './errors.ts';
import { indent, relative, serialize, table, when } from './format.ts';
import type { Invocation } from './main.ts';

type Su = KubeObject & { spec?: { friendlyName?: string; accounts?: string[]; credentials?: { restartTargets?: { kind: string; name: string }[] } }; status?: ServiceUserStatus };

const clean = (o: KubeObject) => {
  const { managedFields: _, ...metadata } = o.metadata;
  return { ...o, metadata };
};

/** Live tokens as "id" (Active) and "id (grace)". */
function tokenSummary(tokens: TokenStatus[] | undefined): string {
  const live = (tokens ?? []).filter((t) => t.state !== 'Revoked');
  return live.map((t) => (t.state === 'Grace' ? `${t.id} (grace)` : t.id)).join(', ') || '-';
}

function expires(status: ServiceUserStatus | undefined, now: number): string {
  if (!status?.expiresAt) return 'never';
  const at = Date.parse(status.expiresAt);
  return `${status.expiresAt.slice(0, 10)} (${relative(at, now)})`;
}

export async function list(inv: Invocation): Promise<void> {
  if (inv.args.length) throw new UsageError(`list takes no arguments (got ${inv.args.join(' ')}); for one service user: kubectl service-user status NAME`);
  const all = inv.flags['all-namespaces'] === true;
  await withCluster(inv, async (s) => {
    const { items } = await s.client.get<{ items: Su[] }>(suPath(all ? undefined : s.namespace));
    items.sort((a, b) => `${a.metadata.namespace}/${a.metadata.name}`.localeCompare(`${b.metadata.namespace}/${b.metadata.name}`));
    if (inv.format === 'json' || inv.format === 'yaml') {
      inv.io.out(serialize({ apiVersion: 'v1', kind: 'List', items: items.map(clean) }, inv.format));
      return;
    }
    if (inv.format === 'name') {
      inv.io.out(items.map((i) => `serviceuser.serviceusers.dev/${i.metadata.name}\n`).join(''));
      return;
    }
    if (!items.length) {
      inv.io.err(all ? 'No service users found.\n' : `No service users found in ${s.namespace} namespace.\n`);
      return;
    }
    const now = inv.io.now();
    const rows = items.map((su) => [
      ...(all ? [su.metadata.namespace ?? ''] : []),
      su.metadata.name,
      su.status?.friendlyName ?? su.spec?.friendlyName ?? su.metadata.name,
      su.status?.phase ?? 'Pending',
      expires(su.status, now),
      tokenSummary(su.status?.tokens),
      accountsColumn(su),
    ]);
    inv.io.out(table([...(all ? ['NAMESPACE'] : []), 'NAME', 'FRIENDLY NAME', 'PHASE', 'EXPIRES', 'TOKENS', 'ACCOUNTS'], rows));
    // An empty column is a question; answer it under the table.
    if (rows.some((r) => r.at(-1) === noneAdmitted)) {
      inv.io.err(`${noneAdmitted}: no Account admits the namespace for the accounts spec.accounts names, so no permission is granted; kubectl service-user status NAME names them, kubectl get suacct shows the Accounts\n`);
    }
  });
}

const noneAdmitted = '<none admitted>';

/** The accounts status says admit the user; before the operator has judged, those spec names. */
function accountsColumn(su: Su): string {
  const admitted = su.status?.accounts;
  if (admitted?.length) return admitted.join(',');
  if (admitted && su.spec?.accounts?.length) return noneAdmitted;
  return su.spec?.accounts?.join(',') ?? '';
}

interface CoreEvent {
  type: string;
  reason: string;
  message: string;
  count?: number;
  lastTimestamp?: string;
  eventTime?: string;
  firstTimestamp?: string;
  metadata: { creationTimestamp?: string };
  involvedObject?: { uid?: string };
}

const eventTime = (e: CoreEvent) => Date.parse(e.lastTimestamp ?? e.eventTime ?? e.firstTimestamp ?? e.metadata.creationTimestamp ?? '') || 0;

/** A token's end: Grace until validUntil, Active until the end date (or rotation), Revoked when and why. */
function validity(t: TokenStatus, status: ServiceUserStatus, now: number): string {
  if (t.state === 'Revoked') return `revoked ${when(t.revokedAt, now)}${t.reason ? `: ${t.reason}` : ''}`;
  if (t.state === 'Grace') return `until ${when(t.validUntil, now)} (grace period)`;
  return status.expiresAt ? `until ${when(status.expiresAt, now)}` : 'until rotated or revoked';
}

export async function status(inv: Invocation): Promise<void> {
  const name = needName(inv);
  await withCluster(inv, async (s) => {
    const su = await readServiceUser<Su>(s, name);
    const selector = encodeURIComponent(`involvedObject.name=${name},involvedObject.kind=ServiceUser`);
    const events = (await s.client.get<{ items: CoreEvent[] }>(`/api/v1/namespaces/${encodeURIComponent(s.namespace)}/events?fieldSelector=${selector}`)).items
      .filter((e) => e.involvedObject?.uid === su.metadata.uid)
      .sort((a, b) => eventTime(a) - eventTime(b))
      .slice(-10);
    const st = su.status ?? {};
    if (inv.format === 'json' || inv.format === 'yaml') {
      inv.io.out(serialize({ serviceUser: clean(su), events: events.map((e) => ({ type: e.type, reason: e.reason, message: e.message, count: e.count ?? 1, lastTimestamp: e.lastTimestamp ?? e.eventTime })) }, inv.format));
      return;
    }
    const now = inv.io.now();
    const lines: string[] = [
      `Name:           ${su.metadata.name}`,
      `Namespace:      ${su.metadata.namespace}`,
      `Friendly name:  ${st.friendlyName ?? su.spec?.friendlyName ?? su.metadata.name}`,
      `Identity:       ${st.identity ?? '-'}`,
      `Phase:          ${st.phase ?? 'Pending'}`,
      `Expires:        ${st.expiresAt ? when(st.expiresAt, now) : 'never (no spec.endDate)'}`,
      `Secret:         ${st.secretName ?? '-'}`,
      `Accounts:       ${st.accounts?.join(', ') ?? su.spec?.accounts?.join(', ') ?? '-'}`,
    ];
    const conditions = st.conditions ?? [];
    lines.push('Conditions:');
    lines.push(conditions.length ? indent(table(['TYPE', 'STATUS', 'REASON', 'SINCE', 'MESSAGE'], conditions.map((c) => [c.type, c.status, c.reason, relative(Date.parse(c.lastTransitionTime), now), c.message])).trimEnd()) : '  none yet (is the operator running?)');
    const tokens = st.tokens ?? [];
    lines.push('Tokens:');
    lines.push(tokens.length ? indent(table(['ID', 'STATE', 'CREATED', 'VALID'], tokens.map((t) => [t.id, t.state, when(t.createdAt, now), validity(t, st, now)])).trimEnd()) : '  none');
    const cert = st.certificate;
    lines.push('Certificate:');
    if (cert) {
      lines.push(`  Serial:       ${cert.serialNumber}`, `  Issuer:       ${cert.issuer}`, `  Not before:   ${cert.notBefore}`, `  Not after:    ${when(cert.notAfter, now)}`, `  Renewal:      ${cert.renewalTime ? when(cert.renewalTime, now) : '-'}`);
    } else {
      lines.push('  none');
    }
    const byAccount = new Map<string, string[]>();
    for (const p of st.permissions ?? []) byAccount.set(p.account, [...(byAccount.get(p.account) ?? []), `${p.manager}/${p.permission}`]);
    lines.push('Permissions:');
    lines.push(byAccount.size ? indent(table(['ACCOUNT', 'PERMISSIONS'], [...byAccount].map(([a, ps]) => [a, ps.join(', ')])).trimEnd()) : '  none (no RoleBinding grants any)');
    const targets = su.spec?.credentials?.restartTargets ?? [];
    if (targets.length) lines.push(`Restart targets: ${targets.map((t) => `${t.kind}/${t.name}`).join(', ')}`);
    lines.push('Events:');
    lines.push(events.length ? indent(table(['TYPE', 'REASON', 'AGE', 'MESSAGE'], events.map((e) => [e.type, e.reason, relative(eventTime(e), now).replace(/ ago$/, ''), e.message])).trimEnd()) : '  none');
    inv.io.out(`${lines.join('\n')}\n`);
  });
}
