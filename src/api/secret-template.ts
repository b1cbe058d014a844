// Which secretTemplate keys may reach a ServiceUser's Secret. Some controllers copy a Secret
// wherever an annotation on it says (kubernetes-replicator, Reflector, kubed): whoever may
// patch a ServiceUser, but not read Secrets, could otherwise have its credentials copied
// into a namespace they can read. The platform decides by key prefix: refused prefixes
// (default: the known copiers'), and optionally the only prefixes allowed. The admission
// policy (policy.ts) refuses such keys when written; the operator never writes them onto the
// Secret, whatever admission let through (defence in depth), and says which it left out.
//
// A key is judged in lower case (Kubernetes' label-key prefixes are DNS names). A prefix is
// plain text: `example.com/` matches keys under that DNS prefix, `team` any key starting so.

/**
 * Annotation (and label) prefixes that ask another controller to copy the Secret:
 * kubernetes-replicator (mittwald), Reflector (emberstack) and kubed / config-syncer
 * (AppsCode). Platforms add the labels their own copiers select on (External Secrets'
 * PushSecret, Kyverno clone rules) with the flag.
 */
export const copierKeyPrefixes: readonly string[] = ['replicator.v1.mittwald.de/', 'reflector.v1.k8s.emberstack.com/', 'kubed.appscode.com/'];

export interface TemplateKeyPolicy {
  /** Keys starting with one of these are refused. */
  refused: readonly string[];
  /** When not empty: only keys starting with one of these are admitted. */
  allowed: readonly string[];
}

export const defaultTemplateKeyPolicy: TemplateKeyPolicy = { refused: copierKeyPrefixes, allowed: [] };

export interface RefusedKey {
  field: 'labels' | 'annotations';
  key: string;
  /** Why, for a person: the refused prefix it starts with, or the allowed ones it does not. */
  why: string;
}

/** Why `key` is refused, or undefined when it is admitted. */
export function keyRefusal(policy: TemplateKeyPolicy, key: string): string | undefined {
  const k = key.toLowerCase();
  const refused = policy.refused.find((p) => k.startsWith(p));
  if (refused !== undefined) return `keys starting with ${refused} ask another controller to copy the Secret, and this platform refuses them`;
  if (policy.allowed.length && !policy.allowed.some((p) => k.startsWith(p))) return `this platform allows only keys starting with ${policy.allowed.join(', ')}`;
  return undefined;
}

/** The template's labels and annotations the policy admits, and those it leaves out. */
export function admittedTemplate(
  policy: TemplateKeyPolicy,
  template: { labels?: Record<string, string>; annotations?: Record<string, string> } | undefined,
): { labels: Record<string, string>; annotations: Record<string, string>; refused: RefusedKey[] } {
  const refused: RefusedKey[] = [];
  const keep = (field: RefusedKey['field']) =>
    Object.fromEntries(
      Object.entries(template?.[field] ?? {}).filter(([key]) => {
        const why = keyRefusal(policy, key);
        if (why) refused.push({ field, key, why });
        return !why;
      }),
    );
  return { labels: keep('labels'), annotations: keep('annotations'), refused };
}

/**
 * A comma-separated prefix list from a flag or chart value: trimmed, lower-cased, empty
 * entries dropped. A prefix must be something a key can start with.
 */
export function parseKeyPrefixes(flag: string, text: string): { ok: true; prefixes: string[] } | { ok: false; message: string } {
  const prefixes = text
    .split(',')
    .map((p) => p.trim().toLowerCase())
    .filter(Boolean);
  const bad = prefixes.find((p) => !/^[a-z0-9][-a-z0-9_./]*$/.test(p));
  if (bad !== undefined) return { ok: false, message: `${flag}: "${bad}" is not a label or annotation key prefix (letters, digits, '-', '_', '.', '/'), e.g. replicator.v1.mittwald.de/` };
  return { ok: true, prefixes };
}
