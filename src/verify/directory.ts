// What verification looks up, kept in memory from the ServiceUser informer: parsed
// ServiceUsers by key, and indexes from token id, identity and certificate serial to them.
// No API call per request; updated on every informer event.
//
// Only what the operator MAC'd is kept (ledger-macs.ts): a token record without a valid MAC
// is neither indexed nor handed to verification; without a valid seal, permissions and
// accounts read as none and the certificate as absent. Nothing can be shadowed across
// namespaces: a token id leads to every ServiceUser recording it, told apart by the
// presented token's hash; a serial is indexed with its issuer, and a certificate caller is
// matched by the identity its certificate names.
import { serviceUser, type ServiceUser } from '../api/serviceuser.ts';
import { identityOf } from '../api/names.ts';
import { sealHonoured, tokenHonoured, type LedgerTrust } from '../authority/ledger-macs.ts';
import { sameDigest } from '../credentials/token.ts';
import { objectKey, type ChangeType } from '../controller/informer.ts';
import type { KubeObject } from '../controller/kube.ts';

type Spec = ServiceUser['spec'];
type Status = NonNullable<ServiceUser['status']>;

/**
 * What verification reads of a ServiceUser, and all the directory keeps: a fifth of the
 * parsed object, which at 10,000 users is tens of megabytes not held twice.
 */
export interface Verifiable {
  metadata: Pick<ServiceUser['metadata'], 'name' | 'namespace' | 'uid' | 'deletionTimestamp'>;
  spec: Pick<Spec, 'disabled' | 'endDate' | 'accounts' | 'friendlyName'> & {
    credentials: { token: Pick<Spec['credentials']['token'], 'enabled' | 'revokedTokenIds' | 'allowedCIDRs'> };
  };
  status?: Pick<Status, 'tokens' | 'permissions'> & { accounts?: string[]; certificate?: Pick<NonNullable<Status['certificate']>, 'serialNumber' | 'issuer'> };
}

/**
 * The accounts verification reports and scopes by: those the operator found admitted and
 * sealed (status.accounts), never spec.accounts, which anyone who may edit the ServiceUser
 * writes. Absent (not yet reconciled, or an unsealed status): none.
 */
export const reportedAccounts = (su: Verifiable): string[] => su.status?.accounts ?? [];

/** What verification may read of a ServiceUser: its honoured records only. */
function verifiable(su: ServiceUser, trust: LedgerTrust): Verifiable {
  const { name, namespace, uid, deletionTimestamp } = su.metadata;
  const { disabled, endDate, accounts, friendlyName } = su.spec;
  const { enabled, revokedTokenIds, allowedCIDRs } = su.spec.credentials.token;
  const status = su.status;
  const sealed = !!status && sealHonoured(trust, uid, status);
  return {
    metadata: { name, namespace, uid, deletionTimestamp },
    spec: { disabled, endDate, accounts, friendlyName, credentials: { token: { enabled, revokedTokenIds, allowedCIDRs } } },
    ...(status
      ? {
          status: {
            tokens: (status.tokens ?? []).filter((t) => tokenHonoured(trust, uid, t)),
            permissions: sealed ? status.permissions : [],
            ...(status.accounts !== undefined ? { accounts: sealed ? status.accounts : [] } : {}),
            ...(status.certificate && sealed ? { certificate: { serialNumber: status.certificate.serialNumber, issuer: status.certificate.issuer } } : {}),
          },
        }
      : {}),
  };
}

const serialKey = (issuer: string, serial: string) => `${issuer}\u0000${serial.toLowerCase()}`;

/** Several keys under one value: an index where equal values do not overwrite each other. */
class MultiIndex {
  private readonly map = new Map<string, Set<string>>();
  add(value: string, key: string) {
    let keys = this.map.get(value);
    if (!keys) this.map.set(value, (keys = new Set()));
    keys.add(key);
  }
  remove(value: string, key: string) {
    const keys = this.map.get(value);
    keys?.delete(key);
    if (keys && !keys.size) this.map.delete(value);
  }
  get(value: string): string[] {
    return [...(this.map.get(value) ?? [])];
  }
}

export class Directory {
  private readonly users = new Map<string, Verifiable>();
  private readonly byToken = new MultiIndex();
  private readonly byIdentity = new Map<string, string>();
  private readonly bySerial = new MultiIndex();

  private readonly trust: LedgerTrust;

  /** `trust`: the ledger key, read at each change (its ring is replaced when the key rotates). */
  constructor(trust: LedgerTrust = { ring: undefined }) {
    this.trust = trust;
  }

  /** Feed from the ServiceUser informer's change events. */
  observe(type: ChangeType, raw: KubeObject): void {
    const parsed = serviceUser.safeParse(raw);
    this.observeParsed(type, objectKey(raw), parsed.success ? parsed.data : undefined);
  }

  /** Feed from a typed cache (api/stores.ts): `parsed` undefined when the object does not parse. */
  observeParsed(type: ChangeType, key: string, parsed: ServiceUser | undefined): void {
    this.forget(key);
    if (type === 'DELETED' || !parsed) return;
    const su = verifiable(parsed, this.trust);
    this.users.set(key, su);
    this.byIdentity.set(identityOf(su), key);
    for (const t of su.status?.tokens ?? []) this.byToken.add(t.id, key);
    const cert = su.status?.certificate;
    if (cert) this.bySerial.add(serialKey(cert.issuer, cert.serialNumber), key);
  }

  /** Judges every ServiceUser again (from the informer's cache): the ledger key changed. */
  rejudge(all: KubeObject[]): void {
    for (const raw of all) this.observe('MODIFIED', raw);
  }

  private forget(key: string): void {
    const old = this.users.get(key);
    if (!old) return;
    this.users.delete(key);
    if (this.byIdentity.get(identityOf(old)) === key) this.byIdentity.delete(identityOf(old));
    for (const t of old.status?.tokens ?? []) this.byToken.remove(t.id, key);
    const cert = old.status?.certificate;
    if (cert) this.bySerial.remove(serialKey(cert.issuer, cert.serialNumber), key);
  }

  /**
   * The ServiceUser recording this token id — with `sha256`, the one whose record of it has
   * that hash (another namespace's record of the same id does not shadow it).
   */
  byTokenId(id: string, sha256?: string): Verifiable | undefined {
    const candidates = this.usersAt(this.byToken.get(id));
    if (sha256 === undefined || candidates.length < 2) return candidates[0];
    return candidates.find((su) => su.status?.tokens?.some((t) => t.id === id && sameDigest(t.sha256, sha256))) ?? candidates[0];
  }

  /** The users at these keys (an index names only keys the map holds; any other is skipped). */
  private usersAt(keys: string[]): Verifiable[] {
    return keys.flatMap((k) => this.users.get(k) ?? []);
  }

  byIdentityName(identity: string): Verifiable | undefined {
    const key = this.byIdentity.get(identity);
    return key ? this.users.get(key) : undefined;
  }

  /**
   * The ServiceUsers whose current certificate has this issuer and serial. A serial is unique
   * per issuer only, and status can claim any; the caller picks by the identity the
   * (verified) certificate names.
   */
  bySerialNumber(issuer: string, serial: string): Verifiable[] {
    return this.usersAt(this.bySerial.get(serialKey(issuer, serial)));
  }

  get size(): number {
    return this.users.size;
  }
}
