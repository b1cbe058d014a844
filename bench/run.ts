// `npm run bench [-- NAME...]`: runs the benchmarks and prints one JSON document. They start
// their own local control plane; speed targets live here, never in timed tests. Operator
// logs go to stderr: stdout carries the JSON alone.
import os from 'node:os';
import { benchCertificates } from './certificates.ts';
import { benchTokenReview } from './tokenreview.ts';
import { benchRollout } from './rollout.ts';
import { benchExpiry } from './expiry.ts';
import { benchIdle } from './idle.ts';
import { benchMemory } from './memory.ts';
import { benchLedger } from './ledger.ts';

const benches: Record<string, () => Promise<object>> = {
  certificates: () => benchCertificates(Number(process.env.BENCH_COUNT ?? 200)),
  tokenreview: () => benchTokenReview(Number(process.env.BENCH_SECONDS ?? 10)),
  rollout: () => benchRollout(Number(process.env.BENCH_ROLLOUT ?? 1000)),
  expiry: () => benchExpiry(Number(process.env.BENCH_EXPIRY ?? 1000)),
  idle: () => benchIdle(Number(process.env.BENCH_IDLE ?? 1000), Number(process.env.BENCH_IDLE_SECONDS ?? 600)),
  memory: () => benchMemory(Number(process.env.BENCH_MEMORY ?? 10_000)),
  ledger: () => {
    const users = Number(process.env.LEDGER_USERS ?? 10_000);
    return benchLedger(users, Number(process.env.LEDGER_DELETE_USERS ?? Math.round(users / 2)), process.env.LEDGER_LEAD_SECONDS ? Number(process.env.LEDGER_LEAD_SECONDS) : undefined);
  },
};

const wanted = process.argv.slice(2).length ? process.argv.slice(2) : Object.keys(benches);
const results = [];
for (const name of wanted) {
  const bench = benches[name];
  if (!bench) throw new Error(`unknown benchmark ${name}; known: ${Object.keys(benches).join(', ')}`);
  process.stderr.write(`running ${name}…\n`);
  results.push(await bench());
}
process.stdout.write(
  `${JSON.stringify({ node: process.version, cpus: os.cpus().length, memoryGiB: Math.round(os.totalmem() / 2 ** 30), date: new Date().toISOString(), results }, null, 2)}\n`,
);
