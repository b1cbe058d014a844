// The per-user metric series a ServiceUser reconcile keeps: serviceuser_info (its phase and
// friendly name) and the end-date gauges alerts compare with time(). Invariant: one info
// series per user — the old one is dropped when its labels change — and none once it goes.
import type { ServiceUser, ServiceUserStatus } from '../api/serviceuser.ts';
import type { Metrics } from '../observability/metrics.ts';
import { expiresAt, warnAt } from '../api/expiry.ts';

type InfoLabels = { namespace: string; name: string; phase: string; friendly_name: string };

export class UserMetrics {
  private readonly infoLabels = new Map<string, InfoLabels>();

  private readonly metrics: Pick<Metrics, 'info' | 'expiration' | 'expiryWarning' | 'expiringSoon'>;

  constructor(metrics: Pick<Metrics, 'info' | 'expiration' | 'expiryWarning' | 'expiringSoon'>) {
    this.metrics = metrics;
  }

  private setInfo(key: string, labels: InfoLabels | undefined): void {
    const old = this.infoLabels.get(key);
    if (old) this.metrics.info.remove(old);
    if (labels) {
      this.metrics.info.set(labels, 1);
      this.infoLabels.set(key, labels);
    } else {
      this.infoLabels.delete(key);
    }
  }

  private dropEndDate(series: { namespace: string; name: string }): void {
    this.metrics.expiration.remove(series);
    this.metrics.expiryWarning.remove(series);
    this.metrics.expiringSoon.remove(series);
  }

  /** What a pass left: the status it planned and the end date. */
  report(key: string, su: ServiceUser, status: ServiceUserStatus, now: number): void {
    const series = { namespace: su.metadata.namespace!, name: su.metadata.name };
    this.setInfo(key, { ...series, phase: status.phase ?? 'Pending', friendly_name: status.friendlyName ?? su.metadata.name });
    const end = expiresAt(su.spec.endDate);
    if (end === undefined) return this.dropEndDate(series);
    this.metrics.expiration.set(series, end / 1000);
    const warn = warnAt(end, su.spec.expiryWarning)!;
    this.metrics.expiryWarning.set(series, warn / 1000);
    this.metrics.expiringSoon.set(series, now >= warn && now < end ? 1 : 0);
  }

  /** The user is gone. */
  forget(namespace: string, name: string): void {
    this.dropEndDate({ namespace, name });
    this.setInfo(`${namespace}/${name}`, undefined);
  }
}
