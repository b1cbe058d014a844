// One copy of each string the caches hold many times. JSON.parse makes a new string for every
// value, so 10,000 ServiceUsers hold 10,000 copies of the same apiVersion, condition reasons
// and messages, issuer and email, and their Secrets as many of the same owner reference: half
// of the strings of a converged operator's heap (21 of 41 MB at 10,000 users, heap snapshot,
// docs/performance.md). The informers' transforms pass what they keep through `interned`.
//
// Invariants:
//   - bounded: at most `capacity` strings are remembered; when full the table starts again,
//     so a string seen once (a uid, a name) costs nothing lasting, and a frequent one is
//     shared again from its next sighting;
//   - only short strings (at most `longest` characters): a long one is rarely repeated and
//     would pin its bytes in the table;
//   - values change in place, keys never (V8 already holds property names once).
const capacity = 16_384;
const longest = 256;
let table = new Map<string, string>();

/** The one copy of `s` this table holds (s itself the first time). */
export function intern(s: string): string {
  if (s.length > longest) return s;
  const known = table.get(s);
  if (known !== undefined) return known;
  if (table.size >= capacity) table = new Map();
  table.set(s, s);
  return s;
}

/** `value` with every string in it (objects and arrays, in place) replaced by its interned copy. */
export function interned<T>(value: T): T {
  visit(value);
  return value;
}

function visit(node: unknown): void {
  if (Array.isArray(node)) {
    for (let i = 0; i < node.length; i++) {
      const v: unknown = node[i];
      if (typeof v === 'string') node[i] = intern(v);
      else if (v !== null && typeof v === 'object') visit(v);
    }
  } else if (node !== null && typeof node === 'object') {
    const record: Record<string, unknown> = Object(node);
    for (const key of Object.keys(record)) {
      const v = record[key];
      if (typeof v === 'string') record[key] = intern(v);
      else if (v !== null && typeof v === 'object') visit(v);
    }
  }
}
