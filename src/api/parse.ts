// Cache contents through the schemas: the objects that parse, with defaults filled in.
// Objects that do not parse are reported by their own reconciler, not by their readers.
// Not remembered: readers look up a handful of objects by index, and a parsed copy kept
// per cached object would double the memory of the ServiceUser cache.
import type { z } from 'zod';

export function parseAll<S extends z.ZodType>(objects: unknown[], schema: S): z.output<S>[] {
  const out: z.output<S>[] = [];
  for (const o of objects) {
    if (!o || typeof o !== 'object') continue;
    const parsed = schema.safeParse(o);
    if (parsed.success) out.push(parsed.data);
  }
  return out;
}
