// Go-style durations ("720h", "90m", "1h30m"), the form Kubernetes users know from
// cert-manager and the API server's CEL `duration()`; the CRD validates them with the
// same grammar, so both sides accept exactly the same strings.

/** One to three components, each at most six digits: never overflows Go's int64 nanoseconds. */
export const durationPattern = /^([0-9]{1,6}(\.[0-9]{1,9})?(ns|us|ms|s|m|h))+$/;

const unitMs: Record<string, number> = { ns: 1e-6, us: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Milliseconds in a Go duration string, or undefined when it is not one. */
export function parseDuration(text: string): number | undefined {
  if (!durationPattern.test(text)) return undefined;
  let total = 0;
  for (const [, value, , unit] of text.matchAll(/([0-9]+(\.[0-9]+)?)(ns|us|ms|s|m|h)/g)) {
    const ms = unitMs[unit ?? ''];
    if (ms === undefined) return undefined;
    total += Number(value) * ms;
  }
  return total;
}

/** Formats milliseconds the way Go prints durations, e.g. 5400000 → "1h30m0s". */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  const h = Math.floor(ms / 3_600_000);
  const m = Math.floor((ms % 3_600_000) / 60_000);
  const s = (ms % 60_000) / 1000;
  return `${h ? `${h}h` : ''}${h || m ? `${m}m` : ''}${s}s`;
}
