// `node bench/heap-summary.ts FILE.heapsnapshot [N]`: where a V8 heap snapshot's bytes are —
// self size and count by kind (V8's node type) and by constructor or string, the N largest
// groups (default 30). For the operator's snapshots kept with BENCH_KEEP_HEAPSNAPSHOT: it
// answers "what are the bytes a ServiceUser costs" without a browser's DevTools.
import { readFileSync } from 'node:fs';

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
  nodes: number[];
  strings: string[];
}

const [file, top = '30'] = process.argv.slice(2);
if (!file) throw new Error('usage: node bench/heap-summary.ts FILE.heapsnapshot [N]');
const snap = JSON.parse(readFileSync(file, 'utf8')) as Snapshot;
const fields = snap.snapshot.meta.node_fields;
const types = snap.snapshot.meta.node_types[0];
const width = fields.length;
const at = { type: fields.indexOf('type'), name: fields.indexOf('name'), size: fields.indexOf('self_size') };

const byKind = new Map<string, { bytes: number; count: number }>();
const byName = new Map<string, { bytes: number; count: number }>();
const add = (m: typeof byKind, key: string, bytes: number) => {
  const g = m.get(key) ?? { bytes: 0, count: 0 };
  g.bytes += bytes;
  g.count++;
  m.set(key, g);
};
let total = 0;
for (let i = 0; i < snap.nodes.length; i += width) {
  const kind = types[snap.nodes[i + at.type]!] ?? '?';
  const bytes = snap.nodes[i + at.size]!;
  total += bytes;
  add(byKind, kind, bytes);
  // Strings grouped by their first characters (a JSON body, a PEM, a label value); objects by constructor.
  const name = snap.strings[snap.nodes[i + at.name]!] ?? '';
  const key = kind.includes('string') ? `(${kind}) ${JSON.stringify(name.slice(0, 40))}` : `(${kind}) ${name.slice(0, 60)}`;
  add(byName, key, bytes);
}
const mb = (n: number) => Math.round((n / 2 ** 20) * 100) / 100;
const rows = (m: typeof byKind, k: number) =>
  [...m].sort((a, b) => b[1].bytes - a[1].bytes).slice(0, k).map(([name, g]) => ({ name, MiB: mb(g.bytes), count: g.count }));
process.stdout.write(`${JSON.stringify({ totalMiB: mb(total), byKind: rows(byKind, 20), largest: rows(byName, Number(top)) }, null, 2)}\n`);
