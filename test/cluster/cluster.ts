// `npm run cluster [-- KUBE-APISERVER-FLAGS...]`: builds the local control plane if needed
// and runs it in the foreground until Ctrl-C / SIGTERM. The kubeconfig is .cluster/kubeconfig.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { ensureBinary, repoRoot } from './controlplane.ts';

const binary = ensureBinary();
// Its own process group, so that Ctrl-C reaches it once, through us: kube-apiserver exits
// at once, without cleanup, on a second signal. It stops itself if we die.
const child = spawn(binary, ['--dir', path.join(repoRoot, '.cluster'), '--', ...process.argv.slice(2)], {
  stdio: ['ignore', 'inherit', 'inherit'],
  detached: true,
});
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (child.exitCode === null) child.kill(signal);
  });
}
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
