// What verification looks up, kept in memory from the ServiceUser informer: parsed
// ServiceUsers by key, and indexes from token id, identity and certificate serial to them.
// No API call per request; updated on every informer event.
import { serviceUser, type ServiceUser } from '../api/serviceuser.ts';
import { objectKey, type ChangeType } from '../controller/informer.ts';
import type { KubeObject } from '../controller/kube.ts';

export class Directory {
  private readonly users = new Map<string, ServiceUser>();
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
    const su = parsed.data;
    this.users.set(key, su);
    this.byIdentity.set(`serviceuser:${su.metadata.namespace}:${su.metadata.name}`, key);
    for (const t of su.status?.tokens ?? []) this.byToken.set(t.id, key);
    if (su.status?.certificate) this.bySerial.set(su.status.certificate.serialNumber.toLowerCase(), key);
  }

  private forget(key: string): void {
    const old = this.users.get(key);
    if (!old) return;
    this.users.delete(key);
    this.byIdentity.delete(`serviceuser:${old.metadata.namespace}:${old.metadata.name}`);
    for (const t of old.status?.tokens ?? []) if (this.byToken.get(t.id) === key) this.byToken.delete(t.id);
    const serial = old.status?.certificate?.serialNumber.toLowerCase();
    if (serial && this.bySerial.get(serial) === key) this.bySerial.delete(serial);
  }

  byTokenId(id: string): ServiceUser | undefined {
    const key = this.byToken.get(id);
    return key ? this.users.get(key) : undefined;
  }

  byIdentityName(identity: string): ServiceUser | undefined {
    const key = this.byIdentity.get(identity);
    return key ? this.users.get(key) : undefined;
  }

  bySerialNumber(serial: string): ServiceUser | undefined {
    const key = this.bySerial.get(serial.toLowerCase());
    return key ? this.users.get(key) : undefined;
  }

  get size(): number {
    return this.users.size;
  }
}
