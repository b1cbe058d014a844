// `npm run cluster [-- KUBE-APISERVER-FLAGS...]`: builds the local control plane if needed
// and runs it in the foreground until Ctrl-C / SIGTERM. The kubeconfig is .cluster/kubeconfig.
// `npm run cluster:node [-- KUBE-APISERVER-FLAGS...]`: the same with one real node (root,
// containerd, runc), the image from `npm run image` imported when built; Ctrl-C stops the
// node too and leaves the machine as it was.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { existsSync } from 'node:fs';
import { ensureBinary, ensurePauseBinary, repoRoot } from './controlplane.ts';

const binary = ensureBinary();
const withNode = process.argv[2] === '--node';
const nodeArgs: string[] = [];
if (withNode) {
  nodeArgs.push('--node', '--pause-binary', ensurePauseBinary());
  const image = path.join(repoRoot, '.cluster', 'image', 'service-user-operator.oci.tar');
  if (existsSync(image)) nodeArgs.push('--node-image', image);
}
// Its own process group, so that Ctrl-C reaches it once, through us: kube-apiserver exits
// at once, without cleanup, on a second signal. It stops itself if we die.
const child = spawn(binary, ['--dir', path.join(repoRoot, '.cluster'), ...nodeArgs, '--', ...process.argv.slice(withNode ? 3 : 2)], {
  stdio: ['ignore', 'inherit', 'inherit'],
  detached: true,
});
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (child.exitCode === null) child.kill(signal);
  });
}
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
