// `npm run dev`: the whole product on this machine in one command. Starts the local control
// plane, installs the CRDs, the seed role catalogs and config/policy (the admission policies
// and the roles for people, as a real install has them, so tenancy is enforced here too),
// runs the operator (`node src/main.ts`), labels namespace `ci` team=release (which the
// sample Accounts admit; the README's namespace), applies config/samples into it, and prints
// how to read a Secret and where the verification service listens. Ctrl-C stops everything.
// State lives in .cluster/ (SUO_DEV_DIR overrides it); the verification service listens on
// 127.0.0.1:8443 (SUO_DEV_VERIFY_ADDRESS overrides it).
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { connect } from 'node:net';
import path from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { KubeClient, isConflict } from '../../src/controller/kube.ts';
import { applyManifests, installCrds, manifestsIn } from '../crds.ts';
import { repoRoot, startControlPlane } from './controlplane.ts';

const namespace = 'ci';
const operatorNamespace = 'service-user-operator';
const dir = process.env.SUO_DEV_DIR ?? path.join(repoRoot, '.cluster');
const verifyAddress = process.env.SUO_DEV_VERIFY_ADDRESS ?? '127.0.0.1:8443';
const say = (line: string) => process.stdout.write(`[dev] ${line}\n`);

say('starting the local control plane (the first run builds it: several minutes)');
const controlPlane = await startControlPlane({ dir });
say(`Kubernetes ${controlPlane.version} at ${controlPlane.server}`);
const kc = new KubeConfig();
kc.loadFromFile(controlPlane.kubeconfig);
const client = new KubeClient(kc);

let operator: ChildProcess | undefined;
let stopping = false;
async function stop(code: number) {
  if (stopping) return;
  stopping = true;
  say('stopping');
  if (operator && operator.exitCode === null) {
    operator.kill('SIGTERM');
    await new Promise((r) => operator!.once('exit', r));
  }
  client.close();
  await controlPlane.stop();
  process.exit(code);
}
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => void stop(0));

try {
  await installCrds(kc);
  await applyManifests(client, manifestsIn('config/roles'), namespace);
  await applyManifests(client, manifestsIn('config/policy'), namespace);
  say('CRDs, the seed role catalogs and config/policy (admission policies, roles for people) installed');
  for (const name of [operatorNamespace, namespace]) {
    await client.request('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name } }).catch((err: unknown) => {
      if (!isConflict(err)) throw err;
    });
  }
  // The sample Accounts (config/samples/account-*.yaml) admit namespaces labelled team=release.
  await client.mergePatch(`/api/v1/namespaces/${namespace}`, { metadata: { labels: { team: 'release' } } });
  operator = spawn(
    process.execPath,
    [path.join(repoRoot, 'src/main.ts'), '--kubeconfig', controlPlane.kubeconfig, '--operator-namespace', operatorNamespace, '--metrics-bind-address', '127.0.0.1:0', '--health-probe-bind-address', '127.0.0.1:0', '--verify-bind-address', verifyAddress],
    { stdio: ['ignore', 'inherit', 'inherit'] },
  );
  operator.on('exit', (code) => {
    if (!stopping) {
      say(`the operator exited (${code}); stopping`);
      void stop(1);
    }
  });
  await applyManifests(client, manifestsIn('config/samples'), namespace);
  say(`config/samples applied in namespace ${namespace}`);

  const name = 'release-signer';
  const deadline = Date.now() + 60_000;
  for (;;) {
    const su = await client.get<{ status?: { phase?: string; secretName?: string; tokens?: { sha256: string; state: string }[] } }>(
      `/apis/serviceusers.dev/v1alpha1/namespaces/${namespace}/serviceusers/${name}`,
    );
    const secretName = su.status?.secretName;
    if (su.status?.phase === 'Active' && secretName) {
      const secret = await client.get<{ data?: Record<string, string> }>(`/api/v1/namespaces/${namespace}/secrets/${secretName}`);
      const token = Buffer.from(secret.data?.token ?? '', 'base64').toString();
      const sha = createHash('sha256').update(token).digest('hex');
      const recorded = su.status.tokens?.find((t) => t.state === 'Active')?.sha256;
      say(`ServiceUser ${namespace}/${name} is Ready; its token's SHA-256 ${sha === recorded ? 'matches' : 'DOES NOT match'} status.tokens (${sha.slice(0, 12)}…)`);
      await listening(verifyAddress);
      say(`verification service: https://${verifyAddress} (TokenReview, /v1/introspect, /v1/authorize, /v1/check, /v1/ca.crt, /v1/crl; docs/verification.md)`);
      process.stdout.write(`
  export KUBECONFIG=${controlPlane.kubeconfig}
  kubectl get service-users -n ${namespace}
  kubectl get suacct
  kubectl get secret ${secretName} -n ${namespace} -o jsonpath='{.data.token}' | base64 -d; echo
  kubectl get su ${name} -n ${namespace} -o jsonpath='{.status.tokens[?(@.state=="Active")].sha256}'; echo
  kubectl describe su ${name} -n ${namespace}
  kubectl get secret service-user-operator-ca -n ${operatorNamespace} -o jsonpath='{.data.tls\\.crt}' | base64 -d > ca.crt
  curl --cacert ca.crt https://${verifyAddress}/v1/ca.crt

Ctrl-C stops the operator and the control plane.
`);
      break;
    }
    if (Date.now() > deadline) throw new Error(`ServiceUser ${namespace}/${name} not Active after 60s`);
    await new Promise((r) => setTimeout(r, 200));
  }
} catch (err) {
  say(`failed: ${err instanceof Error ? err.message : String(err)}`);
  await stop(1);
}

/** Resolves once HOST:PORT accepts a connection (the verification service waits for the CA). */
async function listening(address: string): Promise<void> {
  const at = address.lastIndexOf(':');
  const [host, port] = [address.slice(0, at), Number(address.slice(at + 1))];
  const deadline = Date.now() + 60_000;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect({ host, port }, () => (socket.destroy(), resolve(true)));
      socket.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`the verification service is not listening on ${address} after 60s (SUO_DEV_VERIFY_ADDRESS chooses another address)`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
