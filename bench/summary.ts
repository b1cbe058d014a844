// The targets of the performance issue, one row each, filled from the benchmarks that ran.
// A row never shows a figure this run did not measure: it names the benchmark that would.
import type { Writable } from 'node:stream';

export interface Row {
  figure: string;
  measured: string;
  target: string;
  met: boolean | null;
}

type Any = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const find = (results: object[], name: string) => results.find((r) => (r as Any).name === name) as Any | undefined;
const notRun = (bench: string): Pick<Row, 'measured' | 'met'> => ({ measured: `not measured in this run (npm run bench -- ${bench})`, met: null });

function rolloutRow(r: Any | undefined, variant: 'tokens' | 'certificates', figure: string, target: string, bench: string, size: number): Row {
  const v = r?.[variant];
  if (!r || !v?.ratioToFloor) return { figure, target, ...notRun(bench) };
  const sizeNote = r.count === size ? '' : ` [at ${r.count}, not ${size}]`;
  return {
    figure,
    target,
    measured: `${v.ratioToFloor}× (runs ${v.ratioPerRun.join(', ')}×; ${v.seconds.median} s vs floor ${r.floor.seconds.median} s; operator ${v.cpuSecondsPer1000.operator} CPU s/1k, control plane ${v.cpuSecondsPer1000.controlPlane} vs floor ${r.floor.cpuSecondsPer1000.controlPlane})${sizeNote}`,
    met: r.count === size ? v.ratioToFloor <= v.target : null,
  };
}

export function summaryRows(results: object[]): Row[] {
  const rollout = find(results, 'rollout');
  const large = find(results, 'rollout-10k');
  const memory = find(results, 'memory');
  const review = find(results, 'tokenreview');
  const rows: Row[] = [
    rolloutRow(rollout, 'tokens', '1,000 ServiceUsers, tokens, vs floor (same run)', '≤ 1.3×', 'rollout', 1000),
    rolloutRow(rollout, 'certificates', 'same with built-in client certificates', '≤ 1.6×', 'rollout', 1000),
    rolloutRow(large, 'tokens', '10,000 ServiceUsers, tokens, vs floor', '≤ 1.3× (not growing with N)', 'rollout-10k', 10_000),
  ];
  if (rollout?.tokens) {
    // The control plane's own lease renewals are nobody's rollout.
    const w = (v: Any) => Object.entries(v.apiServerWritesPerServiceUser as Record<string, number>).filter(([k]) => !k.endsWith(' leases')).reduce((a, [, n]) => a + n, 0);
    const floor = w(rollout.floor);
    const tokens = w(rollout.tokens);
    rows.push({
      figure: 'writes per ServiceUser (API server count), tokens',
      measured: `${Math.round(tokens * 100) / 100} vs floor ${Math.round(floor * 100) / 100}; events ${rollout.tokens.eventsPerServiceUser.objects} per user`,
      target: 'floor + finalizer + 1 event',
      met: tokens <= floor + 2.001,
    });
    if (rollout.certificates) {
      const certs = w(rollout.certificates);
      rows.push({
        figure: 'writes per ServiceUser (API server count), certificates',
        measured: `${Math.round(certs * 100) / 100} vs floor ${Math.round(floor * 100) / 100}; events ${rollout.certificates.eventsPerServiceUser.objects} per user`,
        target: 'floor + finalizer + 1 event',
        met: certs <= floor + 2.001,
      });
    }
  } else {
    rows.push({ figure: 'writes per ServiceUser', target: 'floor + finalizer + 1 event', ...notRun('rollout') });
  }
  rows.push(
    memory
      ? {
          figure: `RSS at ${memory.count} ServiceUsers with certificates (as the image runs it)`,
          measured: `${memory.rssMiB.convergedAfterRollout} MB after the rollout, ${memory.rssMiB.convergedAfterRestart} MB after a restart (live heap ${memory.rssMiB.liveHeapAfterRestartMiB} MB, ${memory.rssMiB.bytesPerServiceUser} B per user)`,
          target: '≤ 200 MB',
          met: memory.count === 10_000 ? Math.max(memory.rssMiB.convergedAfterRollout, memory.rssMiB.convergedAfterRestart) <= 200 : null,
        }
      : { figure: 'RSS at 10,000 ServiceUsers with certificates', target: '≤ 200 MB', ...notRun('memory') },
    memory
      ? {
          figure: `restart at ${memory.count}: converged, writes, per-object reads`,
          measured: `${memory.restart.secondsToConverged} s, ${memory.restart.apiServerCountedWrites}, ${memory.restart.perServiceUserReads} (${memory.restart.perObjectReads} GETs in all; ${memory.restart.readsAtAnyStart} of the operator's own objects, as at any start)`,
          target: '≤ 8 s, 0, 0',
          met: memory.count === 10_000 ? memory.restart.secondsToConverged <= 8 && memory.restart.apiServerCountedWrites === 0 && memory.restart.perServiceUserReads === 0 : null,
        }
      : { figure: 'restart at 10,000: converged, writes, per-object reads', target: '≤ 8 s, 0, 0', ...notRun('memory') },
    review
      ? {
          figure: 'TokenReview vs kube-apiserver\'s own (same run)',
          measured: `${review.ratio.throughputOperatorOverApiserver.median}× throughput (runs ${review.ratio.throughputOperatorOverApiserver.runs.join(', ')}), p99 ${review.ratio.p99ApiserverOverOperator.median}× lower`,
          target: '≥ 3× in the median of 3 runs',
          met: review.ratio.met,
        }
      : { figure: 'TokenReview vs kube-apiserver\'s own', target: '≥ 3× in the median of 3 runs', ...notRun('tokenreview') },
    peerRow(find(results, 'peer')),
    ...weightRows(find(results, 'weight')),
  );
  return rows;
}

function peerRow(peer: Any | undefined): Row {
  const figure = 'RSS and time to Ready at 10,000 credentials vs cert-manager (same run)';
  const target = 'below cert-manager on both';
  if (!peer) return { figure, target, ...notRun('peer') };
  const { operator: op, certManager: cm, ratios } = peer;
  const sizeNote = peer.count === 10_000 ? '' : ` [at ${peer.count}, not 10000]`;
  return {
    figure,
    target,
    measured: `operator ${op.seconds} s, ${op.rssMiB} MB RSS (peak ${op.peakRssMiB}); cert-manager ${cm.seconds} s, ${cm.rssMiB} MB (peak ${cm.peakRssMiB}): ${ratios.time}× the time, ${ratios.rss}× the RSS${sizeNote}`,
    met: peer.count === 10_000 ? op.seconds < cm.seconds && op.rssMiB < cm.rssMiB : null,
  };
}

/** Issue 24's weight: production packages, and one PKCS#12 bundle's event-loop time. */
function weightRows(w: Any | undefined): Row[] {
  const packages = { figure: 'production packages (npm ls --omit=dev --all --parseable)', target: '≤ 60' };
  // OpenSSL 3 makes one in 25–34 ms on this machine (issue 24); the 10,000-iteration PKI.js bundle took 65–84 ms.
  const pkcs12 = { figure: 'PKCS#12 bundle, event-loop time per bundle (median)', target: '≤ 34 ms (OpenSSL 3\'s own)' };
  if (!w) return [{ ...packages, ...notRun('weight') }, { ...pkcs12, ...notRun('weight') }];
  return [
    { ...packages, measured: `${w.productionPackages} (direct: ${w.direct.join(', ')})`, met: w.productionPackages <= 60 },
    { ...pkcs12, measured: `${w.pkcs12.medianMs} ms (p90 ${w.pkcs12.p90Ms} ms, ${w.pkcs12.bundles} bundles)`, met: w.pkcs12.medianMs <= 34 },
  ];
}

export function printSummary(rows: Row[], out: Writable): void {
  const mark = (m: boolean | null) => (m === null ? '—' : m ? 'met' : 'MISSED');
  out.write('\nTargets (docs/performance.md):\n');
  for (const r of rows) out.write(`  ${mark(r.met).padEnd(6)} ${r.figure}\n         measured: ${r.measured}\n         target:   ${r.target}\n`);
}
