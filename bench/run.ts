// `npm run bench [-- NAME...]`: runs the benchmarks and prints one JSON document, then (on
// stderr) every row of the performance targets with what this run measured — a row whose
// benchmark did not run, or that no benchmark measures yet, says so. They start their own
// local control plane; speed targets live here, never in timed tests. Operator logs go to
// stderr: stdout carries the JSON alone.
import os from 'node:os';
import { benchCertificates } from './certificates.ts';
import { benchTokenReview } from './tokenreview.ts';
import { benchRollout, type Variant } from './rollout.ts';
import { benchExpiry } from './expiry.ts';
import { benchIdle } from './idle.ts';
import { benchMemory } from './memory.ts';
import { benchLedger } from './ledger.ts';
import { benchPeer } from './peer.ts';
import { benchWeight } from './weight.ts';
import { summaryRows, printSummary } from './summary.ts';

const env = process.env;
const benches: Record<string, () => Promise<object>> = {
  certificates: () => benchCertificates(Number(env.BENCH_COUNT ?? 200)),
  tokenreview: () => benchTokenReview(Number(env.BENCH_SECONDS ?? 10)),
  rollout: () => benchRollout(Number(env.BENCH_ROLLOUT ?? 1000), Number(env.BENCH_ROLLOUT_RUNS ?? 3), (env.BENCH_ROLLOUT_VARIANTS?.split(',') as Variant[] | undefined) ?? ['floor', 'tokens', 'certificates']),
  // The ratio at scale: tokens only, one alternating pair of runs at 10,000.
  'rollout-10k': async () => ({ ...(await benchRollout(Number(env.BENCH_ROLLOUT_LARGE ?? 10_000), Number(env.BENCH_ROLLOUT_LARGE_RUNS ?? 1), ['floor', 'tokens'])), name: 'rollout-10k' }),
  expiry: () => benchExpiry(Number(env.BENCH_EXPIRY ?? 1000)),
  idle: () => benchIdle(Number(env.BENCH_IDLE ?? 1000), Number(env.BENCH_IDLE_SECONDS ?? 600)),
  // A curve: BENCH_MEMORY=1000,10000,30000 runs each size on its own control plane; the
  // table's rows read the 1,000 and 10,000 points.
  memory: async () => {
    const sizes = (env.BENCH_MEMORY ?? '1000,10000').split(',').map(Number);
    const points: object[] = [];
    for (const n of sizes) points.push(await benchMemory(n));
    return { name: 'memory', points };
  },
  ledger: () => {
    const users = Number(env.LEDGER_USERS ?? 10_000);
    return benchLedger(users, Number(env.LEDGER_DELETE_USERS ?? Math.round(users / 2)), env.LEDGER_LEAD_SECONDS ? Number(env.LEDGER_LEAD_SECONDS) : undefined);
  },
  // No control plane: the production package count and one PKCS#12 bundle's time (median).
  weight: () => benchWeight(Number(env.BENCH_PKCS12 ?? 200)),
  // cert-manager and the operator, each on its own control plane, N client certificates each, at each N.
  peer: async () => {
    const points: object[] = [];
    for (const n of (env.BENCH_PEER ?? '1000,10000').split(',').map(Number)) points.push(await benchPeer(n));
    return { name: 'peer', points };
  },
};

const wanted = process.argv.slice(2).length ? process.argv.slice(2) : Object.keys(benches);
const results: object[] = [];
for (const name of wanted) {
  const bench = benches[name];
  if (!bench) throw new Error(`unknown benchmark ${name}; known: ${Object.keys(benches).join(', ')}`);
  process.stderr.write(`running ${name}…\n`);
  results.push(await bench());
}
const summary = summaryRows(results);
process.stdout.write(
  `${JSON.stringify({ node: process.version, cpus: os.cpus().length, memoryGiB: Math.round(os.totalmem() / 2 ** 30), date: new Date().toISOString(), results, summary }, null, 2)}\n`,
);
printSummary(summary, process.stderr);
