// The caches' typed projections: parsed once, compact, and an object that does not parse
// kept with one line saying why.
import { describe, expect, it } from 'vitest';
import { accountsOf, rawSubjects, serviceUserIndexers } from '../../src/api/indexes.ts';
import { namespaceEntry, typedServiceUser, validValues } from '../../src/api/stores.ts';

const su = (spec: unknown) => ({
  apiVersion: 'serviceusers.dev/v1alpha1',
  kind: 'ServiceUser',
  metadata: {
    name: 'ci',
    namespace: 'team',
    uid: 'u1',
    resourceVersion: '7',
    creationTimestamp: '2026-01-01T00:00:00Z',
    managedFields: [{ manager: 'kubectl' }],
    ownerReferences: [{ apiVersion: 'v1', kind: 'ConfigMap', name: 'x', uid: 'o' }],
    annotations: { 'kubectl.kubernetes.io/last-applied-configuration': JSON.stringify({ spec }), team: 'build' },
  },
  spec,
});

describe('typed stores', () => {
  it('parse a ServiceUser once, with defaults, and keep only the metadata readers use', () => {
    const e = typedServiceUser(su({ email: 'team@example.com', accounts: ['build'], endDate: '2030-01-01' }));
    if (!e.valid) throw new Error(e.problem);
    expect(e.value.spec.credentials.token.enabled).toBe(true);
    expect(e.metadata).toBe(e.value.metadata);
    expect(e.metadata).toEqual({ name: 'ci', namespace: 'team', uid: 'u1', resourceVersion: '7', creationTimestamp: '2026-01-01T00:00:00Z', annotations: { team: 'build' } });
    expect(validValues([e, undefined])).toEqual([e.value]);
  });

  it('keep a ServiceUser that does not parse, saying which field and what is expected', () => {
    const e = typedServiceUser(su({ email: 'team@example.com', accounts: ['build'], endDate: 'soon' }));
    expect(e.valid).toBe(false);
    if (e.valid) return;
    expect(e.problem).toMatch(/^spec\.endDate: /);
    expect(e.raw.metadata.managedFields).toBeUndefined();
    expect(validValues([e])).toEqual([]);
  });

  it('index what an object that does not parse still names, a malformed field reading as absent', () => {
    const e = typedServiceUser(su({ friendlyName: 7, accounts: ['build', 3, 'build'], endDate: 'soon' }));
    expect(e.valid).toBe(false);
    expect(serviceUserIndexers.friendlyName(e)).toEqual(['team/ci']);
    expect(serviceUserIndexers.account(e)).toEqual(['build']);
    expect(accountsOf(e)).toEqual({ named: ['build'], admitted: [] });
    expect(rawSubjects({ metadata: { name: 'b' }, spec: { subjects: 'ci' } })).toEqual([]);
    expect(rawSubjects({ metadata: { name: 'b' }, spec: { subjects: [{ name: 'ci' }, null] } })).toEqual(['ci', '']);
  });

  it('keep a Namespace as its name and labels', () => {
    expect(namespaceEntry({ metadata: { name: 'team', resourceVersion: '3', uid: 'n', annotations: { a: 'b' } } })).toEqual({ metadata: { name: 'team', resourceVersion: '3', labels: {} } });
  });
});
