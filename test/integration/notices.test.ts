// Email notices to spec.email, delivered to a real SMTP server (Mailpit, built from its Go
// module) by the operator against the real API server: what is sent, to whom, once — across
// a restart, and through an SMTP outage — and never a credential.
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EmailSender, type SmtpOptions } from '../../src/notify/email.ts';
import { createMetrics } from '../../src/observability/metrics.ts';
import { startOperator, type Operator } from '../../src/operator.ts';
import { findSecrets, testLogger } from '../logs.ts';
import { eventually, kubeConfig, useNamespace } from '../kube.ts';
import { startMailpit, type Mailpit } from '../mailpit/mailpit.ts';
import { api, decodeSecret, useAccounts } from '../operator.ts';
import { KubeClient } from '../../src/controller/kube.ts';

const ns = useNamespace('notices');
useAccounts(['acme']);
const client = new KubeClient(kubeConfig());
const k = () => api(client, ns.name);
let mailpit: Mailpit;
let operator: Operator | undefined;
let sender: EmailSender | undefined;
let metrics = createMetrics();

async function startWith(smtp: Partial<SmtpOptions> = {}): Promise<void> {
  metrics = createMetrics();
  sender = new EmailSender({ host: '127.0.0.1', port: mailpit.smtpPort, security: 'none', from: 'operator@example.com', timeoutMs: 3_000, ...smtp });
  operator = startOperator({ kubeConfig: kubeConfig(), log: testLogger(), metrics, namespaces: [ns.name], operatorNamespace: ns.name, notices: { sender } });
  await operator.ready;
}

async function stopOperator(): Promise<void> {
  await operator?.stop();
  sender?.close();
  operator = undefined;
}

const to = (user: string) => `${user}@example.com`;
/** Messages to this user's address, with their subjects. */
async function mailTo(user: string) {
  return (await mailpit.messages()).filter((m) => m.To.some((t) => t.Address === to(user)));
}
const waitForMail = (user: string, subject: RegExp, count = 1) =>
  eventually(`${count} mail to ${user} matching ${subject}`, async () => {
    const found = (await mailTo(user)).filter((m) => subject.test(m.Subject));
    return found.length >= count ? found : undefined;
  }, 30_000);
const sentCount = async (kind: string) => (await metrics.registry.getSingleMetric('serviceuser_notices_total')!.get()).values.filter((v) => v.labels.kind === kind && v.labels.result === 'sent').reduce((a, v) => a + v.value, 0);
const failedCount = async () => (await metrics.registry.getSingleMetric('serviceuser_notices_total')!.get()).values.filter((v) => v.labels.result === 'failed').reduce((a, v) => a + v.value, 0);

beforeAll(async () => {
  mailpit = await startMailpit();
  await startWith();
});
afterAll(async () => {
  await stopOperator();
  await mailpit.stop();
  client.close();
});

describe('email notices', () => {
  it('warn the person in spec.email when the warning window opens, naming the user and what to do, with no credential', async () => {
    const end = new Date(Date.now() + 3_600_000).toISOString().replace(/\.\d+Z$/, 'Z');
    await k().createServiceUser('expiring', { accounts: ['acme'], email: to('expiring'), friendlyName: 'Expiring job', endDate: end, expiryWarning: '2h', credentials: { clientCertificate: { enabled: false } } });
    const [mail] = await waitForMail('expiring', /expiring: expires soon/);
    const raw = await mailpit.text(mail!.ID);
    const source = await mailpit.raw(mail!.ID);
    expect(mail!.Subject).toBe(`[service-user-operator] ${ns.name}/expiring: expires soon`);
    expect(raw).toContain(`Namespace:     ${ns.name}`);
    expect(raw).toContain('Friendly name: Expiring job');
    expect(raw).toContain(`expire at ${end}`);
    expect(raw).toContain('What to do: Extend spec.endDate');
    // The credential is in the Secret, and nowhere in the message.
    const token = decodeSecret((await k().secret('expiring-credentials'))!).token!;
    expect(token).toMatch(/^suo_/);
    for (const text of [raw, source]) {
      expect(text).not.toContain(token);
      expect(findSecrets(text)).toEqual([]);
    }
    // Recorded as sent on the object.
    const su = await k().waitFor('expiring', 'the notice recorded sent', (o) => ((o.status?.notices as { sentAt?: string }[] | undefined) ?? []).some((n) => n.sentAt));
    expect((su.status!.notices as { key: string }[]).map((n) => n.key)).toEqual([`ExpiryWarning/${end}`]);
    expect(await sentCount('ExpiryWarning')).toBe(1);
  });

  it('tell of disable and enable, revocation and rotation, and nothing at creation', async () => {
    await k().createServiceUser('pipeline', { accounts: ['acme'], email: to('pipeline'), credentials: { clientCertificate: { enabled: false } } });
    const created = await k().waitFor('pipeline', 'Active', (o) => o.status?.phase === 'Active');
    await k().patchServiceUser('pipeline', { disabled: true });
    await waitForMail('pipeline', /pipeline: was disabled$/);
    await k().patchServiceUser('pipeline', { disabled: false });
    await waitForMail('pipeline', /pipeline: was enabled$/);
    const id = (created.status!.tokens as { id: string }[])[0]!.id;
    await k().patchServiceUser('pipeline', { credentials: { token: { revokedTokenIds: [id] } } });
    const [revoked] = await waitForMail('pipeline', /API token revoked/);
    expect(await mailpit.text(revoked!.ID)).toContain(`token ${id} was revoked (RevokedBySpec)`);
    // Nothing else: no mail for its creation or the replacement token.
    expect((await mailTo('pipeline')).map((m) => m.Subject.split(': ')[1])).toEqual(['was disabled', 'was enabled', 'API token revoked']);
  });

  it('tell of expiry at the end date', async () => {
    const end = new Date(Date.now() + 4_000).toISOString().replace(/\.\d+Z$/, 'Z');
    await k().createServiceUser('short', { accounts: ['acme'], email: to('short'), endDate: end, expiryWarning: '1s', credentials: { clientCertificate: { enabled: false } } });
    await k().waitFor('short', 'Active', (o) => o.status?.phase === 'Active');
    const [mail] = await waitForMail('short', /short: has expired/);
    expect(await mailpit.text(mail!.ID)).toContain('its credentials were revoked and removed from Secret short-credentials');
  });

  it('are not sent to a user who opted out', async () => {
    await k().createServiceUser('quiet', { accounts: ['acme'], email: to('quiet'), notifications: { email: false }, credentials: { clientCertificate: { enabled: false } } });
    await k().waitFor('quiet', 'Active', (o) => o.status?.phase === 'Active');
    await k().patchServiceUser('quiet', { disabled: true });
    await k().waitFor('quiet', 'Disabled', (o) => o.status?.phase === 'Disabled');
    // A user who did not opt out, changed after, is told: the opted-out one had its chance.
    await k().createServiceUser('loud', { accounts: ['acme'], email: to('loud'), credentials: { clientCertificate: { enabled: false } } });
    await k().waitFor('loud', 'Active', (o) => o.status?.phase === 'Active');
    await k().patchServiceUser('loud', { disabled: true });
    await waitForMail('loud', /was disabled/);
    expect(await mailTo('quiet')).toEqual([]);
    expect(((await k().serviceUser('quiet')).status as { notices?: unknown[] }).notices).toBeUndefined();
  });

  it('are sent once across a restart of the operator', async () => {
    const before = (await mailpit.messages()).length;
    await stopOperator();
    await startWith();
    // The restarted operator reconciles everything again; a change after it is told once.
    await k().patchServiceUser('pipeline', { disabled: true });
    await waitForMail('pipeline', /was disabled/, 2);
    // A notice is mailed before it is recorded sent, and one key's reconciles run one at a
    // time: once every notice is recorded sent, any resend would already be in the mailbox.
    await k().waitFor('pipeline', 'every notice recorded sent', (o) => ((o.status?.notices as { sentAt?: string }[] | undefined) ?? []).every((n) => n.sentAt));
    const after = await mailpit.messages();
    expect(after.length).toBe(before + 1);
    expect(new Set(after.map((m) => m.MessageID)).size).toBe(after.length);
  });

  it('wait out an SMTP outage with backoff, then deliver once', async () => {
    await mailpit.stop();
    await k().createServiceUser('outage', { accounts: ['acme'], email: to('outage'), credentials: { clientCertificate: { enabled: false } } });
    await k().waitFor('outage', 'Active', (o) => o.status?.phase === 'Active');
    await k().patchServiceUser('outage', { disabled: true });
    const pending = await k().waitFor('outage', 'a pending notice', (o) => ((o.status?.notices as { sentAt?: string }[] | undefined) ?? []).some((n) => !n.sentAt));
    expect((pending.status!.notices as { kind: string }[])[0]!.kind).toBe('Disabled');
    await eventually('two failed attempts', async () => ((await failedCount()) >= 2 ? true : undefined), 30_000);
    // Backoff: a few attempts in seconds, not a busy loop.
    await new Promise((r) => setTimeout(r, 3_000));
    expect(await failedCount()).toBeLessThan(8);
    await mailpit.start();
    const [mail] = await waitForMail('outage', /outage: was disabled/);
    expect(mail).toBeDefined();
    await k().waitFor('outage', 'the notice recorded sent', (o) => ((o.status?.notices as { sentAt?: string }[] | undefined) ?? []).every((n) => n.sentAt));
    // The next notice, mailed after it: a retry of the first would have come before.
    await k().patchServiceUser('outage', { disabled: false });
    await waitForMail('outage', /outage: was enabled$/);
    expect((await mailTo('outage')).map((m) => m.Subject.split(': ')[1])).toEqual(['was disabled', 'was enabled']);
  });
});

describe('SMTP with STARTTLS and credentials', () => {
  let secure: Mailpit;
  let dir: string;
  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'smtp-tls-'));
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost', '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem')], { stdio: 'ignore' });
    secure = await startMailpit({ tls: { certFile: path.join(dir, 'cert.pem'), keyFile: path.join(dir, 'key.pem') }, auth: { user: 'notifier', pass: 'correct horse' } });
  });
  afterAll(async () => {
    await secure.stop();
  });

  const ca = () => [execFileSync('cat', [path.join(dir, 'cert.pem')], { encoding: 'utf8' })];
  const message = { to: 'someone@example.com', subject: 'hello', text: 'body', messageId: '<x@y>' };

  it('delivers over STARTTLS with the right credentials and a trusted certificate', async () => {
    const s = new EmailSender({ host: '127.0.0.1', port: secure.smtpPort, security: 'starttls', from: 'operator@example.com', auth: { user: 'notifier', pass: 'correct horse' }, caPems: ca(), timeoutMs: 5_000 });
    await s.send(message);
    s.close();
    expect((await secure.messages()).map((m) => m.Subject)).toEqual(['hello']);
  });

  it('refuses wrong credentials, an untrusted certificate, and plain SMTP to a STARTTLS server', async () => {
    const attempts: Partial<SmtpOptions>[] = [
      { security: 'starttls', auth: { user: 'notifier', pass: 'wrong' }, caPems: ca() },
      { security: 'starttls', auth: { user: 'notifier', pass: 'correct horse' } },
      { security: 'none', auth: { user: 'notifier', pass: 'correct horse' } },
    ];
    for (const a of attempts) {
      const s = new EmailSender({ host: '127.0.0.1', port: secure.smtpPort, from: 'operator@example.com', timeoutMs: 5_000, security: 'starttls', ...a });
      await expect(s.send(message)).rejects.toThrow();
      s.close();
    }
    expect((await secure.messages()).length).toBe(1);
    // A server (or a man in the middle) that offers no STARTTLS gets nothing in plain text.
    const before = (await mailpit.messages()).length;
    const downgraded = new EmailSender({ host: '127.0.0.1', port: mailpit.smtpPort, from: 'operator@example.com', timeoutMs: 5_000, security: 'starttls' });
    await expect(downgraded.send(message)).rejects.toThrow();
    downgraded.close();
    expect((await mailpit.messages()).length).toBe(before);
  });
});
