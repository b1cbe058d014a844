// The ServiceUser's plan and its executor without a cluster, as cert-manager tests its
// controllers: given what was observed, the plan (certificate-plan.ts, desired.ts) and the
// actions the executor (execute.ts) takes, in order, against a client that records them.
// Nothing is revoked, held or issued but what the plan says, and the crash-safe order holds:
// revocations before the Secret loses a certificate, the Secret before the status.
import { describe, expect, it } from 'vitest';
import { serviceUser, type ServiceUser } from '../../src/api/serviceuser.ts';
import { issueToken } from '../../src/credentials/token.ts';
import { newLedgerKey, type KeyRing } from '../../src/credentials/mac.ts';
import type { ObservedCertificate } from '../../src/serviceuser/certificate.ts';
import { planCertificate, type CertificateFacts, type CertificatePlan } from '../../src/serviceuser/certificate-plan.ts';
import { desired, type ObservedSecret } from '../../src/serviceuser/desired.ts';
import { carryOut, placeCertificate, type CertificateActions, type Placement, type WriteActions } from '../../src/serviceuser/execute.ts';
import { credentialsDigest } from '../../src/serviceuser/restarts.ts';

const key = newLedgerKey();
const ring: KeyRing = { current: key, keys: [key] };
const t0 = Date.parse('2027-01-01T00:00:00Z');
const day = 86_400_000;
const caSubject = 'CN=service-user-operator CA';

function user(spec: Record<string, unknown> = {}, status?: Record<string, unknown>): ServiceUser {
  return serviceUser.parse({
    apiVersion: 'serviceusers.dev/v1alpha1',
    kind: 'ServiceUser',
    metadata: { name: 'ci', namespace: 'team', uid: 'uid-1', generation: 1, creationTimestamp: '2026-12-01T00:00:00Z' },
    spec: { email: 'ops@example.com', accounts: ['acme'], ...spec },
    ...(status ? { status } : {}),
  });
}

/** A certificate the CA issued to this user, as observe.ts judges it from the Secret. */
const inSecret = (serialNumber: string, notBefore: number, lifetime = 90 * day): ObservedCertificate => ({
  material: { certPem: `CERT ${serialNumber}`, keyPem: 'KEY', caPem: 'CA' },
  serialNumber,
  notBefore,
  notAfter: notBefore + lifetime,
  issuer: caSubject,
  sha256: serialNumber.padEnd(64, '0'),
  trusted: true,
  matchesSpec: true,
});
const sealedRecord = (c: ObservedCertificate, issuedBy: 'BuiltInCA' | 'CertManager' = 'BuiltInCA') => ({
  serialNumber: c.serialNumber,
  notBefore: new Date(c.notBefore).toISOString(),
  notAfter: new Date(c.notAfter).toISOString(),
  issuer: c.issuer,
  sha256: c.sha256,
  issuedBy,
});

/** Observed facts, the CA loaded unless said otherwise. */
function facts(over: Partial<CertificateFacts> = {}): CertificateFacts {
  return { authority: { ready: true, caSubject }, inSecret: undefined, secretHoldsCertificate: !!over.inSecret, sealed: undefined, crl: { entries: 0, budget: 100 }, ...over };
}

/** A client that records every action, in order, and answers as the CA and cert-manager would. */
function recorder() {
  const actions: string[] = [];
  const certificateActions: CertificateActions = {
    revoke: (owner, entries) => (actions.push(`revoke ${owner} ${entries.map((e) => `${e.serialNumber}:${e.reason}`).join(',')}`), Promise.resolve()),
    setHolds: (owner, serials) => (actions.push(`setHolds ${owner} [${serials.map((s) => s.serialNumber).join(',')}]`), Promise.resolve()),
    removeCertManager: (su) => (actions.push(`removeCertManager ${su.metadata.name}`), Promise.resolve()),
    placeFromCertManager: (input): Promise<Placement> => {
      actions.push(`placeFromCertManager recorded=${input.recorded?.serialNumber ?? 'none'}`);
      return Promise.resolve({ problem: { reason: 'CertificateIssuing', message: 'waiting' } });
    },
    issue: (_su, window) => {
      actions.push(`issue ${new Date(window.notBefore).toISOString()}..${new Date(window.notAfter).toISOString()}`);
      return Promise.resolve({ material: { certPem: 'NEW', keyPem: 'KEY', caPem: 'CA' }, serialNumber: 'new1', notBefore: window.notBefore, notAfter: window.notAfter, issuer: caSubject, sha256: 'f'.repeat(64) });
    },
    withPkcs12: (material) => Promise.resolve(material),
  };
  return { actions, certificateActions };
}

async function run(su: ServiceUser, observed: CertificateFacts, now: number, blocked = false): Promise<{ plan: CertificatePlan; actions: string[]; placement: Placement | 'wait' }> {
  const plan = planCertificate(su, observed, now, blocked);
  const r = recorder();
  if (plan.certificate.kind === 'wait') return { plan, actions: r.actions, placement: 'wait' };
  const placement = await placeCertificate(r.certificateActions, su, plan, { now, ourSecretRaw: undefined });
  return { plan, actions: r.actions, placement };
}

describe('the certificate plan, carried out', () => {
  it('keeps the Secret\'s certificate: nothing revoked, nothing issued, no hold', async () => {
    const held = inSecret('aa01', t0 - day);
    const { plan, actions, placement } = await run(user(), facts({ inSecret: held, sealed: sealedRecord(held) }), t0);
    expect(plan.certificate.kind).toBe('keep');
    expect(actions).toEqual(['revoke team/ci ', 'setHolds team/ci []']);
    expect(placement).toMatchObject({ placed: { serialNumber: 'aa01', issuedBy: 'BuiltInCA' } });
    expect((placement as Placement).placed!.issued).toBeUndefined();
  });

  it('issues the first certificate only after the (empty) revocations, then sets the holds', async () => {
    const { plan, actions, placement } = await run(user(), facts(), t0);
    expect(plan.certificate).toMatchObject({ kind: 'issue', reason: 'Missing' });
    expect(actions).toEqual(['revoke team/ci ', `issue 2026-12-31T23:59:00.000Z..${new Date(t0 + 90 * day).toISOString()}`, 'setHolds team/ci []']);
    expect(placement).toMatchObject({ placed: { serialNumber: 'new1', issued: 'Missing', issuedBy: 'BuiltInCA', renewalTime: t0 + 75 * day } });
  });

  it('renews a due certificate: the old serial is superseded on the ledger before the new one is issued', async () => {
    const old = inSecret('aa01', t0 - 80 * day);
    const { actions } = await run(user(), facts({ inSecret: old, sealed: sealedRecord(old) }), t0);
    expect(actions[0]).toBe('revoke team/ci aa01:superseded');
    expect(actions[1]).toMatch(/^issue /);
    expect(actions[2]).toBe('setHolds team/ci []');
  });

  it('replaces a certificate the ledger lists as revoked (a Secret restored from a backup), never keeping it', async () => {
    const restored = { ...inSecret('aa01', t0 - day), revoked: true };
    const { plan, actions } = await run(user(), facts({ inSecret: restored }), t0);
    expect(plan.certificate).toMatchObject({ kind: 'issue', reason: 'Revoked' });
    expect(actions.map((a) => a.split(' ')[0])).toEqual(['revoke', 'issue', 'setHolds']);
  });

  it('puts a disabled user\'s certificate on hold, naming the certificate placed', async () => {
    const held = inSecret('aa01', t0 - day);
    const { actions } = await run(user({ disabled: true }), facts({ inSecret: held, sealed: sealedRecord(held) }), t0);
    expect(actions).toEqual(['revoke team/ci ', 'setHolds team/ci [aa01]']);
  });

  it('at the end date revokes what status recorded and what the Secret holds, and issues nothing', async () => {
    const held = inSecret('aa02', t0 - day);
    const recorded = sealedRecord(inSecret('aa01', t0 - 2 * day));
    const { plan, actions, placement } = await run(user({ endDate: '2026-12-31' }), facts({ inSecret: held, sealed: recorded }), t0);
    expect(plan.certificate.kind).toBe('none');
    expect(actions).toEqual(['revoke team/ci aa01:cessationOfOperation,aa02:cessationOfOperation', 'setHolds team/ci []']);
    expect(placement).toEqual({});
  });

  it('a stalled user issues and revokes nothing until its end date; then it revokes', async () => {
    const held = inSecret('aa01', t0 - day);
    const stalled = await run(user(), facts({ inSecret: held, sealed: sealedRecord(held) }), t0, true);
    expect(stalled.actions).toEqual([]);
    const expired = await run(user({ endDate: '2026-12-31' }), facts({ inSecret: held, sealed: sealedRecord(held) }), t0, true);
    expect(expired.actions).toEqual(['revoke team/ci aa01:cessationOfOperation', 'setHolds team/ci []']);
  });

  it('to cert-manager: the built-in certificate is superseded and its hold released before cert-manager is asked', async () => {
    const held = inSecret('aa01', t0 - day);
    const su = user({ credentials: { clientCertificate: { issuerRef: { name: 'corp', kind: 'ClusterIssuer' } } } });
    const { actions } = await run(su, facts({ inSecret: held, sealed: sealedRecord(held) }), t0);
    expect(actions).toEqual(['revoke team/ci aa01:superseded', 'setHolds team/ci []', 'placeFromCertManager recorded=aa01']);
    // Nothing of the built-in CA's left: cert-manager is asked, and the ledger left alone.
    const clean = await run(su, facts(), t0);
    expect(clean.actions).toEqual(['placeFromCertManager recorded=none']);
  });

  it('back from cert-manager: its Certificate goes before anything is revoked or issued', async () => {
    const recorded = sealedRecord(inSecret('cm01', t0 - day), 'CertManager');
    const { actions } = await run(user({}, { certificate: recorded }), facts({ sealed: recorded }), t0);
    expect(actions.map((a) => a.split(' ')[0])).toEqual(['removeCertManager', 'revoke', 'issue', 'setHolds']);
    // A cert-manager serial is never the built-in CA's to revoke.
    expect(actions[1]).toBe('revoke team/ci ');
  });

  it('without the CA: a user holding a certificate waits whole; one with none is told why and issued its token', async () => {
    const held = inSecret('aa01', t0 - day);
    const loading = { authority: { ready: false as const, reason: 'the CA Secret is missing' } };
    const waits = await run(user(), facts({ ...loading, secretHoldsCertificate: true }), t0);
    expect(waits.placement).toBe('wait');
    expect(waits.actions).toEqual([]);
    const recorded = await run(user({}, { certificate: sealedRecord(held) }), facts(loading), t0);
    expect(recorded.placement).toBe('wait');
    const fresh = await run(user(), facts(loading), t0);
    expect(fresh.actions).toEqual([]);
    expect(fresh.placement).toEqual({ problem: { reason: 'CAUnavailable', message: 'the client certificate waits for the built-in CA: the CA Secret is missing. The token is issued meanwhile' } });
    const certManager = await run(user({ credentials: { clientCertificate: { issuerRef: { name: 'corp' } } } }), facts(loading), t0);
    expect(certManager.actions).toEqual(['placeFromCertManager recorded=none']);
  });

  it('a renewal request over the CRL budget waits an hour, and says why', async () => {
    const held = inSecret('aa01', t0 - 5 * 60_000);
    const su = user({ credentials: { clientCertificate: { renewalRequest: 'r2' } } }, { lastRenewalRequest: 'r1', certificate: sealedRecord(held) });
    const { plan, actions } = await run(su, facts({ inSecret: held, sealed: sealedRecord(held), crl: { entries: 101, budget: 100 } }), t0);
    expect(plan.certificate).toMatchObject({ kind: 'keep', renewalWaits: { until: held.notBefore + 60_000 + 1000 + 3_600_000, why: expect.stringContaining('101 serials on the CRL') } });
    expect(actions.map((a) => a.split(' ')[0])).toEqual(['revoke', 'setHolds']);
  });
});

/** Write actions that record, over a Secret and status held in memory. */
function writer(options: { crash?: boolean; notices?: boolean } = {}) {
  const actions: string[] = [];
  const write: WriteActions = {
    writeSecret: (_su, want) => (actions.push(`secret ${want.name} ${'token' in want.data ? 'credentials' : 'wiped'}`), Promise.resolve()),
    ...(options.crash
      ? {
          crashAfterSecretWrite: () => {
            actions.push('crash');
            throw new Error('crashed');
          },
        }
      : {}),
    applyStatus: (status) => {
      actions.push(`status ${status.phase}${status.notices?.length ? ` (${status.notices.length} notices pending)` : ''}`);
      return Promise.resolve({ metadata: { name: 'ci' }, status });
    },
    replaceTokens: () => (actions.push('tokens replaced'), Promise.resolve()),
    settled: () => {
      actions.push('settled');
    },
    notices: !!options.notices,
  };
  return { actions, write };
}

describe('the Secret and status, carried out', () => {
  const plan = (su: ServiceUser, now = t0, secret?: ObservedSecret) => desired(su, { now, secret, peers: [], permissions: [], accounts: { admitted: ['acme'], problems: [] }, trust: { ring }, certificate: undefined }, issueToken);

  it('writes the Secret before the status that records its credentials and their digest (what the restarts controller annotates to)', async () => {
    const su = user({ credentials: { clientCertificate: { enabled: false }, restartTargets: [{ kind: 'Deployment', name: 'app' }] } });
    const { actions, write } = writer();
    const planned = plan(su);
    const done = await carryOut(write, su, { status: undefined, secret: undefined }, planned, t0);
    expect(actions).toEqual(['secret ci-credentials credentials', 'status Active']);
    expect(done.status.credentialsDigest).toBe(credentialsDigest(planned.secret!.data));
    expect(done.events.map((e) => e.reason)).toEqual(['TokenIssued']);
    // The restarts controller's condition: never in the reconcile's apply.
    expect(done.status.conditions?.map((c) => c.type)).not.toContain('RestartTargetsReady');
  });

  it('crashAfterSecretWrite: the process stops after the Secret write, before any status is written', async () => {
    const su = user({ credentials: { clientCertificate: { enabled: false } } });
    const { actions, write } = writer({ crash: true });
    await expect(carryOut(write, su, { status: undefined, secret: undefined }, plan(su), t0)).rejects.toThrow('crashed');
    expect(actions).toEqual(['secret ci-credentials credentials', 'crash']);
  });

  it('records notices in status, pending, in the write that makes the change (the notices controller sends and marks them)', async () => {
    const su = user({ endDate: '2027-01-02', credentials: { clientCertificate: { enabled: false } } });
    const { actions, write } = writer({ notices: true });
    const done = await carryOut(write, su, { status: undefined, secret: undefined }, plan(su), t0);
    expect(actions).toEqual(['secret ci-credentials credentials', 'status Active (1 notices pending)']);
    expect(done.status.notices).toEqual([{ key: 'ExpiryWarning/2027-01-02T23:59:59Z', kind: 'ExpiryWarning', detail: expect.any(String), dueAt: new Date(t0).toISOString() }]);
  });

  it('with notices off, records none', async () => {
    const su = user({ endDate: '2027-01-02', credentials: { clientCertificate: { enabled: false } } });
    const { actions, write } = writer();
    const done = await carryOut(write, su, { status: undefined, secret: undefined }, plan(su), t0);
    expect(actions).toEqual(['secret ci-credentials credentials', 'status Active']);
    expect(done.status.notices).toBeUndefined();
  });

  it('a pass with nothing to write writes nothing and lets the Secret view settle', async () => {
    const su = user({ credentials: { clientCertificate: { enabled: false } } });
    const first = plan(su);
    const secret = { data: first.secret!.data as Record<string, string>, raw: Object.fromEntries(Object.entries(first.secret!.data).map(([k, v]) => [k, Buffer.from(v).toString('base64')])), labels: first.secret!.labels, annotations: first.secret!.annotations, ownerUids: ['uid-1'] };
    // As the first pass recorded it: with the digest of the credentials it placed.
    const recorded = { ...first.status, credentialsDigest: credentialsDigest(first.secret!.data) };
    const again = { ...su, status: recorded };
    const { actions, write } = writer();
    await carryOut(write, again, { status: recorded, secret }, plan(again, t0 + 1000, secret), t0 + 1000);
    expect(actions).toEqual(['settled']);
  });

  it("another controller's fields in status (the restarts condition, sent notices) are no reason to write", async () => {
    const su = user({ credentials: { clientCertificate: { enabled: false } } });
    const first = plan(su);
    const secret = { data: first.secret!.data as Record<string, string>, raw: Object.fromEntries(Object.entries(first.secret!.data).map(([k, v]) => [k, Buffer.from(v).toString('base64')])), labels: first.secret!.labels, annotations: first.secret!.annotations, ownerUids: ['uid-1'] };
    const theirs = {
      ...first.status,
      credentialsDigest: credentialsDigest(first.secret!.data),
      conditions: [...(first.status.conditions ?? []), { type: 'RestartTargetsReady', status: 'True' as const, reason: 'Annotated', message: 'ok', lastTransitionTime: new Date(t0).toISOString() }],
      notices: [{ key: 'Disabled/1', kind: 'Disabled' as const, dueAt: new Date(t0).toISOString(), sentAt: new Date(t0).toISOString() }],
    };
    const again = { ...su, status: theirs };
    const { actions, write } = writer({ notices: true });
    await carryOut(write, again, { status: theirs, secret }, plan(again, t0 + 1000, secret), t0 + 1000);
    expect(actions).toEqual(['settled']);
  });
});
