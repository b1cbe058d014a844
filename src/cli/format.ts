// Output the way kubectl prints it: aligned columns with upper-case headers, ages and
// relative times ("in 6d", "3h ago"), and -o json|yaml for scripts.
import { dump } from 'js-yaml';

export const outputFormats = ['table', 'json', 'yaml', 'name'] as const;
export type OutputFormat = (typeof outputFormats)[number];
export const isOutputFormat = (value: string): value is OutputFormat => outputFormats.some((f) => f === value);

export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('   ').trimEnd();
  return [line(headers), ...rows.map(line)].join('\n') + '\n';
}

/** "6d", "5h", "12m", "40s": the largest unit, as kubectl's ages. */
export function span(ms: number): string {
  const s = Math.floor(Math.abs(ms) / 1000);
  if (s >= 2 * 86_400) return `${Math.floor(s / 86_400)}d`;
  if (s >= 2 * 3600) return `${Math.floor(s / 3600)}h`;
  if (s >= 2 * 60) return `${Math.floor(s / 60)}m`;
  return `${s}s`;
}

export function relative(at: number, now: number): string {
  return at >= now ? `in ${span(at - now)}` : `${span(now - at)} ago`;
}

/** "2027-01-12T23:59:59Z (in 41d)"; "-" when absent. */
export function when(iso: string | undefined, now: number): string {
  if (!iso) return '-';
  const at = Date.parse(iso);
  return Number.isNaN(at) ? iso : `${iso} (${relative(at, now)})`;
}

export function serialize(value: unknown, format: 'json' | 'yaml'): string {
  return format === 'json' ? `${JSON.stringify(value, null, 2)}\n` : dump(value, { noRefs: true, lineWidth: -1 });
}

/** Indents every line of a block. */
export const indent = (text: string, by = 2) =>
  text
    .split('\n')
    .map((l) => (l ? ' '.repeat(by) + l : l))
    .join('\n');
