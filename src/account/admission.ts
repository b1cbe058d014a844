// Which accounts admit which namespaces: an Account's namespaceSelector against the
// namespace's labels. A ServiceUser or RoleBinding gets permissions only in accounts that
// exist and admit its namespace — the operator's line of defence, also for objects that
// predate the admission policy. Pure, but for admitsFromCaches: the one reading of the caches
// the ServiceUser and RoleBinding reconcilers share (so neither imports another's reconcile).
import type { Account } from '../api/account.ts';
import { describeSelector, selects } from '../api/labels.ts';
import { dnsSubdomain } from '../api/primitives.ts';
import type { ConditionInput } from '../controller/conditions.ts';
import type { AccountEntry, NamespaceEntry } from '../api/stores.ts';
import type { CacheReader } from '../controller/informer.ts';

export interface AccountProblem {
  account: string;
  reason: 'AccountNotFound' | 'NamespaceNotAdmitted';
  message: string;
}

/** Why `account` does not admit `namespace`, or undefined when it does. */
export type Admits = (account: string, namespace: string) => AccountProblem | undefined;

export function admission(lookup: {
  /** The Account of that name, parsed; undefined when there is none (or it does not parse). */
  account: (name: string) => Account | undefined;
  /** The namespace's labels; undefined while the namespace is not known. */
  namespaceLabels: (namespace: string) => Record<string, string> | undefined;
}): Admits {
  return (name, namespace) => {
    const account = lookup.account(name);
    if (!account || account.metadata.deletionTimestamp) {
      const hint = dnsSubdomain.test(name) ? `create Account ${name} (kubectl get suacct lists them)` : 'Account names are lower case (DNS subdomains): rename the account';
      return { account: name, reason: 'AccountNotFound', message: `account ${name}: no Account object of that name exists; ${hint}` };
    }
    const labels = lookup.namespaceLabels(namespace);
    if (!labels || !selects(account.spec.namespaceSelector, labels)) {
      return {
        account: name,
        reason: 'NamespaceNotAdmitted',
        message: `account ${name}: Account ${name} admits ${describeSelector(account.spec.namespaceSelector)}, not namespace ${namespace}; a platform admin widens its spec.namespaceSelector or labels the namespace`,
      };
    }
    return undefined;
  };
}

export interface AccountsVerdict {
  /** The named accounts that exist and admit the namespace, in the order named. */
  admitted: string[];
  problems: AccountProblem[];
}

export function judgeAccounts(accounts: readonly string[], namespace: string, admits: Admits): AccountsVerdict {
  const admitted: string[] = [];
  const problems: AccountProblem[] = [];
  for (const a of accounts) {
    const problem = admits(a, namespace);
    if (problem) problems.push(problem);
    else admitted.push(a);
  }
  return { admitted, problems };
}

/** A ServiceUser's AccountsAdmitted condition. */
export function accountsCondition(verdict: AccountsVerdict): ConditionInput {
  const [first] = verdict.problems;
  if (!first) {
    return { type: 'AccountsAdmitted', status: 'True', reason: 'Admitted', message: `admitted in ${verdict.admitted.join(', ')}` };
  }
  return {
    type: 'AccountsAdmitted',
    status: 'False',
    reason: first.reason,
    message:
      `no permission is granted or reported in ${verdict.problems.map((p) => p.account).join(', ')}: ` +
      verdict.problems.map((p) => p.message).join('; ') +
      (verdict.admitted.length ? `. Admitted in ${verdict.admitted.join(', ')}` : ''),
  };
}

/**
 * A ServiceUser's AccountsAdmitted condition and the events its change announces: a Warning
 * naming each refused account when that changes, a Normal one when all are admitted again.
 * Without a verdict (accounts not looked up) every account counts as refused: fail closed.
 */
export function accountsAdmission(
  verdict: AccountsVerdict | undefined,
  named: readonly string[],
  previous: { type: string; status: string; message: string }[] | undefined,
): { condition: ConditionInput; events: { type: 'Normal' | 'Warning'; reason: string; message: string }[] } {
  const condition = accountsCondition(
    verdict ?? { admitted: [], problems: named.map((account) => ({ account, reason: 'AccountNotFound' as const, message: `account ${account}: not looked up` })) },
  );
  const before = previous?.find((c) => c.type === 'AccountsAdmitted');
  if (condition.status === 'False' && (before?.status !== 'False' || before.message !== condition.message)) {
    return { condition, events: [{ type: 'Warning', reason: condition.reason, message: condition.message }] };
  }
  if (condition.status === 'True' && before?.status === 'False') return { condition, events: [{ type: 'Normal', reason: 'AccountsAdmitted', message: condition.message }] };
  return { condition, events: [] };
}

/** Admission decisions read from the Account and Namespace caches. */
export function admitsFromCaches(accounts: CacheReader<AccountEntry>, namespaces: CacheReader<NamespaceEntry>): Admits {
  return admission({
    account: (name) => {
      const cached = accounts.get(name);
      return cached?.valid ? cached.value : undefined;
    },
    namespaceLabels: (namespace) => namespaces.get(namespace)?.metadata.labels,
  });
}
