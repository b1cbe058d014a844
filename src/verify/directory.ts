// What verification looks up, kept in memory from the ServiceUser informer: parsed
// ServiceUsers by key, and indexes from token id, identity and certificate serial to them.
// No API call per request; updated on every informer event.
import { serviceUser, type ServiceUser } from '../api/serviceuser.ts';
import { identityOf } from '../serviceuser/desired.ts';
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
  status?: Pick<Status, 'tokens' | 'permissions'> & { certificate?: Pick<NonNullable<Status['certificate']>, 'serialNumber'>; accounts?: string[] };
}

/**
 * The accounts verification reports for a ServiceUser and scopes by: those its reconcile
 * admitted (status.accounts), never spec.accounts once that is recorded. Every report and
 * comparison of a target's accounts goes through here.
 */
export function reportedAccounts(su: Verifiable): string[] {
  return su.status?.accounts ?? su.spec.accounts;
}

function verifiable(su: ServiceUser): Verifiable {
  const { name, namespace, uid, deletionTimestamp } = su.metadata;
  const { disabled, endDate, accounts, friendlyName } = su.spec;
  const { enabled, revokedTokenIds, allowedCIDRs } = su.spec.credentials.token;
  const status = su.status;
  return {
    metadata: { name, namespace, uid, deletionTimestamp },
    spec: { disabled, endDate, accounts, friendlyName, credentials: { token: { enabled, revokedTokenIds, allowedCIDRs } } },
    ...(status
      ? {
          status: {
            tokens: status.tokens,
            permissions: status.permissions,
            ...(status.certificate ? { certificate: { serialNumber: status.certificate.serialNumber } } : {}),
            // status.accounts arrives with the Account kind; read loosely until the schema has it.
            ...((status as { accounts?: string[] }).accounts ? { accounts: (status as { accounts?: string[] }).accounts } : {}),
          },
        }
      : {}),
  };
}

export class Directory {
  private readonly users = new Map<string, Verifiable>();
  private readonly byToken = new Map<string, string>();
  private readonly byIdentity = new Map<string, string>();
  private readonly bySerial = new Map<string, string>();

  /** Feed from the ServiceUser informer's change events. */
  observe(type: ChangeType, raw: KubeObject): void {
    const key = objectKey(raw);
    this.forget(key);
    if (type === 'DELETED') return;
    const parsed = serviceUser.safeParse(raw);
    if (!parsed.success) return;
    const su = verifiable(parsed.data);
    this.users.set(key, su);
    this.byIdentity.set(identityOf(su), key);
    for (const t of su.status?.tokens ?? []) this.byToken.set(t.id, key);
    if (su.status?.certificate) this.bySerial.set(su.status.certificate.serialNumber.toLowerCase(), key);
  }

  private forget(key: string): void {
    const old = this.users.get(key);
    if (!old) return;
    this.users.delete(key);
    this.byIdentity.delete(identityOf(old));
    for (const t of old.status?.tokens ?? []) if (this.byToken.get(t.id) === key) this.byToken.delete(t.id);
    const serial = old.status?.certificate?.serialNumber.toLowerCase();
    if (serial && this.bySerial.get(serial) === key) this.bySerial.delete(serial);
  }

  byTokenId(id: string): Verifiable | undefined {
    const key = this.byToken.get(id);
    return key ? this.users.get(key) : undefined;
  }

  byIdentityName(identity: string): Verifiable | undefined {
    const key = this.byIdentity.get(identity);
    return key ? this.users.get(key) : undefined;
  }

  bySerialNumber(serial: string): Verifiable | undefined {
    const key = this.bySerial.get(serial.toLowerCase());
    return key ? this.users.get(key) : undefined;
  }

  get size(): number {
    return this.users.size;
  }
}
