// restartTargets without a cluster: what the digest covers, which pod templates count as
// consumers of the Secret, and the condition and events for missing or foreign targets.
import { describe, expect, it } from 'vitest';
import { consumesSecret, credentialsDigest, judgeTargets } from '../../src/serviceuser/restarts.ts';

const data = { token: 'suo_aaaaaaaaaaaaaaaa_x', 'token-id': 'aaaaaaaaaaaaaaaa', 'tls.crt': 'CERT', 'tls.key': 'KEY', identity: 'serviceuser:ns:a', 'expires-at': '2027-01-01T00:00:00Z' };

describe('credentialsDigest', () => {
  it('changes with any credential key and with nothing else', () => {
    const d = credentialsDigest(data);
    expect(d).toMatch(/^[0-9a-f]{64}$/);
    expect(credentialsDigest({ ...data, 'expires-at': '2028-01-01T00:00:00Z', identity: 'other' })).toBe(d);
    expect(credentialsDigest({ ...data, token: 'suo_bbbbbbbbbbbbbbbb_x' })).not.toBe(d);
    expect(credentialsDigest({ ...data, 'tls.crt': 'CERT2' })).not.toBe(d);
    expect(credentialsDigest({ ...data, 'client.p12': Buffer.from([1, 2, 3]) })).not.toBe(d);
    // A wipe (expiry) is a change too.
    expect(credentialsDigest({ identity: 'serviceuser:ns:a' })).not.toBe(d);
  });

  it('is not fooled by moving bytes between keys, and never contains the token', () => {
    expect(credentialsDigest({ 'tls.crt': 'AB', 'tls.key': 'C' })).not.toBe(credentialsDigest({ 'tls.crt': 'A', 'tls.key': 'BC' }));
    expect(credentialsDigest(data)).not.toContain('suo_');
  });

  it('is the same for text and the same bytes as a Buffer (desired vs stored)', () => {
    expect(credentialsDigest({ token: 'abc' })).toBe(credentialsDigest({ token: Buffer.from('abc') }));
  });
});

describe('consumesSecret', () => {
  const name = 'creds';
  it.each([
    ['a secret volume', { volumes: [{ secret: { secretName: name } }] }],
    ['a projected volume', { volumes: [{ projected: { sources: [{ configMap: {} }, { secret: { name } }] } }] }],
    ['env valueFrom', { containers: [{ env: [{ valueFrom: { secretKeyRef: { name, key: 'SM_API_KEY' } } }] }] }],
    ['envFrom', { containers: [{ envFrom: [{ secretRef: { name } }] }] }],
    ['an init container', { initContainers: [{ envFrom: [{ secretRef: { name } }] }] }],
  ])('counts %s', (_what, spec) => {
    expect(consumesSecret(spec as never, name)).toBe(true);
  });

  it('refuses a template that reads another Secret, or nothing', () => {
    expect(consumesSecret({ volumes: [{ secret: { secretName: 'other' } }], containers: [{ envFrom: [{ secretRef: { name: 'other' } }] }] }, name)).toBe(false);
    expect(consumesSecret({ containers: [{}] }, name)).toBe(false);
    expect(consumesSecret(undefined, name)).toBe(false);
  });
});

describe('judgeTargets', () => {
  const web = { kind: 'Deployment' as const, name: 'web' };
  const db = { kind: 'StatefulSet' as const, name: 'db' };

  it('is Ready when every target exists and reads the Secret', () => {
    const { condition, events } = judgeTargets([{ target: web, state: 'due' }, { target: db, state: 'current' }], 'creds', undefined);
    expect(condition).toMatchObject({ type: 'RestartTargetsReady', status: 'True', reason: 'Annotated' });
    expect(events).toEqual([]);
  });

  it('names a missing and a foreign target with what to do, and warns once', () => {
    const states = [{ target: web, state: 'missing' as const }, { target: db, state: 'foreign' as const }];
    const first = judgeTargets(states, 'creds', undefined);
    expect(first.condition).toMatchObject({ status: 'False', reason: 'TargetNotConsumer' });
    expect(first.condition.message).toContain('Deployment/web not found');
    expect(first.condition.message).toContain('StatefulSet/db does not read Secret creds');
    expect(first.condition.message).toContain('spec.credentials.restartTargets');
    expect(first.events).toHaveLength(1);
    expect(judgeTargets(states, 'creds', first.condition).events).toEqual([]);
  });
});

describe('judgeTargets, restart targets not granted', () => {
  it('says the operator may not read the workload and what to do (RBAC without the apps rule), warning once', () => {
    const states = [{ target: { kind: 'Deployment' as const, name: 'web' }, state: 'forbidden' as const }];
    const first = judgeTargets(states, 'creds', undefined);
    expect(first.condition).toMatchObject({ type: 'RestartTargetsReady', status: 'False', reason: 'TargetForbidden' });
    expect(first.condition.message).toContain('may not read Deployment/web');
    expect(first.condition.message).toContain('restartTargets.enabled');
    expect(first.events).toHaveLength(1);
    expect(judgeTargets(states, 'creds', first.condition).events).toEqual([]);
  });
});
