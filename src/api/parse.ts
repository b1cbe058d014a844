// Cache contents through the schemas: the objects that parse, with defaults filled in.
// Objects that do not parse are reported by their own reconciler, not by their readers.
// Informer objects are replaced, never mutated, on change, so a parse is remembered per
// object: a reconcile that reads a whole namespace does not parse it again each time.
import type { z } from 'zod';

const memo = new WeakMap<z.ZodType, WeakMap<object, { ok: boolean; value: unknown }>>();

export function parseAll<S extends z.ZodType>(objects: unknown[], schema: S): z.output<S>[] {
  let cache = memo.get(schema);
  if (!cache) memo.set(schema, (cache = new WeakMap()));
  const out: z.output<S>[] = [];
  for (const o of objects) {
    if (!o || typeof o !== 'object') continue;
    let hit = cache.get(o);
    if (!hit) {
      const parsed = schema.safeParse(o);
      hit = { ok: parsed.success, value: parsed.data };
      cache.set(o, hit);
    }
    if (hit.ok) out.push(hit.value as z.output<S>);
  }
  return out;
}
