// Validation rules written once and enforced twice: by zod when the operator parses an
// object, and by the API server at admission through the CRD's CEL
// `x-kubernetes-validations`, so `kubectl apply` and Argo CD show the error at once.
// Tests run the bad-input corpus through both and require them to agree.
import type { z } from 'zod';

export interface CelRule {
  rule: string;
  message: string;
  /** The message with the offending value: the API server itself prints only its type (`Invalid value: "string"`). */
  messageExpression?: string;
  fieldPath?: string;
  reason?: 'FieldValueInvalid' | 'FieldValueForbidden' | 'FieldValueRequired' | 'FieldValueDuplicate';
}

const validationsKey = 'x-kubernetes-validations';

// The CEL rules ride in zod's metadata under the key the CRD carries them in; declared here
// (zod's documented augmentation) so reading them back is typed.
declare module 'zod' {
  interface GlobalMeta {
    [validationsKey]?: CelRule[];
  }
}

/** Adds CEL rules to a schema's metadata, which the CRD generator copies into the CRD. */
export function withCel<T extends z.ZodType>(schema: T, rules: CelRule[]): T {
  const meta = schema.meta() ?? {};
  const existing = meta[validationsKey] ?? [];
  return schema.meta({ ...meta, [validationsKey]: [...existing, ...rules] });
}

export function celRules(schema: z.ZodType): CelRule[] {
  return schema.meta()?.[validationsKey] ?? [];
}

/**
 * CEL for a string `self` as the message shows it: quoted and escaped (a value with a line
 * break cannot break the message), cut at 64 characters (messages have a size limit).
 */
export const shownValueCel = "strings.quote(size(self) > 64 ? self.substring(0, 64) + '...' : self)";

/**
 * One rule, two implementations that must mean the same: `check` for zod, `cel` for the
 * API server. `path` points the error at a child field (CEL `fieldPath`). On a string field
 * the API server's message also shows the value refused, and `hint` (a CEL string
 * expression over `self`) may add what to write instead.
 */
export function rule<T extends z.ZodType>(
  schema: T,
  r: { cel: string; check: (value: z.output<T>) => boolean; message: string; path?: string[]; reason?: CelRule['reason']; hint?: string },
): T {
  const refined = schema.refine(r.check, { message: r.message, ...(r.path ? { path: r.path } : {}) });
  const onString = !r.path && schema.type === 'string';
  return withCel(refined, [
    {
      rule: r.cel,
      message: r.message,
      ...(onString ? { messageExpression: `${celString(`${r.message}; got `)} + ${shownValueCel}${r.hint ? ` + ${r.hint}` : ''}` } : {}),
      ...(r.path ? { fieldPath: `.${r.path.join('.')}` } : {}),
      ...(r.reason ? { reason: r.reason } : {}),
    },
  ]);
}

/** A CEL string literal for `text` (CEL and RE2 share JavaScript's escapes for our patterns). */
export function celString(text: string): string {
  return `'${text.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

/**
 * A regular-expression rule with a message people can act on. A plain OpenAPI `pattern`
 * would make the API server answer "should match '^[A-Za-z0-9_-]…'", which nobody reads.
 */
export function matches<T extends z.ZodString>(schema: T, pattern: RegExp, message: string): T {
  return rule(schema, { cel: `self.matches(${celString(pattern.source)})`, check: (v) => pattern.test(v), message });
}

/** Only the API server can enforce this one: it needs the object's previous version. */
export function immutable<T extends z.ZodType>(schema: T, message: string): T {
  return withCel(schema, [{ rule: 'self == oldSelf', message }]);
}
