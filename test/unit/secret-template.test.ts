// secretTemplate keys that would have another controller copy a ServiceUser's Secret: the
// prefix rules (api/secret-template.ts), the flag's parsing, and the operator's own line —
// desired() leaves such keys off the Secret, says which in a condition and a Warning event,
// and asks for their removal, whatever admission let through.
import { describe, expect, it } from 'vitest';
import { admittedTemplate, copierKeyPrefixes, defaultTemplateKeyPolicy, keyRefusal, parseKeyPrefixes } from '../../src/api/secret-template.ts';
import { serviceUser, type ServiceUser } from '../../src/api/serviceuser.ts';
import { newLedgerKey } from '../../src/credentials/mac.ts';
import { issueToken } from '../../src/credentials/token.ts';
import { desired } from '../../src/serviceuser/desired.ts';

const key = newLedgerKey();
const trust = { ring: { current: key, keys: [key] } };

describe('which keys a secretTemplate may set', () => {
  it('refuses the known copiers\' keys by default, in any case, and admits the rest', () => {
    for (const k of ['replicator.v1.mittwald.de/replicate-to', 'replicator.v1.mittwald.de/replicate-to-matching', 'reflector.v1.k8s.emberstack.com/reflection-allowed', 'kubed.appscode.com/sync', 'Replicator.V1.Mittwald.De/replicate-to']) {
      expect(keyRefusal(defaultTemplateKeyPolicy, k)).toMatch(/^keys starting with \S+ ask another controller to copy the Secret, and this platform refuses them$/);
    }
    for (const k of ['example.com/owner', 'team', 'app.kubernetes.io/part-of', 'replicator.v1.mittwald.de.example.com/x']) expect(keyRefusal(defaultTemplateKeyPolicy, k)).toBeUndefined();
  });

  it('admits only the allowed prefixes when the platform names some', () => {
    const policy = { refused: copierKeyPrefixes, allowed: ['example.com/'] };
    expect(keyRefusal(policy, 'example.com/owner')).toBeUndefined();
    expect(keyRefusal(policy, 'team')).toBe('this platform allows only keys starting with example.com/');
  });

  it('splits labels and annotations into what is written and what is refused, naming the field and key', () => {
    const judged = admittedTemplate(defaultTemplateKeyPolicy, {
      labels: { team: 'b', 'reflector.v1.k8s.emberstack.com/reflection-allowed': 'true' },
      annotations: { 'example.com/owner': 'b', 'replicator.v1.mittwald.de/replicate-to': 'elsewhere' },
    });
    expect(judged.labels).toEqual({ team: 'b' });
    expect(judged.annotations).toEqual({ 'example.com/owner': 'b' });
    expect(judged.refused.map((r) => `${r.field}[${r.key}]`)).toEqual(['labels[reflector.v1.k8s.emberstack.com/reflection-allowed]', 'annotations[replicator.v1.mittwald.de/replicate-to]']);
  });

  it('parses the flag, and names what is wrong with a bad prefix', () => {
    expect(parseKeyPrefixes('--x', ' Example.com/ , team,')).toEqual({ ok: true, prefixes: ['example.com/', 'team'] });
    expect(parseKeyPrefixes('--x', '')).toEqual({ ok: true, prefixes: [] });
    expect(parseKeyPrefixes('--x', 'a b')).toEqual({ ok: false, message: expect.stringContaining('--x: "a b" is not a label or annotation key prefix') });
  });
});

describe('the operator never writes a refused key onto the Secret', () => {
  const su = (annotations: Record<string, string>, status?: unknown): ServiceUser =>
    serviceUser.parse({
      apiVersion: 'serviceusers.dev/v1alpha1', kind: 'ServiceUser',
      metadata: { name: 'ci', namespace: 'team-b', uid: 'uid-ci', generation: 1, creationTimestamp: '2026-12-01T00:00:00Z' },
      spec: { email: 'ops@example.com', accounts: ['acme'], credentials: { secretTemplate: { annotations } } },
      ...(status ? { status } : {}),
    });
  const plan = (user: ServiceUser, templateKeys = defaultTemplateKeyPolicy) =>
    desired(user, { now: Date.parse('2027-01-01T00:00:00Z'), secret: undefined, peers: [], permissions: [], trust, templateKeys }, issueToken);

  it('attack: a replicate-to annotation written past admission is left off, withheld, and named in a condition and a Warning', () => {
    const p = plan(su({ 'replicator.v1.mittwald.de/replicate-to': 'attacker', 'example.com/owner': 'b' }));
    expect(p.secret?.annotations).not.toHaveProperty('replicator.v1.mittwald.de/replicate-to');
    expect(p.secret?.annotations).toMatchObject({ 'example.com/owner': 'b' });
    expect(p.secret?.withheld).toEqual({ labels: [], annotations: ['replicator.v1.mittwald.de/replicate-to'] });
    const condition = p.status.conditions?.find((c) => c.type === 'SecretTemplateAdmitted');
    expect(condition).toMatchObject({ status: 'False', reason: 'SecretTemplateKeyRefused' });
    expect(condition?.message).toContain('spec.credentials.secretTemplate.annotations[replicator.v1.mittwald.de/replicate-to] (keys starting with replicator.v1.mittwald.de/ ask another controller');
    expect(p.events).toContainEqual({ type: 'Warning', reason: 'SecretTemplateKeyRefused', message: condition?.message });
    // Said once; and once the key is gone, the all-clear.
    const again = plan(su({ 'replicator.v1.mittwald.de/replicate-to': 'attacker' }, p.status));
    expect(again.events.filter((e) => e.reason === 'SecretTemplateKeyRefused')).toEqual([]);
    const clean = plan(su({}, p.status));
    expect(clean.secret?.withheld).toBeUndefined();
    expect(clean.events).toContainEqual(expect.objectContaining({ type: 'Normal', reason: 'SecretTemplateAdmitted' }));
  });

  it('writes what the platform allows: no refused prefixes, no refusal', () => {
    const p = plan(su({ 'replicator.v1.mittwald.de/replicate-to': 'team-c' }), { refused: [], allowed: [] });
    expect(p.secret?.annotations).toMatchObject({ 'replicator.v1.mittwald.de/replicate-to': 'team-c' });
    expect(p.status.conditions?.find((c) => c.type === 'SecretTemplateAdmitted')).toMatchObject({ status: 'True' });
  });
});
