// End dates: a date means 23:59:59 UTC that day (as DigiCert ONE does), an RFC 3339 time
// is exact. Expired means now >= expiresAt, to the millisecond.
import { parseDuration } from './duration.ts';

export function expiresAt(endDate: string | undefined): number | undefined {
  if (!endDate) return undefined;
  const at = /^\d{4}-\d{2}-\d{2}$/.test(endDate) ? Date.parse(`${endDate}T23:59:59Z`) : Date.parse(endDate);
  return Number.isNaN(at) ? undefined : at;
}

export function isExpired(expires: number | undefined, now: number): boolean {
  return expires !== undefined && now >= expires;
}

/** When ExpiringSoon starts: expiryWarning before the end. */
export function warnAt(expires: number | undefined, expiryWarning: string): number | undefined {
  return expires === undefined ? undefined : expires - (parseDuration(expiryWarning) ?? 0);
}
