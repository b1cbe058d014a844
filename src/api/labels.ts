// Kubernetes labels and label selectors (metav1.LabelSelector): the syntax of keys and
// values, the selector's schema with its admission rules, and what a selector selects.
import { z } from 'zod';
import { celString, rule } from './rules.ts';

/** A label key: an optional DNS prefix and '/', then 1-63 letters, digits, '-', '_' or '.'. */
export const labelKeyPattern =
  /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
/** A label value: empty, or up to 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit. */
export const labelValuePattern = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

const keyMessage = "must be a label key: an optional DNS prefix and '/', then 1-63 letters, digits, '-', '_' or '.', e.g. team or example.com/tier";
const valueMessage = "must be a label value: at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit";

const labelKey = rule(z.string().min(1).max(317), {
  cel: `self.matches(${celString(labelKeyPattern.source)})`,
  check: (k) => labelKeyPattern.test(k),
  message: keyMessage,
});
const labelValue = rule(z.string().max(63), {
  cel: `self.matches(${celString(labelValuePattern.source)})`,
  check: (v) => labelValuePattern.test(v),
  message: valueMessage,
});

export const selectorOperators = ['In', 'NotIn', 'Exists', 'DoesNotExist'] as const;

export const labelSelectorRequirement = rule(
  z.object({
    key: labelKey.describe('The label key the requirement applies to.'),
    operator: z.enum(selectorOperators).describe('In, NotIn, Exists or DoesNotExist.'),
    values: z
      .array(labelValue)
      .max(64)
      .optional()
      .describe('In and NotIn: at least one value. Exists and DoesNotExist: none.'),
  }),
  {
    cel: "(self.operator in ['In', 'NotIn']) == (has(self.values) && size(self.values) > 0)",
    check: (r) => (r.operator === 'In' || r.operator === 'NotIn') === (r.values !== undefined && r.values.length > 0),
    message: 'values must list at least one value for In and NotIn, and be absent for Exists and DoesNotExist',
    path: ['values'],
  },
);

export const labelSelector = z
  .object({
    matchLabels: rule(z.record(z.string().max(317), z.string().max(63)).meta({ maxProperties: 64 }), {
      cel: `self.all(k, k.size() <= 317 && k.matches(${celString(labelKeyPattern.source)}) && self[k].matches(${celString(labelValuePattern.source)}))`,
      check: (m) => Object.entries(m).every(([k, v]) => k.length <= 317 && labelKeyPattern.test(k) && labelValuePattern.test(v)),
      message: `matchLabels keys must be label keys and values label values (${valueMessage})`,
    })
      .optional()
      .describe('Labels a namespace must carry, all of them, with these values.'),
    matchExpressions: z.array(labelSelectorRequirement).max(32).optional().describe('Requirements a namespace must meet, all of them.'),
  })
  .describe('A Kubernetes label selector. {} selects everything; the requirements are ANDed.');

export type LabelSelector = z.output<typeof labelSelector>;

/**
 * Whether `selector` selects an object with `labels`, as metav1.LabelSelector means it:
 * absent selects nothing, `{}` everything; every matchLabels entry and every expression
 * must hold. NotIn and DoesNotExist hold for an object without the key.
 */
export function selects(selector: LabelSelector | undefined, labels: Record<string, string>): boolean {
  if (!selector) return false;
  const has = (k: string) => Object.hasOwn(labels, k);
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) if (!has(k) || labels[k] !== v) return false;
  for (const r of selector.matchExpressions ?? []) {
    const values = r.values ?? [];
    const value = has(r.key) ? labels[r.key] : undefined;
    const held =
      r.operator === 'In' ? value !== undefined && values.includes(value)
      : r.operator === 'NotIn' ? value === undefined || !values.includes(value)
      : r.operator === 'Exists' ? value !== undefined
      : value === undefined;
    if (!held) return false;
  }
  return true;
}

/** The selector as kubectl writes it (`team=release,tier in (a,b)`), for messages. */
export function describeSelector(selector: LabelSelector | undefined): string {
  if (!selector) return 'no namespace (spec.namespaceSelector is absent)';
  const parts = [
    ...Object.entries(selector.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`),
    ...(selector.matchExpressions ?? []).map((r) =>
      r.operator === 'Exists' ? r.key : r.operator === 'DoesNotExist' ? `!${r.key}` : `${r.key} ${r.operator === 'In' ? 'in' : 'notin'} (${(r.values ?? []).join(',')})`,
    ),
  ];
  return parts.length ? parts.join(',') : 'every namespace';
}
