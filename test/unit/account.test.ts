// Accounts without a cluster: what a label selector selects, the Account schema's rules,
// which accounts admit a namespace, and what that does to grants and to a ServiceUser's
// status (status.accounts, the AccountsAdmitted condition and its event).
import { describe, expect, it } from 'vitest';
import { account } from '../../src/api/account.ts';
import { labelSelector, selects, type LabelSelector } from '../../src/api/labels.ts';
import { role } from '../../src/api/role.ts';
import { roleBinding } from '../../src/api/rolebinding.ts';
import { serviceUser, type ServiceUser } from '../../src/api/serviceuser.ts';
import { accountsCondition, admission, judgeAccounts } from '../../src/account/admission.ts';
import { pinAccounts, resolve } from '../../src/rolebinding/resolve.ts';
import { desired } from '../../src/serviceuser/desired.ts';
import { issueToken } from '../../src/credentials/token.ts';
import { newLedgerKey } from '../../src/credentials/mac.ts';

const key = newLedgerKey();
const trust = { ring: { current: key, keys: [key] } };

const team = { team: 'release', 'kubernetes.io/metadata.name': 'ci' };

describe('label selectors (metav1.LabelSelector semantics)', () => {
  const cases: [string, LabelSelector | undefined, Record<string, string>, boolean][] = [
    ['absent selects nothing', undefined, team, false],
    ['{} selects everything', {}, {}, true],
    ['empty lists select everything', { matchLabels: {}, matchExpressions: [] }, {}, true],
    ['matchLabels: all present and equal', { matchLabels: { team: 'release' } }, team, true],
    ['matchLabels: a different value', { matchLabels: { team: 'build' } }, team, false],
    ['matchLabels: a missing key', { matchLabels: { tier: 'prod' } }, team, false],
    ['matchLabels: every entry must hold', { matchLabels: { team: 'release', tier: 'prod' } }, team, false],
    ['matchLabels: an empty value matches an empty label', { matchLabels: { team: '' } }, { team: '' }, true],
    ['matchLabels: an empty value does not match a missing label', { matchLabels: { team: '' } }, {}, false],
    ['In: value listed', { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'In', values: ['ci', 'cd'] }] }, team, true],
    ['In: value not listed', { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'In', values: ['cd'] }] }, team, false],
    ['In: key missing', { matchExpressions: [{ key: 'tier', operator: 'In', values: ['prod'] }] }, team, false],
    ['NotIn: value listed', { matchExpressions: [{ key: 'team', operator: 'NotIn', values: ['release'] }] }, team, false],
    ['NotIn: value not listed', { matchExpressions: [{ key: 'team', operator: 'NotIn', values: ['build'] }] }, team, true],
    ['NotIn: key missing holds', { matchExpressions: [{ key: 'tier', operator: 'NotIn', values: ['prod'] }] }, team, true],
    ['Exists', { matchExpressions: [{ key: 'team', operator: 'Exists' }] }, team, true],
    ['Exists: missing', { matchExpressions: [{ key: 'tier', operator: 'Exists' }] }, team, false],
    ['DoesNotExist', { matchExpressions: [{ key: 'tier', operator: 'DoesNotExist' }] }, team, true],
    ['DoesNotExist: present', { matchExpressions: [{ key: 'team', operator: 'DoesNotExist' }] }, team, false],
    ['labels and expressions are ANDed', { matchLabels: { team: 'release' }, matchExpressions: [{ key: 'tier', operator: 'Exists' }] }, team, false],
    ['a key inherited from Object.prototype is not a label', { matchExpressions: [{ key: 'constructor', operator: 'Exists' }] }, {}, false],
  ];
  it.each(cases)('%s', (_what, selector, labels, expected) => {
    expect(selects(selector, labels)).toBe(expected);
  });
});

describe('Account schema', () => {
  const parse = (spec: unknown) => account.safeParse({ apiVersion: 'serviceusers.dev/v1alpha1', kind: 'Account', metadata: { name: 'acme-prod' }, spec });
  const paths = (spec: unknown) => {
    const r = parse(spec);
    return r.success ? 'valid' : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
  };

  it('accepts the shapes people write', () => {
    expect(paths({})).toBe('valid');
    expect(paths({ displayName: 'ACME production', namespaceSelector: {} })).toBe('valid');
    expect(paths({ namespaceSelector: { matchLabels: { team: 'release', 'example.com/tier': 'prod' } } })).toBe('valid');
    expect(paths({ namespaceSelector: { matchExpressions: [{ key: 'team', operator: 'Exists' }, { key: 'kubernetes.io/metadata.name', operator: 'In', values: ['ci'] }] } })).toBe('valid');
  });

  it('refuses selectors that mean nothing, naming the field', () => {
    expect(paths({ namespaceSelector: { matchExpressions: [{ key: 'team', operator: 'In' }] } })).toEqual([expect.stringMatching(/^spec\.namespaceSelector\.matchExpressions\.0\.values: values must list at least one value for In/)]);
    expect(paths({ namespaceSelector: { matchExpressions: [{ key: 'team', operator: 'In', values: [] }] } })).toEqual([expect.stringMatching(/^spec\.namespaceSelector\.matchExpressions\.0\.values: /)]);
    expect(paths({ namespaceSelector: { matchExpressions: [{ key: 'team', operator: 'Exists', values: ['x'] }] } })).toEqual([expect.stringMatching(/\.values: .*absent for Exists/)]);
    expect(paths({ namespaceSelector: { matchExpressions: [{ key: 'team', operator: 'Equals', values: ['x'] }] } })).toEqual([expect.stringMatching(/^spec\.namespaceSelector\.matchExpressions\.0\.operator: /)]);
    expect(paths({ namespaceSelector: { matchExpressions: [{ key: 'bad key', operator: 'Exists' }] } })).toEqual([expect.stringMatching(/\.key: must be a label key/)]);
    expect(paths({ namespaceSelector: { matchLabels: { team: 'not a value' } } })).toEqual([expect.stringMatching(/^spec\.namespaceSelector\.matchLabels: /)]);
    expect(labelSelector.safeParse({ matchLabels: { '-bad': 'x' } }).success).toBe(false);
  });
});

const acct = (name: string, namespaceSelector?: LabelSelector) =>
  account.parse({ apiVersion: 'serviceusers.dev/v1alpha1', kind: 'Account', metadata: { name }, spec: namespaceSelector ? { namespaceSelector } : {} });

const accounts = new Map([
  ['acme-prod', acct('acme-prod', { matchLabels: { team: 'release' } })],
  ['acme-dev', acct('acme-dev', {})],
  ['locked', acct('locked')],
]);
const namespaces: Record<string, Record<string, string>> = { ci: team, 'team-b': { 'kubernetes.io/metadata.name': 'team-b' } };
const admits = admission({ account: (n) => accounts.get(n), namespaceLabels: (n) => namespaces[n] });

describe('admission of accounts', () => {
  it('admits where the selector selects the namespace', () => {
    expect(admits('acme-prod', 'ci')).toBeUndefined();
    expect(admits('acme-dev', 'team-b')).toBeUndefined();
  });

  it('names the account and why when it does not', () => {
    expect(admits('acme-prod', 'team-b')).toEqual({ account: 'acme-prod', reason: 'NamespaceNotAdmitted', message: expect.stringContaining('Account acme-prod admits team=release, not namespace team-b') });
    expect(admits('locked', 'ci')).toMatchObject({ reason: 'NamespaceNotAdmitted', message: expect.stringContaining('admits no namespace (spec.namespaceSelector is absent)') });
    expect(admits('acme-qa', 'ci')).toEqual({ account: 'acme-qa', reason: 'AccountNotFound', message: expect.stringContaining('create Account acme-qa') });
    expect(admits('ACME_Prod', 'ci')?.message).toContain('Account names are lower case');
  });

  it('fails closed while the namespace is unknown, even for {}', () => {
    expect(admits('acme-dev', 'nowhere')).toMatchObject({ reason: 'NamespaceNotAdmitted' });
  });

  it('summarises a ServiceUser\'s accounts as a condition', () => {
    const verdict = judgeAccounts(['acme-prod', 'acme-dev', 'acme-qa'], 'team-b', admits);
    expect(verdict.admitted).toEqual(['acme-dev']);
    const c = accountsCondition(verdict);
    expect(c).toMatchObject({ type: 'AccountsAdmitted', status: 'False', reason: 'NamespaceNotAdmitted' });
    expect(c.message).toMatch(/^no permission is granted or reported in acme-prod, acme-qa: /);
    expect(c.message).toContain('no Account object of that name exists');
    expect(c.message).toMatch(/Admitted in acme-dev$/);
    expect(accountsCondition(judgeAccounts(['acme-prod'], 'ci', admits))).toMatchObject({ status: 'True', reason: 'Admitted', message: 'admitted in acme-prod' });
  });
});

const su = (namespace: string, name: string, accountsNamed: string[], extra: Record<string, unknown> = {}): ServiceUser =>
  serviceUser.parse({
    apiVersion: 'serviceusers.dev/v1alpha1', kind: 'ServiceUser',
    metadata: { name, namespace, uid: `uid-${name}`, generation: 1, creationTimestamp: '2026-12-01T00:00:00Z' },
    spec: { email: 'ops@example.com', accounts: accountsNamed }, ...extra,
  });
const signer = role.parse({ apiVersion: 'serviceusers.dev/v1alpha1', kind: 'Role', metadata: { name: 'software-trust-manager.signer' }, spec: { displayName: 'Signer', manager: 'software-trust-manager', permissions: ['signatures:sign'] } });
const bind = (namespace: string, subject: string, accountsNamed?: string[]) =>
  roleBinding.parse({
    apiVersion: 'serviceusers.dev/v1alpha1', kind: 'RoleBinding', metadata: { name: `${subject}-signs`, namespace },
    spec: { roleRef: { name: 'software-trust-manager.signer' }, subjects: [{ kind: 'ServiceUser', name: subject }], ...(accountsNamed ? { accounts: accountsNamed } : {}) },
  });

describe('grants only in admitted accounts', () => {
  it('attack: a tenant naming another team\'s account gets nothing there', () => {
    const intruder = su('team-b', 'intruder', ['acme-prod']);
    const r = resolve([intruder], [bind('team-b', 'intruder', ['acme-prod'])], [signer], admits);
    expect(r.permissionsOf('team-b', 'intruder')).toEqual([]);
    const verdict = r.verdictOf('team-b', 'intruder-signs')!;
    expect(verdict.granted).toEqual([]);
    expect(verdict.problems).toEqual([{ reason: 'NamespaceNotAdmitted', message: expect.stringMatching(/^grants nothing in account acme-prod: Account acme-prod admits team=release, not namespace team-b/) }]);
  });

  it('grants in the admitted accounts and says which were refused', () => {
    const user = su('team-b', 'mixed', ['acme-prod', 'acme-dev']);
    const r = resolve([user], [bind('team-b', 'mixed')], [signer], admits);
    expect(r.permissionsOf('team-b', 'mixed').map((g) => g.account)).toEqual(['acme-dev']);
    expect(r.verdictOf('team-b', 'mixed-signs')).toMatchObject({ granted: ['mixed'], problems: [{ reason: 'NamespaceNotAdmitted' }] });
  });

  it('grants as before where every account admits the namespace', () => {
    const user = su('ci', 'release', ['acme-prod', 'acme-dev']);
    const r = resolve([user], [bind('ci', 'release')], [signer], admits);
    expect(r.permissionsOf('ci', 'release').map((g) => g.account)).toEqual(['acme-dev', 'acme-prod']);
    expect(r.verdictOf('ci', 'release-signs')).toEqual({ granted: ['release'], problems: [] });
  });
});

describe('a binding without spec.accounts is pinned to what its subjects named', () => {
  const pinnedTo = (b: ReturnType<typeof bind>, pins: { subject: string; accounts: string[] }[]) => ({ ...b, status: { pinnedAccounts: pins } });

  it('pins each subject\'s accounts on first resolve; none with spec.accounts', () => {
    const user = su('ci', 'release', ['acme-prod']);
    expect(pinAccounts(bind('ci', 'release'), [user])).toEqual([{ subject: 'release', accounts: ['acme-prod'] }]);
    expect(pinAccounts(bind('ci', 'release', ['acme-prod']), [user])).toBeUndefined();
    // A subject not found yet is pinned when it appears.
    expect(pinAccounts(bind('ci', 'release'), [])).toEqual([]);
  });

  it('attack: an account the ServiceUser names later is not granted by the old binding, and the verdict says how to grant it', () => {
    const widened = su('ci', 'release', ['acme-prod', 'acme-dev']);
    const binding = pinnedTo(bind('ci', 'release'), [{ subject: 'release', accounts: ['acme-prod'] }]);
    const r = resolve([widened], [binding], [signer], admits);
    expect(r.permissionsOf('ci', 'release').map((g) => g.account)).toEqual(['acme-prod']);
    expect(r.verdictOf('ci', 'release-signs')).toEqual({
      granted: ['release'],
      problems: [{ reason: 'AccountsAddedAfterBinding', message: expect.stringMatching(/^grants nothing in acme-dev: ServiceUser release named it after this binding .* name it in spec\.accounts/) }],
    });
    // The pin does not follow the addition; named explicitly, the account is granted.
    expect(pinAccounts(binding, [widened])).toEqual([{ subject: 'release', accounts: ['acme-prod'] }]);
    expect(resolve([widened], [bind('ci', 'release', ['acme-prod', 'acme-dev'])], [signer], admits).permissionsOf('ci', 'release').map((g) => g.account)).toEqual(['acme-dev', 'acme-prod']);
  });

  it('narrows as the ServiceUser drops an account: named again, it counts as named later', () => {
    const binding = pinnedTo(bind('ci', 'release'), [{ subject: 'release', accounts: ['acme-prod', 'acme-dev'] }]);
    const dropped = pinAccounts(binding, [su('ci', 'release', ['acme-prod'])]);
    expect(dropped).toEqual([{ subject: 'release', accounts: ['acme-prod'] }]);
    const again = resolve([su('ci', 'release', ['acme-prod', 'acme-dev'])], [pinnedTo(binding, dropped!)], [signer], admits);
    expect(again.permissionsOf('ci', 'release').map((g) => g.account)).toEqual(['acme-prod']);
    // A subject gone keeps its pin (a ServiceUser recreated under the name is held to it).
    expect(pinAccounts(binding, [])).toEqual([{ subject: 'release', accounts: ['acme-prod', 'acme-dev'] }]);
  });
});

describe('a ServiceUser\'s status', () => {
  const plan = (user: ServiceUser) =>
    desired(user, { now: Date.parse('2027-01-01T00:00:00Z'), secret: undefined, peers: [], permissions: [], trust, accounts: judgeAccounts(user.spec.accounts, user.metadata.namespace!, admits) }, issueToken);

  it('records the admitted accounts only, with a Warning event naming the refused one', () => {
    const p = plan(su('team-b', 'intruder', ['acme-prod', 'acme-dev']));
    expect(p.status.accounts).toEqual(['acme-dev']);
    expect(p.status.conditions?.find((c) => c.type === 'AccountsAdmitted')).toMatchObject({ status: 'False', reason: 'NamespaceNotAdmitted' });
    expect(p.events).toContainEqual({ type: 'Warning', reason: 'NamespaceNotAdmitted', message: expect.stringContaining('acme-prod') });
  });

  it('announces a refusal once, and the admission when it comes', () => {
    const first = plan(su('team-b', 'intruder', ['acme-prod']));
    const again = plan(su('team-b', 'intruder', ['acme-prod'], { status: first.status }));
    expect(again.events.filter((e) => e.reason === 'NamespaceNotAdmitted')).toEqual([]);
    namespaces['team-b'] = { ...namespaces['team-b'], team: 'release' };
    try {
      const admitted = plan(su('team-b', 'intruder', ['acme-prod'], { status: again.status }));
      expect(admitted.status.accounts).toEqual(['acme-prod']);
      expect(admitted.events).toContainEqual({ type: 'Normal', reason: 'AccountsAdmitted', message: 'admitted in acme-prod' });
    } finally {
      delete namespaces['team-b']!.team;
    }
  });

  it('fails closed when the accounts were not looked up', () => {
    const user = su('ci', 'release', ['acme-prod']);
    const p = desired(user, { now: Date.parse('2027-01-01T00:00:00Z'), secret: undefined, peers: [], permissions: [], trust }, issueToken);
    expect(p.status.accounts).toEqual([]);
  });
});
