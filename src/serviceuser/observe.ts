// What one ServiceUser reconcile sees, read in one place before anything is planned: the
// ServiceUser (our own writes over the cache), what bears on it from the other caches (peers
// sharing its friendly name, the bindings naming it and their roles, the accounts admitting
// it), its Secret (secret-view.ts, the one view of it), and what the CA and the revocation
// ledger say about the certificate that Secret holds.
//
// Invariants:
//   - Every cache read of a reconcile is here; planning (certificate-plan.ts, desired.ts) reads
//     nothing, and the executor (execute.ts) reads only what cert-manager needs of its own
//     objects (restart targets are the restarts controller's: restarts-controller.ts).
//   - Only what bears on this user is read (index lookups): a reconcile costs the same at 10 or
//     10,000 users.
//   - The certificate is judged only when the plan can use it: the CA is loaded and the user
//     is not stalled (or stalled but expired, when it is revoked); a Secret someone else owns
//     is never read as this user's certificate.
//   - Ledger facts are read from the ledger's memory (no request): whether the Secret's
//     certificate is revoked, and how many serials this user has on the CRL.
import { judgeAccounts, type AccountsVerdict } from '../account/admission.ts';
import { admitsFromCaches } from '../account/admission.ts';
import { byFriendlyName, bySubject, inNamespace } from '../api/indexes.ts';
import type { ServiceUser } from '../api/serviceuser.ts';
import { OwnWrites } from '../controller/expectations.ts';
import { objectKey, type CacheReader } from '../controller/informer.ts';
import { typedServiceUser, validValues, type AccountEntry, type NamespaceEntry, type RoleBindingEntry, type RoleEntry, type ServiceUserEntry } from '../api/stores.ts';
import type { KubeObject } from '../controller/kube.ts';
import type { RevocationLedger } from '../authority/revocations.ts';
import type { Ca } from '../credentials/ca.ts';
import { resolve, type Grant } from '../rolebinding/resolve.ts';
import { defaultCrlOwnerBudget } from './certificate.ts';
import type { CertificateFacts } from './certificate-plan.ts';
import { blocker } from './desired.ts';
import { friendlyNameOf, secretNameOf } from '../api/names.ts';
import { expiresAt, isExpired } from '../api/expiry.ts';
import { observeCertificate } from './issuance.ts';
import { sealHonoured, type LedgerTrust } from '../authority/ledger-macs.ts';
import { SecretView, type SecretViewDeps } from './secret-view.ts';
import type { SeenSecret } from './secret-write.ts';

export interface ObserveDeps extends SecretViewDeps {
  serviceUsers: CacheReader<ServiceUserEntry>;
  roleBindings: CacheReader<RoleBindingEntry>;
  roles: CacheReader<RoleEntry>;
  accounts: CacheReader<AccountEntry>;
  namespaces: CacheReader<NamespaceEntry>;
  now: () => number;
  authority: { ca: Ca; ledger: Pick<RevocationLedger, 'isRevoked' | 'listedFor'> };
  trust: LedgerTrust;
  crlOwnerBudget?: number | undefined;
}

export interface Observation {
  now: number;
  /** The user's Secret as seen, whoever owns it. */
  secret: SeenSecret | undefined;
  /** The same, when it may be this user's (not a Secret someone else owns). */
  ourSecret: SeenSecret | undefined;
  /** What stops this user before anything is issued (desired.ts blocker). */
  blocked: { reason: string; message: string } | undefined;
  peers: ServiceUser[];
  permissions: Grant[];
  accounts: AccountsVerdict;
  certificate: CertificateFacts;
}

export type AuthorityState = { ready: true } | { ready: false; reason: string };

export class ServiceUserObserver {
  // What our writes to each ServiceUser returned, until the cache shows them: a reconcile
  // that follows at once (woken by our own Secret write) must not decide on the object from
  // before them, or it redoes the work and tells `kubectl describe` a crash happened.
  private readonly own = new OwnWrites<ServiceUserEntry>();
  readonly secrets: SecretView;

  private readonly deps: ObserveDeps;

  constructor(deps: ObserveDeps) {
    this.deps = deps;
    this.secrets = new SecretView(deps);
  }

  /** The ServiceUser as our last write left it, or as the cache has it once it caught up. */
  serviceUser(key: string): ServiceUserEntry | undefined {
    return this.own.view(key, this.deps.serviceUsers.get(key));
  }

  /** Our write to the ServiceUser `su` returned `written`. */
  remember(su: KubeObject, written: KubeObject): KubeObject {
    this.own.wrote(objectKey(su), typedServiceUser(written), su.metadata.resourceVersion);
    return written;
  }

  /** Everything a pass of `su` plans from. */
  async observe(key: string, su: ServiceUser, authority: AuthorityState, signal?: AbortSignal): Promise<Observation> {
    const { deps } = this;
    const ns = su.metadata.namespace!;
    const peers = validValues(deps.serviceUsers.byIndex(byFriendlyName, inNamespace(ns, friendlyNameOf(su))));
    const bindings = validValues(deps.roleBindings.byIndex(bySubject, inNamespace(ns, su.metadata.name)));
    const roles = validValues(bindings.map((b) => deps.roles.get(b.spec.roleRef.name)));
    const admits = admitsFromCaches(deps.accounts, deps.namespaces);
    const accounts = judgeAccounts(su.spec.accounts, ns, admits);
    const permissions = resolve([su], bindings, roles, admits).permissionsOf(ns, su.metadata.name);
    // A name someone else's Secret holds (the user is stalled on it) is read live: their Secret is not in our cache.
    const heldByOthers = !!su.status?.conditions?.some((c) => c.type === 'Stalled' && c.status === 'True' && c.reason === 'SecretNotOwned');
    const expiring = isExpired(expiresAt(su.spec.endDate), deps.now());
    const secret = await this.secrets.current({ key, namespace: ns, name: secretNameOf(su), expiring, heldByOthers, signal });
    const now = deps.now();
    const blocked = blocker(su, { peers, secret });
    const ourSecret = blocked?.reason === 'SecretNotOwned' ? undefined : secret;
    const certificate = await this.certificateFacts(su, ourSecret, authority, !blocked || isExpired(expiresAt(su.spec.endDate), now));
    return { now, secret, ourSecret, blocked, peers, permissions, accounts, certificate };
  }

  private async certificateFacts(su: ServiceUser, secret: SeenSecret | undefined, authority: AuthorityState, judged: boolean): Promise<CertificateFacts> {
    const { ca, ledger } = this.deps.authority;
    const sealed = su.status && sealHonoured(this.deps.trust, su.metadata.uid, su.status) ? su.status.certificate : undefined;
    const base = { sealed, secretHoldsCertificate: !!secret?.raw?.['tls.crt'] };
    if (!authority.ready) return { ...base, authority, inSecret: undefined, crl: { entries: 0, budget: 0 } };
    let inSecret = judged && secret?.raw ? await observeCertificate(secret.raw, ca, su) : undefined;
    // A certificate the CA issued that the ledger lists as revoked is never kept or recorded
    // again: a Secret restored from a backup, an old Secret put back, or the one status records
    // revoked at an end date that has since moved (end-date-revocations.ts acts on the cache).
    if (inSecret?.trusted && (await ledger.isRevoked(inSecret.serialNumber))) inSecret = { ...inSecret, revoked: true };
    const crl = { entries: ledger.listedFor(`${su.metadata.namespace}/${su.metadata.name}`), budget: this.deps.crlOwnerBudget ?? defaultCrlOwnerBudget };
    return { ...base, authority: { ready: true, caSubject: ca.certificate.subject }, inSecret, crl };
  }
}
